"""The web app's status pages through the Flask test client."""

from __future__ import annotations

from flask import Flask
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.services.contacts import ContactInput, save_contact


def test_healthz_reports_ok(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_index_shows_counts_but_no_contact_data(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    people = [
        ContactInput(email="ann.secret@example.com", first_name="Annabel", last_name="Zedwick"),
        ContactInput(email="bob.private@example.org", company="Hushhush Holdings"),
        ContactInput(email="carol@mail.example.net"),
    ]
    for person in people:
        save_contact(session, person, clock)
    session.commit()

    response = app.test_client().get("/")
    page = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "Contacts: 3" in page
    assert "Target lists: 0" in page
    for private in (
        "ann.secret",
        "bob.private",
        "carol@",
        "@example",
        "Annabel",
        "Zedwick",
        "Hushhush",
    ):
        assert private not in page
