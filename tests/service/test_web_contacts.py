"""The contacts pages through Flask's test client, on both databases: the
list and its search, a contact's page and its changes, the CSV import with
its report and the rejected-rows download; roles, CSRF, bad and hostile
input."""

from __future__ import annotations

import html
import io
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.extensions import db
from app.models import CampaignLogEntry, CampaignLogEvent, Contact, Role, TargetList
from app.models.imports import ContactImport
from app.services import suppression
from app.services.import_report import UPLOAD_MAX_BYTES
from app.services.target_lists import create_target_list
from tests.conftest import add_contact
from tests.service.test_queue_build import make_mass_email, make_scene
from tests.web_client import csrf_token, logged_in, post_form, web

__all__ = ["web"]  # the fixture

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def site(web: Flask, clock: FixedClock) -> Flask:
    web.config[CLOCK_CONFIG_KEY] = clock
    return web


@pytest.fixture
def client(site: Flask) -> FlaskClient:
    return logged_in(site, "mark@example.com", Role.MARKETER)


def page_text(response: TestResponse) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def flashes(page: str) -> list[str]:
    return [
        html.unescape(message)
        for message in re.findall(r'<p class="flash flash--\w+" role="\w+">(.*?)</p>', page, re.S)
    ]


def field_error(page: str, key: str) -> str:
    match = re.search(rf'<p class="field__error" id="{key}-error">(.*?)</p>', page, re.S)
    assert match, f"no error shown for {key}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).removeprefix("Error: ")


def follow(client: FlaskClient, response: TestResponse) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return client.get(response.headers["Location"]).get_data(as_text=True)


def count_contacts(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Contact)) or 0


def seed(app: Flask, clock: FixedClock, *emails: str, **values: Any) -> list[int]:
    with app.app_context():
        ids = [add_contact(db.session, clock, email, **values).id for email in emails]
        db.session.commit()
        return ids


# ------------------------------------------------------------------ access


def test_contacts_pages_need_a_log_in_and_let_both_roles_in(site: Flask) -> None:
    anonymous = site.test_client()
    for path in ("/contacts", "/contacts/new", "/contacts/import", "/lists", "/suppression"):
        response = anonymous.get(path)
        assert response.status_code == 302
        assert "/login?next=" in response.headers["Location"]
    marketer = logged_in(site, "mark@example.com", Role.MARKETER)
    admin = logged_in(site, "boss@example.com", Role.ADMIN)
    for user in (marketer, admin):
        for path in ("/contacts", "/contacts/new", "/contacts/import", "/lists", "/suppression"):
            assert user.get(path).status_code == 200, path
    menu = marketer.get("/contacts").get_data(as_text=True)
    assert '<a href="/contacts" aria-current="page">Contacts</a>' in menu


def test_a_post_without_the_csrf_token_changes_nothing(site: Flask, client: FlaskClient) -> None:
    response = client.post("/contacts/new", data={"email": "ann@example.com"})
    assert response.status_code == 400
    assert count_contacts(site) == 0


# ------------------------------------------------------------------ the list and search


def test_an_empty_database_says_what_to_do(client: FlaskClient) -> None:
    text = page_text(client.get("/contacts"))
    assert "There are no contacts yet." in text
    assert "Import a CSV file" in text


def test_search_and_keyset_pages(site: Flask, client: FlaskClient, clock: FixedClock) -> None:
    seed(site, clock, *(f"user{n:02}@example.com" for n in range(60)))
    seed(site, clock, "ann@example.org", first_name="Ann", last_name="Smith", company="Acme")

    first = client.get("/contacts").get_data(as_text=True)
    assert first.count('<th scope="row"><a href="/contacts/') == 50
    older = re.search(r'href="(/contacts\?before=\d+)" rel="next"', first)
    assert older
    second = client.get(html.unescape(older.group(1))).get_data(as_text=True)
    assert second.count('<th scope="row"><a href="/contacts/') == 11
    assert "user00@example.com" in second
    assert 'rel="prev"' in second

    found = page_text(client.get("/contacts?q=ann+smi"))
    assert "ann@example.org" in found and "user01" not in found
    assert "ann@example.org" in page_text(client.get("/contacts?q=ACME"))
    none = page_text(client.get("/contacts?q=nobody"))
    assert "No contact matches this search." in none


def test_bad_search_fields_are_shown_per_field(client: FlaskClient) -> None:
    response = client.get("/contacts?status=bogus&opt=maybe&list=x&q=" + "a" * 300)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert field_error(page, "status") == "choose valid, invalid or any"
    assert field_error(page, "opt") == "choose opted in, opted out or any"
    assert field_error(page, "list") == "choose a list"
    assert field_error(page, "q") == "at most 200 characters"


def test_everyone_a_search_finds_is_added_to_a_list(
    site: Flask, client: FlaskClient, clock: FixedClock
) -> None:
    seed(site, clock, "a@acme.example", "b@acme.example", "c@other.example", company="x")
    with site.app_context():
        target = create_target_list(db.session, "Acme people", "", clock)
        db.session.commit()
        list_id = target.id
    response = post_form(client, "/contacts/add-to-list", {"q": "a", "target_list": list_id})
    assert "1 contact(s) added to list Acme people." in flashes(follow(client, response))
    response = post_form(client, "/contacts/add-to-list", {"q": "b@acme", "target_list": list_id})
    assert "1 contact(s) added to list Acme people." in flashes(follow(client, response))
    response = post_form(client, "/contacts/add-to-list", {"q": "a", "target_list": 999})
    assert "Nothing was added: choose the list" in flashes(follow(client, response))[0]


# ------------------------------------------------------------------ add, edit, delete


def test_adding_a_contact_shows_it_and_warns_about_a_typo(site: Flask, client: FlaskClient) -> None:
    response = post_form(
        client,
        "/contacts/new",
        {
            "email": "ann@gmial.com",
            "first_name": HOSTILE,
            "company": "Acme",
            "audience_type": "Lead",
        },
    )
    page = follow(client, response)
    assert flashes(page) == [
        "Contact ann@gmial.com added.",
        "Check the address: did you mean ann@gmail.com?",
    ]
    assert HOSTILE not in page
    assert html.escape(HOSTILE) in page
    listing = client.get("/contacts").get_data(as_text=True)
    assert HOSTILE not in listing and html.escape(HOSTILE) in listing
    assert HOSTILE not in client.get("/contacts?q=%3Cscript").get_data(as_text=True)


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"email": ""}, "email", "enter the contact's email address"),
        ({"email": "not an address"}, "email", "An email address must have an @-sign."),
        ({"email": "a@example.com", "last_name": "x" * 201}, "last_name", "at most 200 characters"),
        ({"email": "a@example.com", "audience_type": "<b>"}, "audience_type", "only letters"),
        ({"email": "a@example.com", "company": "nul\x00"}, "company", "contains a NUL character"),
    ],
)
def test_a_bad_contact_is_refused_per_field_and_nothing_is_saved(
    site: Flask, client: FlaskClient, form: dict[str, str], field: str, message: str
) -> None:
    response = post_form(client, "/contacts/new", form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in field_error(page, field)
    assert count_contacts(site) == 0


def test_a_second_contact_with_the_same_address_is_refused(
    site: Flask, client: FlaskClient, clock: FixedClock
) -> None:
    seed(site, clock, "ann@example.com", first_name="Ann")
    response = post_form(client, "/contacts/new", {"email": "ANN@example.com", "first_name": "X"})
    assert response.status_code == 400
    assert "exists already" in field_error(response.get_data(as_text=True), "email")
    with site.app_context():
        assert db.session.scalar(select(Contact.first_name)) == "Ann"


def test_edit_address_opt_out_and_delete(
    site: Flask, client: FlaskClient, clock: FixedClock
) -> None:
    (contact_id,) = seed(site, clock, "ann@example.com", first_name="Ann")
    url = f"/contacts/{contact_id}"

    response = post_form(
        client,
        f"{url}/edit",
        {"first_name": "Anna", "last_name": "Smith", "company": "", "audience_type": "lead"},
    )
    assert flashes(follow(client, response)) == ["Contact saved."]
    response = post_form(client, f"{url}/edit", {"first_name": "y" * 201, "audience_type": "lead"})
    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True), "first_name") == "at most 200 characters"

    response = post_form(client, f"{url}/address", {"email": "not valid"})
    assert response.status_code == 400
    assert "@-sign" in field_error(response.get_data(as_text=True), "email")
    response = post_form(client, f"{url}/address", {"email": "anna@example.com"})
    assert flashes(follow(client, response)) == [
        "The address ann@example.com is now anna@example.com."
    ]

    response = post_form(client, f"{url}/opt-out")
    page = follow(client, response)
    assert flashes(page) == ["anna@example.com is opted out of mass email."]
    assert "web: mark@example.com" in page
    response = post_form(client, f"{url}/opt-in")
    assert flashes(follow(client, response)) == [
        "anna@example.com is opted in to mass email again."
    ]

    with site.app_context():
        contact = db.session.get(Contact, contact_id)
        assert contact is not None
        assert (contact.first_name, contact.last_name, contact.email) == (
            "Anna",
            "Smith",
            "anna@example.com",
        )
        assert not contact.opted_out

    response = post_form(client, f"{url}/delete")
    assert flashes(follow(client, response)) == [
        "Contact anna@example.com deleted. Its past mail stays in the campaign logs."
    ]
    assert count_contacts(site) == 0
    assert client.get(url).status_code == 404
    assert post_form(client, f"{url}/delete").status_code == 404


def test_the_contact_page_shows_status_lists_suppression_and_activity(
    site: Flask, client: FlaskClient, clock: FixedClock
) -> None:
    with site.app_context():
        session = db.session
        scene = make_scene(session, clock)
        mass_email = make_mass_email(session, scene, clock, HOSTILE)
        cid = scene.contacts["cid"]  # invalid, on the Customers list
        for minutes, event in enumerate(
            (
                CampaignLogEvent.SENT,
                CampaignLogEvent.OPENED,
                CampaignLogEvent.CLICKED,
                CampaignLogEvent.BOUNCED_HARD,
            )
        ):
            session.add(
                CampaignLogEntry(
                    contact_id=cid.id,
                    mass_email_id=mass_email.id,
                    event=event,
                    occurred_at=clock.now() + timedelta(minutes=minutes),
                    detail={"url": HOSTILE},
                )
            )
        suppression.add(
            session, cid.email or "", suppression.SuppressionReason.HARD_BOUNCE, "bounce", clock
        )
        session.commit()
        contact_id = cid.id
    response = client.get(f"/contacts/{contact_id}")
    page = response.get_data(as_text=True)
    text = page_text(response)
    assert HOSTILE not in page
    assert "550 5.1.1 mailbox unknown" in text
    assert "suppressed: hard bounce" in text
    assert "Customers" in text
    events = re.findall(r'<span class="event event--(\w+)">', page)
    assert events == ["bounced_hard", "clicked", "opened", "sent"]
    assert f"{HOSTILE}: {HOSTILE}" in text  # campaign: mass email, escaped


def test_a_contact_joins_and_leaves_lists_from_its_page(
    site: Flask, client: FlaskClient, clock: FixedClock
) -> None:
    (contact_id,) = seed(site, clock, "ann@example.com")
    with site.app_context():
        list_id = create_target_list(db.session, "Friends", "", clock).id
        db.session.commit()
    response = post_form(client, f"/contacts/{contact_id}/lists", {"target_list": list_id})
    assert flashes(follow(client, response)) == ["Added to list Friends."]
    response = post_form(client, f"/contacts/{contact_id}/lists/{list_id}/remove")
    assert flashes(follow(client, response)) == ["Removed from list Friends."]
    response = post_form(client, f"/contacts/{contact_id}/lists", {"target_list": "x"})
    assert flashes(follow(client, response)) == ["Not added: choose a list."]


# ------------------------------------------------------------------ custom fields


def custom_fields_of(app: Flask, contact_id: int) -> dict[str, Any]:
    with app.app_context():
        contact = db.session.get(Contact, contact_id)
        assert contact is not None
        return dict(contact.custom_fields)


def test_custom_fields_are_shown_changed_cleared_and_added_on_the_contact_page(
    site: Flask, client: FlaskClient, clock: FixedClock
) -> None:
    fields = {"plan": "trial", "Start date": "May", HOSTILE: "<b>bold</b>"}
    (contact_id,) = seed(site, clock, "ann@example.com", custom_fields=fields)
    url = f"/contacts/{contact_id}"

    page = client.get(url).get_data(as_text=True)
    assert HOSTILE not in page and "<b>bold</b>" not in page
    # In the page's order (by name): each value with its label and placeholder.
    assert re.findall(r'name="key-(\d)" value="([^"]*)"', page) == [
        ("0", html.escape(HOSTILE)),
        ("1", "plan"),
        ("2", "Start date"),
    ]
    assert '<label for="value-1">plan</label>' in page
    assert 'id="value-1" name="value-1" type="text" value="trial"' in page
    text = page_text(client.get(url))
    assert "In a template: {{ plan }}" in text
    assert "In a template: {{ custom['Start date'] }}" in text
    assert f"In a template: {{{{ custom['{HOSTILE}'] }}}}" in text

    form = {
        "key-0": HOSTILE,
        "value-0": "<b>bold</b>",
        "key-1": "plan",
        "value-1": "pro",
        "key-2": "Start date",
        "value-2": "",
        "new_name": "City",
        "new_value": "Denver",
    }
    response = post_form(client, f"{url}/custom-fields", form)
    assert response.headers["Location"].endswith(f"{url}#custom-title")
    assert flashes(follow(client, response)) == [
        "Custom fields saved: added City; changed plan; removed Start date."
    ]
    assert custom_fields_of(site, contact_id) == {
        "plan": "pro",
        HOSTILE: "<b>bold</b>",
        "City": "Denver",
    }
    response = post_form(client, f"{url}/custom-fields", {"key-0": "City", "value-0": "Denver"})
    assert flashes(follow(client, response)) == [
        "Nothing to save: the custom fields are unchanged."
    ]


def test_bad_custom_fields_are_refused_per_field_and_nothing_is_saved(
    site: Flask, client: FlaskClient, clock: FixedClock
) -> None:
    (contact_id,) = seed(
        site, clock, "ann@example.com", custom_fields={"city": "Denver", "plan": "trial"}
    )
    url = f"/contacts/{contact_id}"
    too_long = "v" * 10_001
    form = {
        "key-0": "city",
        "value-0": "Boulder",
        "key-1": "plan",
        "value-1": too_long,
        "new_name": "E-Mail",
        "new_value": HOSTILE,
    }

    response = post_form(client, f"{url}/custom-fields", form)

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert field_error(page, "value-1") == "at most 10,000 characters (got 10,001)"
    assert field_error(page, "new_name") == (
        "'E-Mail' is the contact's email, a field of its own: change it above"
    )
    assert 'id="value-0-error"' not in page and 'id="new_value-error"' not in page
    # Everything as typed, so nothing is lost; the summary links each field.
    assert 'name="value-0" type="text" value="Boulder"' in page
    assert f'value="{too_long}"' in page
    assert f'value="{html.escape(HOSTILE)}"' in page and HOSTILE not in page
    assert '<a href="#value-1">plan: at most 10,000 characters' in page
    assert flashes(page) == ["No custom field was saved: see the fields marked below."]
    assert custom_fields_of(site, contact_id) == {"city": "Denver", "plan": "trial"}

    response = post_form(client, f"{url}/custom-fields", {"new_name": "city", "new_value": "x"})
    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True), "new_name") == (
        "the contact has a field 'city' already: change its value instead"
    )


def test_custom_fields_need_the_csrf_token_and_a_log_in(
    site: Flask, client: FlaskClient, clock: FixedClock
) -> None:
    (contact_id,) = seed(site, clock, "ann@example.com", custom_fields={"plan": "trial"})
    form = {"key-0": "plan", "value-0": "pro", "new_name": "City", "new_value": "Denver"}
    assert client.post(f"/contacts/{contact_id}/custom-fields", data=form).status_code == 400
    anonymous = site.test_client()
    token = csrf_token(anonymous, "/login")
    response = anonymous.post(
        f"/contacts/{contact_id}/custom-fields", data={**form, "csrf_token": token}
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/login")
    assert custom_fields_of(site, contact_id) == {"plan": "trial"}
    assert post_form(client, "/contacts/999999/custom-fields", form).status_code == 404


# ------------------------------------------------------------------ CSV import


def upload(
    client: FlaskClient, data: bytes, name: str = "people.csv", **fields: Any
) -> TestResponse:
    form = {"list_name": "Imported", "encoding": "detect", **fields}
    form["file"] = (io.BytesIO(data), name)
    form["csrf_token"] = client.sluice_csrf_token  # type: ignore[attr-defined]
    return client.post("/contacts/import", data=form, content_type="multipart/form-data")


PEOPLE = (
    "email,first name,Notes\n"
    "ann@example.com,Ann,likes tea\n"
    "not an address,Bad,\n"
    "bob@gmial.com,Bob,\n"
    "cid@example.com," + "x" * 201 + ",\n"
    'dee@example.com,Dee,=HYPERLINK("x")\n'
).encode()


def test_an_import_reports_rejected_rows_and_warnings_and_offers_them_as_csv(
    site: Flask, client: FlaskClient
) -> None:
    response = upload(client, PEOPLE)
    location = response.headers["Location"]
    report = follow(client, response)
    assert flashes(report) == [
        "Imported 5 row(s) into list Imported: 3 created, 0 updated, 0 unchanged, "
        "0 merged, 2 rejected; 1 warning(s)."
    ]
    assert "encoding=utf-8-sig" in location
    rows = re.findall(
        r"<tr><th scope=\"row\">(.*?)</th><td data-label=\"Field\">(.*?)</td>"
        r"<td data-label=\"Problem\" class=\"detail-cell\">(.*?)</td></tr>",
        report,
    )
    assert [(row, field, html.unescape(message)) for row, field, message in rows] == [
        ("row 3", "email", "email 'not an address': An email address must have an @-sign."),
        ("row 5", "first name", "at most 200 characters"),
    ]
    assert "did you mean bob@gmail.com?" in report
    assert count_contacts(site) == 3

    import_id = int(re.search(r"/contacts/imports/(\d+)", location).group(1))  # type: ignore[union-attr]
    download = client.get(f"/contacts/imports/{import_id}/rejected.csv")
    assert (
        download.headers["Content-Disposition"]
        == f'attachment; filename="import-{import_id}.rejected.csv"'
    )
    assert download.get_data(as_text=True) == (
        "\ufeffsluice_row,sluice_reason,email,first name,Notes\r\n"
        "3,email 'not an address': An email address must have an @-sign.,not an address,Bad,\r\n"
        "5,first name: at most 200 characters,cid@example.com," + "x" * 201 + ",\r\n"
    )

    # The rejected rows, corrected, import back as they are.
    fixed = (
        download.get_data()
        .replace(b"not an address", b"eve@example.com")
        .replace(b"x" * 201, b"Cid")
    )
    page = follow(client, upload(client, fixed, "people.rejected.csv"))
    assert flashes(page)[0].startswith("Imported 2 row(s) into list Imported: 2 created")
    assert count_contacts(site) == 5
    with site.app_context():
        dee = db.session.scalar(select(Contact).where(Contact.email == "dee@example.com"))
        assert dee is not None and dee.custom_fields == {"Notes": '=HYPERLINK("x")'}


def test_the_import_page_lists_recent_imports(client: FlaskClient) -> None:
    follow(client, upload(client, PEOPLE, HOSTILE + ".csv"))
    page = client.get("/contacts/import").get_data(as_text=True)
    assert HOSTILE not in page
    assert html.escape(HOSTILE) + ".csv" in page


def test_update_is_not_chosen_until_the_person_chooses_it(client: FlaskClient) -> None:
    # Jinja read values.update as the dict's method, always true: the box
    # came checked, and existing contacts were overwritten unasked.
    page = client.get("/contacts/import").get_data(as_text=True)
    assert re.search(r'<input id="update" name="update" type="checkbox"[^>]*>', page)
    assert not re.search(r'<input id="update"[^>]* checked', page)


def test_a_windows_1252_file_is_detected(site: Flask, client: FlaskClient) -> None:
    data = "email;last name\nm@example.com;Müller\n".encode("cp1252")
    page = follow(client, upload(client, data))
    assert "Windows-1252" in page_text_of(page)
    with site.app_context():
        assert db.session.scalar(select(Contact.last_name)) == "Müller"


def test_a_utf16_file_is_detected(site: Flask, client: FlaskClient) -> None:
    data = "email\tfirst name\nz@example.com\tZoë\n".encode("utf-16")
    follow(client, upload(client, data))
    with site.app_context():
        assert db.session.scalar(select(Contact.first_name)) == "Zoë"


def test_undecodable_bytes_cost_their_row_with_advice_for_the_browser(client: FlaskClient) -> None:
    data = b"email,last name\na@example.com,M\xfcller\nb@example.com,Plain\n"
    page = follow(client, upload(client, data, encoding="utf-8-sig"))
    text = page_text_of(page)
    assert "not valid UTF-8: byte 0xfc in column 'last name'" in text
    assert "import the file again choosing its encoding" in text
    assert "--encoding" not in text


def page_text_of(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


@pytest.mark.parametrize(
    ("data", "fields", "field", "message"),
    [
        (None, {}, "file", "choose a CSV file"),
        (b"email\na@example.com\n", {"list_name": "  "}, "list_name", "name the list"),
        (b"email\na@example.com\n", {"list_name": "x" * 201}, "list_name", "at most 200"),
        (b"email\na@example.com\n", {"encoding": "ebcdic-nonsense"}, "encoding", "choose one of"),
        (b"email\na@example.com\n", {"default_type": "<b>"}, "default_type", "only letters"),
        (b"name,company\nAnn,Acme\n", {}, "file", "no email column"),
        (b"", {}, "file", "the file is empty"),
        (b"\xff\xfe\x00", {"encoding": "utf-8-sig"}, "file", "header row is not valid UTF-8"),
    ],
)
def test_a_file_that_cannot_be_imported_imports_nothing(
    site: Flask,
    client: FlaskClient,
    data: bytes | None,
    fields: dict[str, str],
    field: str,
    message: str,
) -> None:
    if data is None:
        response = post_form(client, "/contacts/import", {"list_name": "X", **fields})
    else:
        response = upload(client, data, **fields)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in field_error(page, field)
    assert count_contacts(site) == 0
    with site.app_context():
        assert db.session.scalar(select(func.count()).select_from(TargetList)) == 0


def test_a_file_over_the_in_request_limit_is_imported_in_the_background(
    site: Flask, client: FlaskClient
) -> None:
    # The default limits: 5 MB while the request waits, 200 MB in the
    # background (tests/service/test_web_background_import.py has the rest).
    row = b"someone@example.com,Name\n"
    data = b"email,first name\n" + row * (UPLOAD_MAX_BYTES // len(row) + 1)
    response = upload(client, data)
    assert response.headers["Location"] == "/contacts/import"
    assert count_contacts(site) == 0
    with site.app_context():
        record = db.session.scalar(select(ContactImport))
        assert record is not None
        assert (record.state, record.file_size) == ("pending", len(data))


def test_an_unknown_import_or_contact_is_a_404(client: FlaskClient) -> None:
    assert client.get("/contacts/imports/99").status_code == 404
    assert client.get("/contacts/imports/99/rejected.csv").status_code == 404
    assert client.get("/contacts/99").status_code == 404
    assert post_form(client, "/contacts/99/edit", {}).status_code == 404
