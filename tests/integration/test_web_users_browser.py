"""Invitations and time zones in a real browser (Debian's chromium through
Playwright): an administrator invites a user, the mail is caught by the
test relay (aiosmtpd), the new user follows its link, sets a password and
logs in, and the link then says it was used; a user in America/New_York
schedules a mass email at a local time, stored in UTC and shown back in
local time. axe-core and 375 px on the new pages, with screenshots."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime
from typing import Any

from playwright.sync_api import expect

from app.extensions import db
from app.models import MassEmail, MassEmailStatus
from tests.browser_harness import (
    ADMIN_EMAIL,
    MARKETER_EMAIL,
    MOBILE,
    LiveApp,
    Watch,
    assert_clean,
    browser,
    live,
    log_in,
    new_page,
    screenshot,
    serious_accessibility_violations,
    watch,
)
from tests.service.test_queue_build import make_mass_email, make_scene

__all__ = ["browser", "live", "watch"]  # fixtures

NEW_PASSWORD = "my own long password"


def mailed_link(live: LiveApp) -> str:
    message = email.message_from_bytes(live.relay.handler.messages[-1].data)
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    found = re.search(r"(https?://\S+/password/[A-Za-z0-9_-]+)", body)
    assert found, body
    return found.group(1)


def check_page(page: Any, name: str) -> None:
    """No serious accessibility problem at desktop and phone width; screenshots."""
    assert serious_accessibility_violations(page) == []
    screenshot(page, f"{name}-1280")
    page.set_viewport_size(MOBILE)
    assert serious_accessibility_violations(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"]
    screenshot(page, f"{name}-375")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_an_invited_user_sets_a_password_from_the_mail_and_logs_in(
    browser: Any, live: LiveApp, watch: Watch
) -> None:
    admin = new_page(browser, live, watch)
    log_in(admin, ADMIN_EMAIL)
    admin.goto("/admin/users")
    admin.get_by_label("Email address").fill("new.person@example.com")
    admin.get_by_label("Role", exact=True).select_option("marketer")
    admin.get_by_role("button", name="Invite by email").click()

    expect(admin.get_by_role("status").first).to_contain_text(
        "User new.person@example.com created as marketer; the invitation was sent. "
        "The relay answered: 250"
    )
    expect(admin.get_by_text("invited, link valid until 2026-03-05 09:00:00 UTC")).to_be_visible()
    check_page(admin, "users-invited")
    [mail] = live.relay.handler.messages
    assert mail.recipients == ["new.person@example.com"]
    link = mailed_link(live)
    assert link.startswith(live.url + "/password/")

    newcomer = new_page(browser, live, watch)
    newcomer.goto(link)
    expect(newcomer.get_by_role("heading", level=1)).to_have_text("Set your password")
    check_page(newcomer, "set-password")
    newcomer.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    newcomer.get_by_label("Password again").fill("not the same password")
    newcomer.get_by_role("button", name="Set password").click()
    expect(newcomer.locator("#confirm_password-error")).to_contain_text("does not match")
    newcomer.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    newcomer.get_by_label("Password again").fill(NEW_PASSWORD)
    newcomer.get_by_role("button", name="Set password").click()

    expect(newcomer.get_by_role("status").first).to_have_text(
        "Your password is set. Log in as new.person@example.com with it."
    )
    log_in(newcomer, "new.person@example.com", NEW_PASSWORD)
    expect(newcomer.get_by_role("heading", level=1)).to_have_text("Dashboard")

    used = new_page(browser, live, watch)
    used.goto(link)
    expect(used.get_by_role("heading", level=1)).to_have_text("This link cannot be used")
    expect(used.locator("#link-problem")).to_contain_text("already used")
    check_page(used, "password-link-used")
    for opened in (admin, newcomer, used):
        assert_clean(opened, watch)
        opened.context.close()


def test_a_new_york_user_schedules_at_a_local_time(
    browser: Any, live: LiveApp, watch: Watch
) -> None:
    with live.app.app_context():
        scene = make_scene(db.session, live.clock)
        mass_email_id = make_mass_email(db.session, scene, live.clock).id
        db.session.commit()
    page = new_page(browser, live, watch)
    log_in(page, MARKETER_EMAIL)
    page.goto("/account")
    page.get_by_label("Time zone").select_option("America/New_York")
    page.get_by_role("button", name="Save time zone").click()
    expect(page.get_by_role("status").first).to_have_text(
        "Times are now shown and read in America/New_York."
    )
    check_page(page, "account")

    page.goto(f"/campaigns/mass-emails/{mass_email_id}/schedule")
    page.get_by_label("At this time").check()
    start = page.get_by_label("Start time (America/New_York)")
    start.fill("2026-03-08T02:30")  # the clocks skip from 02:00 to 03:00
    page.get_by_label("I confirm that the subject and content meet CAN-SPAM").check()
    page.get_by_role("button", name="Schedule").click()
    expect(page.locator("#start_at-error")).to_contain_text(
        "2026-03-08 02:30 does not exist in America/New_York"
    )
    page.get_by_label("Start time (America/New_York)").fill("2026-03-03T08:00")
    page.get_by_label("I confirm that the subject and content meet CAN-SPAM").check()
    page.get_by_role("button", name="Schedule").click()

    expect(page.get_by_role("status").first).to_contain_text(
        "is scheduled to start at 2026-03-03 08:00:00 EST"
    )
    with live.app.app_context():
        stored = db.session.get(MassEmail, mass_email_id)
        assert stored is not None and stored.status == MassEmailStatus.PENDING
        assert stored.start_at == datetime(2026, 3, 3, 13, 0, tzinfo=UTC)
    expect(page.get_by_text("2026-03-03 08:00:00 EST", exact=True)).to_be_visible()
    page.goto("/")
    expect(page.get_by_text("Figures as of 2026-03-02 04:00:00 EST.")).to_be_visible()
    assert_clean(page, watch)
    page.context.close()
