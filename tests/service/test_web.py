"""The web app's dashboard and health page through the Flask test client."""

from __future__ import annotations

from flask import Flask
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import Role
from app.services.contacts import ContactInput, save_contact
from tests.web_client import logged_in, web

__all__ = ["web"]  # the fixture


def test_healthz_reports_ok(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_dashboard_shows_counts_but_no_contact_data(
    web: Flask, session: Session, clock: FixedClock
) -> None:
    people = [
        ContactInput(email="ann.secret@example.com", first_name="Annabel", last_name="Zedwick"),
        ContactInput(email="bob.private@example.org", company="Hushhush Holdings"),
        ContactInput(email="carol@mail.example.net"),
    ]
    for person in people:
        save_contact(session, person, clock)
    session.commit()

    response = logged_in(web, "boss@sluice.test", Role.MARKETER).get("/")
    page = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "<strong>3</strong> contacts" in page
    assert "<strong>0</strong> target lists" in page
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
