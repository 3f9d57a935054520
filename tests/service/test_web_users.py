"""Per-user time zones and mailed password links through Flask's test
client, on SQLite and PostgreSQL: the account page's zone (hostile input
refused next to its field), times shown and typed in the user's zone, an
invitation sent through a real SMTP server (aiosmtpd) and its link used
once, the relay's refusal shown, clear pages for used, replaced, expired
and deactivated links, and the rate limit on guessed links."""

from __future__ import annotations

import email
import html
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.models import MassEmail, MassEmailStatus, PasswordLink, Role, User
from app.services.login_throttle import PER_IP
from tests.service.test_queue_build import make_mass_email, make_scene
from tests.smtp_server import RunningServer, smtp_server
from tests.web_client import csrf_token, logged_in, login, post_form, ready, web

__all__ = ["ready", "web"]  # the fixtures

HOSTILE = "<script>alert(1)</script>"
NEW_PASSWORD = "my own long password"
_LINK = re.compile(r"https?://[^/\s]+(/password/[A-Za-z0-9_-]+)")


@pytest.fixture
def relay(ready: Flask) -> RunningServer:
    with smtp_server() as server:
        ready.config["SLUICE_SETTINGS"] = replace(
            app_settings(ready), smtp_url=f"smtp://{server.host}:{server.port}"
        )
        yield server  # type: ignore[misc]


@pytest.fixture
def admin(ready: Flask) -> FlaskClient:
    return logged_in(ready, "boss@example.com", Role.ADMIN)


def text_of(response: object) -> str:
    return html.unescape(response.get_data(as_text=True))  # type: ignore[attr-defined]


def field_error(page: str, key: str) -> str:
    match = re.search(rf'<p class="field__error" id="{key}-error">(.*?)</p>', page, re.S)
    assert match, f"no error shown for {key}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))


def invite(admin: FlaskClient, address: str = "new@example.com") -> str:
    response = post_form(admin, "/admin/users", {"email": address, "role": "marketer"})
    assert response.status_code == 200
    return text_of(response)


def link_path(relay: RunningServer, index: int = -1) -> str:
    message = email.message_from_bytes(relay.handler.messages[index].data)
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    found = _LINK.search(body)
    assert found, body
    return found.group(1)


def set_password(client: FlaskClient, path: str, password: str, again: str | None = None) -> object:
    token = csrf_token(client, "/login")  # the session's token, whatever the link page says
    form = {"password": password, "confirm_password": again or password, "csrf_token": token}
    return client.post(path, data=form)


# ------------------------------------------------------------------ time zones


def test_a_user_chooses_a_time_zone_and_the_pages_follow(
    ready: Flask, session: Session, clock: FixedClock
) -> None:
    client = logged_in(ready, "mark@example.com", Role.MARKETER)
    assert client.get("/dashboard/live").get_json()["as_of"] == "2026-03-02 09:00:00 UTC"
    page = text_of(client.get("/account"))
    assert "<option>America/New_York</option>" in page
    assert "The site's default (UTC)</option>" in page

    done = post_form(client, "/account/time-zone", {"time_zone": "America/New_York"})

    assert done.status_code == 302
    assert "Times are now shown and read in America/New_York." in text_of(client.get("/account"))
    assert session.scalar(select(User.time_zone).where(User.email == "mark@example.com")) == (
        "America/New_York"
    )
    assert client.get("/dashboard/live").get_json()["as_of"] == "2026-03-02 04:00:00 EST"
    assert "Figures as of 2026-03-02 04:00:00 EST." in text_of(client.get("/"))
    # Another user still reads UTC.
    other = logged_in(ready, "ann@example.com", Role.MARKETER)
    assert other.get("/dashboard/live").get_json()["as_of"] == "2026-03-02 09:00:00 UTC"

    post_form(client, "/account/time-zone", {"time_zone": ""})
    assert client.get("/dashboard/live").get_json()["as_of"] == "2026-03-02 09:00:00 UTC"


@pytest.mark.parametrize(
    "hostile", [HOSTILE, "../../etc/passwd", "Mars/Olympus", "+05:00", "x" * 5000]
)
def test_a_hostile_time_zone_is_refused_next_to_its_field(
    ready: Flask, session: Session, hostile: str
) -> None:
    client = logged_in(ready, "mark@example.com", Role.MARKETER)
    post_form(client, "/account/time-zone", {"time_zone": "Europe/Paris"})

    response = post_form(client, "/account/time-zone", {"time_zone": hostile})

    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "choose a time zone from the list" in field_error(page, "time_zone")
    assert HOSTILE not in page
    session.expire_all()
    assert session.scalar(select(User.time_zone).where(User.email == "mark@example.com")) == (
        "Europe/Paris"
    )


def test_the_site_default_zone_applies_to_users_without_their_own(ready: Flask) -> None:
    ready.config["SLUICE_SETTINGS"] = replace(app_settings(ready), default_time_zone="Europe/Paris")
    client = logged_in(ready, "mark@example.com", Role.MARKETER)

    assert client.get("/dashboard/live").get_json()["as_of"] == "2026-03-02 10:00:00 CET"
    assert "The site's default (Europe/Paris)" in text_of(client.get("/account"))


def test_a_start_time_is_read_in_the_users_zone_across_the_dst_changes(
    ready: Flask, session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    mass_email = make_mass_email(session, scene, clock)
    session.commit()
    client = logged_in(ready, "ny@example.com", Role.MARKETER)
    post_form(client, "/account/time-zone", {"time_zone": "America/New_York"})
    url = f"/campaigns/mass-emails/{mass_email.id}/schedule"

    def schedule_at(local: str) -> object:
        return post_form(
            client, url, {"start": "at", "start_at": local, "can_spam_confirmed": "yes"}
        )

    skipped = schedule_at("2026-03-08T02:30")  # New York springs forward 02:00 → 03:00
    past = schedule_at("2026-03-01T23:00")  # 04:00 UTC, before the clock's 09:00
    assert skipped.status_code == past.status_code == 400
    assert "2026-03-08 02:30 does not exist in America/New_York" in field_error(
        skipped.get_data(as_text=True), "start_at"
    )
    assert "2026-03-01T23:00:00-05:00 is in the past" in field_error(
        past.get_data(as_text=True), "start_at"
    )
    session.expire_all()
    assert session.get(MassEmail, mass_email.id).status == MassEmailStatus.DRAFT  # type: ignore[union-attr]

    done = schedule_at("2026-11-01T01:30")  # New York falls back: 01:30 happens twice
    assert done.status_code == 302
    session.expire_all()
    scheduled = session.get(MassEmail, mass_email.id)
    assert scheduled is not None and scheduled.status == MassEmailStatus.PENDING
    assert scheduled.start_at == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # the first, EDT
    page = text_of(client.get(f"/campaigns/mass-emails/{mass_email.id}"))
    assert "is scheduled to start at 2026-11-01 01:30:00 EDT" in page
    assert "<dd>2026-11-01 01:30:00 EDT</dd>" in page


# ------------------------------------------------------------------ invitations


def test_an_invited_user_sets_a_password_with_the_mailed_link_once(
    ready: Flask, admin: FlaskClient, relay: RunningServer, session: Session
) -> None:
    page = invite(admin, "New@Example.com")

    assert "User New@example.com created as marketer; the invitation was sent." in page
    assert "The relay answered: 250" in page
    assert "invited, link valid until 2026-03-05 09:00:00 UTC" in page
    [sent] = relay.handler.messages
    assert sent.recipients == ["New@example.com"]
    assert sent.envelope_from == "boss@example.com"  # no system_email_from configured
    path = link_path(relay)
    token = path.rsplit("/", 1)[1]
    assert token not in {row.token_hash for row in session.scalars(select(PasswordLink))}

    newcomer = ready.test_client()
    form = newcomer.get(path)
    assert form.status_code == 200
    assert "Set your password" in text_of(form) and "New@example.com" in text_of(form)
    assert newcomer.post(path, data={"password": NEW_PASSWORD}).status_code == 400  # no CSRF
    mismatch = set_password(newcomer, path, NEW_PASSWORD, "something else entirely")
    assert mismatch.status_code == 400  # type: ignore[attr-defined]
    assert "does not match" in field_error(text_of(mismatch), "confirm_password")
    short = set_password(newcomer, path, "short")
    assert "at least 12 characters" in field_error(text_of(short), "password")

    done = set_password(newcomer, path, NEW_PASSWORD)

    assert done.status_code == 302  # type: ignore[attr-defined]
    assert done.headers["Location"] == "/login"  # type: ignore[attr-defined]
    assert "Your password is set. Log in as New@example.com with it." in text_of(
        newcomer.get("/login")
    )
    assert login(newcomer, "new@example.com", NEW_PASSWORD).status_code == 302
    again = ready.test_client().get(path)
    assert again.status_code == 410
    assert "already used" in text_of(again)


def test_a_refusing_relay_still_creates_the_user_and_shows_its_answer(
    ready: Flask, admin: FlaskClient, relay: RunningServer, session: Session
) -> None:
    relay.handler.rcpt_replies["new@example.com"] = "550 5.1.1 <new@example.com>: no such user"

    page = invite(admin)

    assert "User new@example.com created as marketer, but the invitation was not sent" in page
    assert "550 5.1.1 <new@example.com>: no such user" in page
    assert session.scalar(select(User.active).where(User.email == "new@example.com")) is True

    relay.handler.rcpt_replies.clear()
    user_id = session.scalar(select(User.id).where(User.email == "new@example.com"))
    resent = post_form(admin, f"/admin/users/{user_id}/send-link", {"kind": "invitation"})
    assert "A new invitation was sent to new@example.com." in text_of(
        admin.get(resent.headers["Location"])
    )
    assert len(relay.handler.messages) == 1


def test_without_a_relay_the_user_is_created_and_the_page_says_so(
    ready: Flask, admin: FlaskClient, session: Session
) -> None:
    page = invite(admin)

    assert "but the invitation was not sent: no SMTP relay is configured" in page
    assert session.scalar(select(User.email).where(User.email == "new@example.com"))


def test_used_replaced_expired_and_deactivated_links_say_what_happened(
    ready: Flask, admin: FlaskClient, relay: RunningServer, session: Session, clock: FixedClock
) -> None:
    invite(admin)
    first = link_path(relay)
    user_id = session.scalar(select(User.id).where(User.email == "new@example.com"))
    post_form(admin, f"/admin/users/{user_id}/send-link", {"kind": "reset"})
    second = link_path(relay)
    anonymous = ready.test_client()

    replaced = anonymous.get(first)
    assert replaced.status_code == 410 and "A newer link was sent" in text_of(replaced)
    assert anonymous.get("/password/not-a-real-token").status_code == 404

    clock.advance(timedelta(hours=72))
    expired = anonymous.get(second)
    assert expired.status_code == 410
    assert "This link expired at 2026-03-05 09:00:00 UTC" in text_of(expired)

    post_form(admin, f"/admin/users/{user_id}/send-link", {"kind": "reset"})
    third = link_path(relay)
    post_form(admin, f"/admin/users/{user_id}/deactivate")
    deactivated = set_password(anonymous, third, NEW_PASSWORD)
    assert deactivated.status_code == 403  # type: ignore[attr-defined]
    assert "This account is deactivated" in text_of(deactivated)
    refused = post_form(admin, f"/admin/users/{user_id}/send-link", {"kind": "reset"})
    assert "is deactivated: activate them first" in text_of(admin.get(refused.headers["Location"]))


def test_guessed_links_are_rate_limited_per_address(ready: Flask) -> None:
    guesser = ready.test_client()
    for attempt in range(PER_IP):
        assert guesser.get(f"/password/guess{attempt}").status_code == 404

    refused = guesser.get("/password/guess-again")

    assert refused.status_code == 429
    assert "Too many failed attempts from your network address" in text_of(refused)


def test_marketers_cannot_invite_or_send_links(ready: Flask, session: Session) -> None:
    marketer = logged_in(ready, "mark@example.com", Role.MARKETER)
    assert (
        post_form(marketer, "/admin/users", {"email": "x@example.com", "role": "admin"}).status_code
        == 403
    )
    assert post_form(marketer, "/admin/users/1/send-link", {"kind": "reset"}).status_code == 403
    assert session.scalar(select(User.id).where(User.email == "x@example.com")) is None
