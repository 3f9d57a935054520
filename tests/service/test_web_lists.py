"""The target list and suppression list pages through Flask's test client,
on both databases: create, members, populate from a search, a list from a
campaign log, delete; suppress, search, remove with a reason; bad and
hostile input."""

from __future__ import annotations

import html
import re
import sys

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.extensions import db
from app.models import (
    CampaignLogEntry,
    CampaignLogEvent,
    Role,
    Suppression,
    SuppressionRemoval,
    TargetList,
    TargetListMember,
)
from app.services.target_lists import add_members, create_target_list
from tests.conftest import add_contact
from tests.service.test_queue_build import make_mass_email, make_scene
from tests.service.test_web_contacts import field_error, flashes, follow, page_text
from tests.web_client import logged_in, post_form, web

__all__ = ["web"]  # the fixture

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def site(web: Flask, clock: FixedClock) -> Flask:
    web.config[CLOCK_CONFIG_KEY] = clock
    return web


@pytest.fixture
def client(site: Flask) -> FlaskClient:
    return logged_in(site, "mark@example.com", Role.MARKETER)


def members(app: Flask, list_id: int) -> set[int]:
    with app.app_context():
        return set(
            db.session.scalars(
                select(TargetListMember.contact_id).where(
                    TargetListMember.target_list_id == list_id
                )
            )
        )


def list_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(TargetList)) or 0


# ------------------------------------------------------------------ target lists


def test_an_empty_lists_page_says_what_to_do(client: FlaskClient) -> None:
    text = page_text(client.get("/lists"))
    assert "There are no target lists yet." in text
    assert "No mass email has been sent yet" in text


def test_create_a_list_and_manage_its_members(
    site: Flask, client: FlaskClient, clock: FixedClock
) -> None:
    with site.app_context():
        ann = add_contact(db.session, clock, "ann@example.com", first_name=HOSTILE).id
        bob = add_contact(db.session, clock, "bob@example.com", company="Acme").id
        add_contact(db.session, clock, "cid@example.com", company="Other")
        db.session.commit()

    response = post_form(client, "/lists", {"name": HOSTILE, "description": HOSTILE})
    page = follow(client, response)
    list_id = int(response.headers["Location"].rsplit("/", 1)[1])
    assert HOSTILE not in page
    assert f"List {HOSTILE} created. Add contacts to it below." in flashes(page)
    assert "The list is empty" in page_text(client.get(f"/lists/{list_id}"))

    response = post_form(client, f"/lists/{list_id}/members", {"email": "ANN@example.com"})
    assert flashes(follow(client, response)) == ["ann@example.com added to the list."]
    response = post_form(client, f"/lists/{list_id}/members", {"email": "ann@example.com"})
    assert flashes(follow(client, response)) == ["ann@example.com is on the list already."]
    response = post_form(client, f"/lists/{list_id}/members", {"email": "zed@example.com"})
    assert response.status_code == 400
    assert "no contact has this address" in field_error(response.get_data(as_text=True), "email")

    response = post_form(client, f"/lists/{list_id}/populate", {"q": "acme"})
    assert flashes(follow(client, response)) == ["1 contact(s) added to the list."]
    assert members(site, list_id) == {ann, bob}
    detail = client.get(f"/lists/{list_id}").get_data(as_text=True)
    assert HOSTILE not in detail
    assert "<strong>2</strong> member(s)." in detail

    response = post_form(client, f"/lists/{list_id}/populate", {"q": ""})
    assert response.status_code == 400
    assert (
        field_error(response.get_data(as_text=True), "q") == "give a search text or choose a filter"
    )
    response = post_form(client, f"/lists/{list_id}/populate", {"status": "nonsense"})
    assert response.status_code == 400

    response = post_form(client, f"/lists/{list_id}/members/{ann}/remove")
    assert flashes(follow(client, response)) == [
        "The contact was removed from the list (the contact itself stays)."
    ]
    assert members(site, list_id) == {bob}

    overview = client.get("/lists").get_data(as_text=True)
    assert HOSTILE not in overview
    assert '<td data-label="Members">1</td>' in overview

    response = post_form(client, f"/lists/{list_id}/delete")
    assert flashes(follow(client, response)) == [f"List {HOSTILE} deleted; its contacts stay."]
    assert list_count(site) == 0
    assert client.get(f"/lists/{list_id}").status_code == 404


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("x" * 201, "at most 200 characters"),
        ("Taken", "a target list named 'Taken' already exists"),
    ],
)
def test_a_bad_list_name_is_refused(
    site: Flask, client: FlaskClient, clock: FixedClock, name: str, message: str
) -> None:
    with site.app_context():
        create_target_list(db.session, "Taken", "", clock)
        db.session.commit()
    response = post_form(client, "/lists", {"name": name})
    assert response.status_code == 400
    assert message in field_error(response.get_data(as_text=True), "name")
    assert list_count(site) == 1


def test_a_big_list_is_counted_exactly_on_request(
    site: Flask, client: FlaskClient, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # app.web.lists the module (app.web's ``lists`` is the blueprint).
    monkeypatch.setattr(sys.modules["app.web.lists"], "COUNT_CAP", 2)
    with site.app_context():
        target = create_target_list(db.session, "Big", "", clock)
        ids = [add_contact(db.session, clock, f"p{n}@example.com").id for n in range(3)]
        add_members(db.session, target, ids, clock)
        db.session.commit()
        list_id = target.id
    capped = page_text(client.get(f"/lists/{list_id}"))
    assert "More than 2 members ( count them exactly" in " ".join(capped.split())
    assert "<strong>3</strong> member(s)." in client.get(f"/lists/{list_id}?count=exact").get_data(
        as_text=True
    )
    assert "more than 2" in page_text(client.get("/lists"))


def test_a_list_a_campaign_uses_is_not_deleted(
    site: Flask, client: FlaskClient, clock: FixedClock
) -> None:
    with site.app_context():
        scene = make_scene(db.session, clock)
        make_mass_email(db.session, scene, clock, "Spring")
        db.session.commit()
        list_id = scene.customers.id
    response = post_form(client, f"/lists/{list_id}/delete")
    assert flashes(follow(client, response)) == [
        "The list was not deleted: the list is used by campaign(s) 'Spring': "
        "remove it from them first."
    ]
    assert list_count(site) == 2


def test_a_list_from_a_mass_emails_log(site: Flask, client: FlaskClient, clock: FixedClock) -> None:
    with site.app_context():
        session = db.session
        scene = make_scene(session, clock)
        mass_email = make_mass_email(session, scene, clock, HOSTILE)
        mass_email.queue_built_at = clock.now()
        for name, event in [("ann", CampaignLogEvent.CLICKED), ("bob", CampaignLogEvent.OPENED)]:
            session.add(
                CampaignLogEntry(
                    contact_id=scene.contacts[name].id,
                    mass_email_id=mass_email.id,
                    event=event,
                    occurred_at=clock.now(),
                    detail={},
                )
            )
        session.commit()
        mass_email_id, ann = mass_email.id, scene.contacts["ann"].id
    page = client.get("/lists").get_data(as_text=True)
    assert HOSTILE not in page
    assert f"{html.escape(HOSTILE)}: {html.escape(HOSTILE)}" in page

    response = post_form(
        client,
        "/lists/from-log",
        {"log_name": "Clickers", "mass_email": mass_email_id, "events": ["clicked"]},
    )
    assert flashes(follow(client, response)) == ["List Clickers created with 1 contact(s)."]
    with site.app_context():
        clickers = db.session.scalar(select(TargetList.id).where(TargetList.name == "Clickers"))
    assert clickers is not None
    assert members(site, clickers) == {ann}

    for form, field, message in [
        ({"log_name": "X", "mass_email": mass_email_id}, "events", "choose at least one"),
        ({"log_name": "X", "mass_email": mass_email_id, "events": ["bogus"]}, "events", "offered"),
        ({"log_name": "X", "mass_email": "", "events": ["clicked"]}, "mass_email", "choose"),
        ({"log_name": "X", "mass_email": "9999", "events": ["sent"]}, "mass_email", "no mass"),
        ({"log_name": "", "mass_email": mass_email_id, "events": ["sent"]}, "log_name", "empty"),
    ]:
        response = post_form(client, "/lists/from-log", form)
        assert response.status_code == 400, form
        assert message in field_error(response.get_data(as_text=True), field), form
    assert list_count(site) == 3


# ------------------------------------------------------------------ suppression list


def test_suppress_search_and_remove_with_a_reason(site: Flask, client: FlaskClient) -> None:
    assert "The suppression list is empty." in page_text(client.get("/suppression"))

    response = post_form(
        client, "/suppression/add", {"address": "Ann@Example.com", "note": HOSTILE}
    )
    page = follow(client, response)
    assert flashes(page) == ["Ann@Example.com is suppressed: no mass email will reach it."]
    assert HOSTILE not in page
    assert f"mark@example.com: {html.escape(HOSTILE)}" in page
    response = post_form(client, "/suppression/add", {"address": "ann@example.com"})
    assert flashes(follow(client, response)) == [
        "ann@example.com was suppressed already; its first reason is kept."
    ]
    follow(client, post_form(client, "/suppression/add", {"address": "bob@other.example"}))

    assert "bob@other.example" not in page_text(client.get("/suppression?q=ann"))
    assert "bob@other.example" in page_text(client.get("/suppression?q=@other.example"))
    assert "Ann@example.com" in page_text(client.get("/suppression?q=example&contains=on"))
    response = client.get("/suppression?q=a%00b")
    assert response.status_code == 400
    assert "no NUL" in field_error(response.get_data(as_text=True), "q")

    response = post_form(
        client, "/suppression/remove", {"remove_address": "ann@example.com", "why": " "}
    )
    assert response.status_code == 400
    assert "say why" in field_error(response.get_data(as_text=True), "why")
    response = post_form(
        client, "/suppression/remove", {"remove_address": "zed@example.com", "why": "fixed"}
    )
    assert response.status_code == 400
    assert "zed@example.com is not suppressed" in field_error(
        response.get_data(as_text=True), "remove_address"
    )
    with site.app_context():
        assert db.session.scalar(select(func.count()).select_from(Suppression)) == 2

    response = post_form(
        client, "/suppression/remove", {"remove_address": "ann@example.com", "why": HOSTILE}
    )
    page = follow(client, response)
    assert flashes(page) == ["Ann@example.com is no longer suppressed (removal recorded)."]
    assert HOSTILE not in page
    with site.app_context():
        removal = db.session.scalar(select(SuppressionRemoval))
        assert removal is not None
        assert (removal.removed_by, removal.why) == ("mark@example.com", HOSTILE)
    assert re.search(r"<td data-label=\"By\">mark@example.com</td>", page)


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"address": ""}, "address", "enter the address"),
        ({"address": "not an address"}, "address", "@-sign"),
        ({"address": "a@example.com", "note": "n" * 450}, "note", "at most 400"),
    ],
)
def test_a_bad_suppression_is_refused(
    site: Flask, client: FlaskClient, form: dict[str, str], field: str, message: str
) -> None:
    response = post_form(client, "/suppression/add", form)
    assert response.status_code == 400
    assert message in field_error(response.get_data(as_text=True), field)
    with site.app_context():
        assert db.session.scalar(select(func.count()).select_from(Suppression)) == 0


def test_a_removal_link_fills_the_form(client: FlaskClient) -> None:
    follow(client, post_form(client, "/suppression/add", {"address": "ann@example.com"}))
    page = client.get("/suppression").get_data(as_text=True)
    assert 'href="/suppression?remove=ann@example.com#remove-title"' in page
    filled = client.get("/suppression?remove=ann@example.com").get_data(as_text=True)
    assert 'name="remove_address" type="email" value="ann@example.com"' in filled
