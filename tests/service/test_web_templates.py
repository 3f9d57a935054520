"""The email template pages through Flask's test client, on SQLite and
PostgreSQL: list, editor errors with their line, saving, deleting, the
sandboxed preview (saved and live), CSRF, hostile and oversized input."""

from __future__ import annotations

import html
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import EmailTemplate, Role
from app.services.campaigns import TemplateInput, save_template
from app.services.runtime_settings import update_runtime_settings
from app.web.templates_ui import PREVIEW_POLICY
from tests.conftest import add_contact
from tests.service.test_queue_build import make_mass_email, make_scene
from tests.web_client import csrf_token, logged_in, post_form, ready, web

__all__ = ["ready", "web"]  # the fixtures

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def client(ready: Flask) -> FlaskClient:
    return logged_in(ready, "mark@example.com", Role.MARKETER)


def form(**changes: str) -> dict[str, str]:
    values = {
        "name": "Spring",
        "subject": "Spring sale for {{ first_name }}",
        "body_html": "<p>Hello {{ first_name }}</p>",
        "body_text": "",
        "header_logo_url": "",
        "footer_html": "",
    }
    values.update(changes)
    return values


def field_error(page: str, key: str) -> str:
    match = re.search(rf'<p class="field__error" id="{key}-error">(.*?)</p>', page, re.S)
    assert match, f"no error shown for {key}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))


def template_count(session: Session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(EmailTemplate)) or 0


def test_the_pages_need_a_log_in(ready: Flask) -> None:
    anonymous = ready.test_client()
    for url in ("/templates", "/templates/new", "/templates/1", "/templates/1/preview"):
        response = anonymous.get(url)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]
    token = csrf_token(anonymous, "/login")
    response = anonymous.post("/templates/new", data={**form(), "csrf_token": token})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_empty_list_says_what_to_do(client: FlaskClient) -> None:
    page = client.get("/templates").get_data(as_text=True)
    assert "No templates yet." in page
    assert 'href="/templates/new"' in page


def test_a_template_is_created_listed_and_edited(client: FlaskClient, session: Session) -> None:
    response = post_form(client, "/templates/new", form())

    assert response.status_code == 302
    template = session.scalars(select(EmailTemplate)).one()
    assert response.headers["Location"] == f"/templates/{template.id}"
    page = client.get(f"/templates/{template.id}").get_data(as_text=True)
    assert "Template &#39;Spring&#39; saved." in page
    assert 'value="Spring sale for {{ first_name }}"' in page
    assert "<code>{{ first_name }}</code>" in page  # the placeholder helper
    assert 'sandbox name="preview-desktop"' in page and 'name="preview-mobile"' in page
    assert 'src="/static/template_editor.js"' in page

    post_form(client, f"/templates/{template.id}", form(subject="Summer", name="Summer"))

    session.expire_all()
    assert (template.name, template.subject) == ("Summer", "Summer")
    listing = client.get("/templates").get_data(as_text=True)
    assert f'href="/templates/{template.id}">Summer</a>' in listing


def test_syntax_errors_are_shown_with_their_line_and_nothing_is_saved(
    client: FlaskClient, session: Session
) -> None:
    body = "<p>Hello</p>\n<p>{{ first_name </p>\n"
    response = post_form(
        client,
        "/templates/new",
        form(subject="Hi {% if %}", body_html=body, header_logo_url="javascript:alert(1)"),
    )
    page = response.get_data(as_text=True)

    assert response.status_code == 400
    assert field_error(page, "body_html").startswith("Error: line 2: ")
    assert field_error(page, "subject").startswith("Error: line 1: ")
    assert "http:// or https://" in field_error(page, "header_logo_url")
    assert 'aria-invalid="true"' in page
    assert "The template was not saved" in page
    assert html.escape(body, quote=False) in page  # the text as typed, kept
    assert template_count(session) == 0


def test_a_duplicate_name_is_refused_next_to_the_name(
    client: FlaskClient, session: Session
) -> None:
    post_form(client, "/templates/new", form())

    response = post_form(client, "/templates/new", form(subject="Other"))

    assert response.status_code == 400
    assert "already exists" in field_error(response.get_data(as_text=True), "name")
    assert template_count(session) == 1


def test_hostile_input_is_shown_as_text(client: FlaskClient, session: Session) -> None:
    post_form(client, "/templates/new", form(name=HOSTILE, subject=HOSTILE))
    template = session.scalars(select(EmailTemplate)).one()

    for url in ("/templates", f"/templates/{template.id}", f"/templates/{template.id}/delete"):
        page = client.get(url).get_data(as_text=True)
        assert HOSTILE not in page, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, url


def test_an_oversized_form_is_refused_and_nothing_is_saved(
    client: FlaskClient, session: Session
) -> None:
    response = post_form(client, "/templates/new", form(body_html="x" * 600_000))

    assert response.status_code == 400
    assert "longer than 524,288 characters" in field_error(
        response.get_data(as_text=True), "body_html"
    )
    assert template_count(session) == 0


def test_a_post_without_the_csrf_token_is_refused(client: FlaskClient, session: Session) -> None:
    response = client.post("/templates/new", data=form())

    assert response.status_code == 400
    assert template_count(session) == 0


def test_a_template_in_use_is_not_deleted(
    client: FlaskClient, session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    mass_email = make_mass_email(session, scene, clock, name="April news")
    session.commit()

    page = client.get(f"/templates/{scene.template.id}/delete").get_data(as_text=True)
    assert "It cannot be deleted" in page and "April news" in page
    response = post_form(client, f"/templates/{scene.template.id}/delete")

    assert response.status_code == 302
    shown = html.unescape(client.get(response.headers["Location"]).get_data(as_text=True))
    assert (
        "The template was not deleted: the template is the content of mass email(s) 'April news'"
        in shown
    )
    assert template_count(session) == 1
    assert mass_email.template_id == scene.template.id


def test_a_template_is_deleted_after_confirmation(
    client: FlaskClient, session: Session, clock: FixedClock
) -> None:
    template_id = save_template(session, TemplateInput("Old", "Old", "<p>x</p>"), clock).id
    session.commit()

    page = client.get(f"/templates/{template_id}/delete").get_data(as_text=True)
    assert "Delete the template" in page
    response = post_form(client, f"/templates/{template_id}/delete")

    assert response.headers["Location"] == "/templates"
    assert "Template &#39;Old&#39; deleted." in client.get("/templates").get_data(as_text=True)
    assert template_count(session) == 0
    assert client.get(f"/templates/{template_id}").status_code == 404


# ------------------------------------------------------------------ preview


def test_the_live_preview_renders_the_posted_content_for_a_contact_in_a_sandbox(
    client: FlaskClient, session: Session, clock: FixedClock
) -> None:
    add_contact(session, clock, "zoe@example.org", first_name="Zoe")
    add_contact(session, clock, "yan@example.org", first_name=HOSTILE)
    session.commit()

    response = post_form(
        client,
        "/templates/preview",
        form(
            body_html="<p>Dear {{ first_name }}</p>",
            footer_html="You asked for news.",
            preview_contact="ZOE@example.org",
        ),
    )
    page = response.get_data(as_text=True)

    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == PREVIEW_POLICY
    assert "sandbox" in PREVIEW_POLICY and "script-src" not in PREVIEW_POLICY
    assert "X-Frame-Options" not in response.headers  # framed by our page
    assert "Dear Zoe" in page
    assert "You asked for news." in page
    assert "Example Corp" in page and "1 Example Street, Springfield" in page
    assert "Unsubscribe" in page
    assert template_count(session) == 0  # a preview saves nothing

    hostile = post_form(client, "/templates/preview", form(preview_contact="yan@example.org"))
    assert HOSTILE not in hostile.get_data(as_text=True)
    assert "&lt;script&gt;" in hostile.get_data(as_text=True)


def test_the_preview_lists_problems_with_their_line(
    client: FlaskClient, session: Session, clock: FixedClock
) -> None:
    update_runtime_settings(session, {"postal_address": ""}, clock)
    session.commit()

    response = post_form(client, "/templates/preview", form(body_html="<p>a</p>\n\n{% for x in %}"))
    page = html.unescape(response.get_data(as_text=True))

    assert response.headers["Content-Security-Policy"] == PREVIEW_POLICY
    assert "No preview: fix these first" in page
    assert "body_html, line 3:" in page
    assert "postal address for the footer is empty (CAN-SPAM)" in page
    unknown = post_form(client, "/templates/preview", form(preview_contact="nobody@example.org"))
    assert "no contact has the address" in html.unescape(unknown.get_data(as_text=True))
    editor = client.get("/templates/new").get_data(as_text=True)
    assert "No message can be previewed or sent yet" in editor


def test_the_saved_preview_renders_the_stored_template(
    client: FlaskClient, session: Session, clock: FixedClock
) -> None:
    add_contact(session, clock, "zoe@example.org", first_name="Zoe")
    template = save_template(
        session, TemplateInput("T", "S", "<p>Saved for {{ first_name }}</p>"), clock
    )
    session.commit()

    response = client.get(f"/templates/{template.id}/preview")

    assert response.headers["Content-Security-Policy"] == PREVIEW_POLICY
    assert "Saved for Zoe" in response.get_data(as_text=True)
    assert client.get("/templates/999999/preview").status_code == 404
