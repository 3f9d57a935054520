"""The administrator's pages and the dashboard through Flask's test client:
settings validation, users, jobs and the checklist, and hostile input shown
harmlessly."""

from __future__ import annotations

import html
import re
from dataclasses import replace

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.models import Role, User
from app.services import job_runs
from app.services.queue_build import activate_due
from app.services.runtime_settings import SPECS, RuntimeSettings, get_runtime_settings
from jobs.scheduler import JOB_IDS
from tests.dovecot import DovecotServer
from tests.service.test_queue_build import make_mass_email, make_scene, schedule
from tests.web_client import add_user, logged_in, login, post_form, web

__all__ = ["web"]  # the fixture

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def admin(web: Flask, session: Session, runtime: RuntimeSettings, clock: FixedClock) -> Flask:
    """``web`` with seeded settings, the test's clock and a logged-in admin."""
    session.commit()
    web.config[CLOCK_CONFIG_KEY] = clock
    return web


def settings_form(runtime: RuntimeSettings, **changes: str) -> dict[str, str]:
    """The settings form as a browser submits it: checkboxes only when ticked."""
    form = {}
    for key in SPECS:
        value = getattr(runtime, key)
        if isinstance(value, bool):
            if value:
                form[key] = "on"
        else:
            form[key] = str(value)
    form.update(changes)
    return form


def field_error(page: str, key: str) -> str:
    match = re.search(rf'<p class="field__error" id="{key}-error">(.*?)</p>', page, re.S)
    assert match, f"no error shown for {key}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))


def test_the_settings_page_shows_every_runtime_setting(admin: Flask) -> None:
    page = logged_in(admin, "boss@example.com").get("/admin/settings").get_data(as_text=True)

    for key, spec in SPECS.items():
        assert f'<label for="{key}">{html.escape(spec.label, quote=False)}</label>' in page, key
        assert f'name="{key}"' in page


def test_bad_values_are_shown_per_field_and_nothing_is_saved(
    admin: Flask, session: Session, runtime: RuntimeSettings
) -> None:
    client = logged_in(admin, "boss@example.com")
    form = settings_form(
        runtime,
        max_per_hour="many",
        site_url="ftp://example.com",
        tick_interval_seconds="1",
        company_name="Valid Ltd",  # valid, yet not saved with the others
    )

    response = post_form(client, "/admin/settings", form)
    page = response.get_data(as_text=True)

    assert response.status_code == 400
    assert field_error(page, "max_per_hour") == "Error: must be a whole number"
    assert field_error(page, "site_url") == "Error: must be an http:// or https:// URL with a host"
    assert field_error(page, "tick_interval_seconds") == "Error: must be between 5 and 86400"
    assert 'id="max_per_hour" name="max_per_hour" type="text" value="many"' in page
    assert 'aria-describedby="max_per_hour-hint max_per_hour-error" aria-invalid="true"' in page
    assert "Nothing was saved: 3 field(s) need correcting" in page
    assert 'href="#site_url"' in page  # the summary links to the field
    session.expire_all()
    assert get_runtime_settings(session) == runtime


def test_good_values_are_saved_with_a_message(
    admin: Flask, session: Session, runtime: RuntimeSettings
) -> None:
    client = logged_in(admin, "boss@example.com")
    form = settings_form(runtime, max_per_hour="250", postal_address="2 New Road\nSpringfield")
    del form["mandatory_opt_out"]  # the box unticked
    form["open_tracking"] = "on"

    response = post_form(client, "/admin/settings", form)

    assert response.status_code == 302
    session.expire_all()
    saved = get_runtime_settings(session)
    assert saved.max_per_hour == 250
    assert saved.postal_address == "2 New Road\nSpringfield"
    assert saved.mandatory_opt_out is False and saved.open_tracking is True
    page = client.get("/admin/settings").get_data(as_text=True)
    assert "Settings saved: Max emails per hour, Mandatory opt-out link, Open tracking" in page
    assert 'value="250"' in page


def test_the_smtp_test_says_when_no_relay_is_configured(admin: Flask) -> None:
    client = logged_in(admin, "boss@example.com")

    page = post_form(client, "/admin/settings/test-smtp").get_data(as_text=True)

    assert "SMTP relay test: no SMTP relay is configured: set SLUICE_SMTP_URL" in page


def test_the_mailbox_test_says_when_no_mailbox_is_configured(admin: Flask) -> None:
    client = logged_in(admin, "boss@example.com")

    page = post_form(client, "/admin/settings/test-mailbox").get_data(as_text=True)

    assert "no bounce mailbox is configured: set SLUICE_IMAP_URL" in page


def test_the_mailbox_test_reports_what_the_imap_server_said(
    admin: Flask, dovecot: DovecotServer
) -> None:
    user = dovecot.new_user()
    dovecot.append(user, [b"Subject: one\r\n\r\nbody\r\n"])
    client = logged_in(admin, "boss@example.com")
    good_url = dovecot.url(user)
    admin.config["SLUICE_SETTINGS"] = replace(app_settings(admin), imap_url=good_url)

    good = post_form(client, "/admin/settings/test-mailbox").get_data(as_text=True)

    assert "The bounce mailbox accepted the log-in." in good
    assert "Folder INBOX: 1 message(s)" in html.unescape(good)
    scheme, _, rest = good_url.partition("://")
    login_part, _, location = rest.rpartition("@")
    password = login_part.partition(":")[2]
    assert password and password not in good  # never shown
    wrong_url = f"{scheme}://{login_part.split(':')[0]}:wrong-password@{location}"
    admin.config["SLUICE_SETTINGS"] = replace(app_settings(admin), imap_url=wrong_url)

    bad = html.unescape(post_form(client, "/admin/settings/test-mailbox").get_data(as_text=True))

    assert "Bounce mailbox test: failed at login:" in bad
    assert "wrong-password" not in bad


def test_an_admin_adds_a_user_who_can_log_in_with_the_password_shown_once(
    admin: Flask, session: Session
) -> None:
    client = logged_in(admin, "boss@example.com")

    response = post_form(
        client,
        "/admin/users",
        {"email": "Mark@Example.com", "role": "marketer", "how": "password"},
    )
    page = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "User Mark@example.com created as marketer." in page
    password = re.search(r'<code class="secret" id="new-password">([^<]+)</code>', page)
    assert password
    assert password.group(1) not in client.get("/admin/users").get_data(as_text=True)
    marketer = admin.test_client()
    assert login(marketer, "mark@example.com", html.unescape(password.group(1))).status_code == 302
    assert marketer.get("/admin/users").status_code == 403


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"email": "boss@EXAMPLE.com", "role": "marketer"}, "email", "already exists"),
        ({"email": HOSTILE, "role": "marketer"}, "email", "@-sign"),
        ({"email": "new@example.com", "role": "owner"}, "role", "choose admin or marketer"),
    ],
)
def test_a_bad_new_user_is_refused_next_to_its_field(
    admin: Flask, session: Session, form: dict[str, str], field: str, message: str
) -> None:
    client = logged_in(admin, "boss@example.com")

    response = post_form(client, "/admin/users", form)
    page = response.get_data(as_text=True)

    assert response.status_code == 400
    assert message in field_error(page, field)
    assert HOSTILE not in page
    assert [user.email for user in session.scalars(select(User))] == ["boss@example.com"]


def test_an_admin_cannot_deactivate_themselves_or_demote_the_last_admin(
    admin: Flask, session: Session
) -> None:
    client = logged_in(admin, "boss@example.com")
    page = client.get("/admin/users").get_data(as_text=True)
    assert "/admin/users/1/deactivate" not in page  # no button for oneself

    deactivated = post_form(client, "/admin/users/1/deactivate")
    demoted = post_form(client, "/admin/users/1/role", {"role": "marketer"})

    assert deactivated.status_code == demoted.status_code == 302
    page = client.get("/admin/users").get_data(as_text=True)
    assert "Not done: you cannot deactivate your own account." in page
    assert "Not done: boss@example.com is the last active administrator" in page
    session.expire_all()
    boss = session.scalars(select(User)).one()
    assert boss.active and boss.role == Role.ADMIN


def test_deactivate_activate_and_change_role_with_messages(admin: Flask, session: Session) -> None:
    client = logged_in(admin, "boss@example.com")
    add_user(admin, "mark@example.com", Role.MARKETER)

    post_form(client, "/admin/users/2/deactivate")
    assert "mark@example.com is deactivated" in client.get("/admin/users").get_data(as_text=True)
    post_form(client, "/admin/users/2/activate")
    assert "mark@example.com is active again." in client.get("/admin/users").get_data(as_text=True)
    post_form(client, "/admin/users/2/role", {"role": "admin"})
    assert "mark@example.com is now an admin." in client.get("/admin/users").get_data(as_text=True)

    session.expire_all()
    mark = session.get(User, 2)
    assert mark is not None and mark.active and mark.role == Role.ADMIN


def test_the_jobs_page_shows_jobs_runners_and_the_checklist(
    admin: Flask, session: Session, clock: FixedClock
) -> None:
    job_runs.heartbeat(session, "runner-1", clock, dict.fromkeys(JOB_IDS, clock.now()))
    run = job_runs.start_run(session, "dispatch", "runner-1", clock)
    job_runs.finish_run(session, run, clock, error=f"relay said {HOSTILE}")
    session.commit()
    client = logged_in(admin, "boss@example.com")

    page = client.get("/admin/jobs").get_data(as_text=True)

    assert "Troubleshooting checklist" in page
    for question in (
        "Does Send Test work (is the SMTP relay reachable)?",
        "Is a job runner alive?",
        "Are the scheduled jobs active?",
        "Is the site URL reachable from the server?",
        "Is the bounce mailbox reachable?",
    ):
        assert question in page
    assert "1 alive; last heartbeat 0 s ago" in page
    assert "no SMTP relay is configured" in page
    assert "http://127.0.0.1:5000/healthz is not reachable" in page  # nothing serves it here
    for job_id in JOB_IDS:
        assert f'<th scope="row">{job_id}<br>' in page
    assert "error: relay said &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert HOSTILE not in page
    assert "runner-1" in page


def test_the_dashboard_shows_quota_and_mass_emails_being_sent_escaped(
    admin: Flask, web: Flask, session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    mass_email = make_mass_email(session, scene, clock, HOSTILE)
    schedule(web, session, clock, mass_email)
    activate_due(session, clock)
    client = logged_in(admin, "mark@example.com", Role.MARKETER)

    page = client.get("/").get_data(as_text=True)
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())  # the live figures are in spans

    assert "0 of 1000 emails used in the last 60 minutes" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert HOSTILE not in page
    # Three of the five were settled when the queue was built (opted out,
    # invalid, no address); two wait for the runner, with an estimate.
    assert "3 of 5 done" in text
    # 2 left at min(1,000/h, 100 per 60 s tick) = 1,000 an hour: 7.2 s.
    assert "2026-03-02 09:00:07 UTC (in 7 s)" in page
