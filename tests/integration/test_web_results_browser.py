"""The results pages and the dashboard in a real browser (chromium through
Playwright): hostile names stay text on every results page, the sandboxed
copy cannot run script, the empty states, and the dashboard without
JavaScript (a Refresh link) and with it (live figures)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app import app_settings
from app.extensions import db
from app.models import QueueItem
from app.services import engagement
from app.services.dispatch_send import MessageConfig, dispatch_tick
from app.services.queue_build import activate_due
from app.services.runtime_settings import get_runtime_settings, update_runtime_settings
from app.services.transport import SmtpSettings, SmtpTransport
from tests.browser_harness import (
    DESKTOP,
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
from tests.conftest import TEST_SECRET_KEY
from tests.service.test_queue_build import make_mass_email, make_scene, schedule

__all__ = ["browser", "live", "watch"]  # fixtures

HOSTILE = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=alert(2)>'


@pytest.fixture
def page(browser: Any, live: LiveApp, watch: Watch) -> Any:
    opened = new_page(browser, live, watch)
    yield opened
    assert_clean(opened, watch)
    opened.context.close()


def send_hostile_mass_email(live: LiveApp, *, tick: bool = True) -> int:
    """A mass email and a contact named like an attack, sent to the relay,
    one open recorded; returns the mass email's id."""
    with live.app.app_context():
        session = db.session
        scene = make_scene(session, live.clock)
        scene.contacts["ann"].first_name = HOSTILE
        scene.contacts["ann"].last_name = ATTRIBUTE
        scene.template.body_html = "<p>Hi {{ FIRST_NAME }}</p><script>alert(3)</script>"
        mass_email = make_mass_email(session, scene, live.clock, HOSTILE)
        mass_email.campaign.name = ATTRIBUTE
        update_runtime_settings(session, {"batch_size": 1}, live.clock)
        schedule(live.app, session, live.clock, mass_email)
        activate_due(session, live.clock)
        session.commit()
        if tick:
            relay = live.relay
            dispatch_tick(
                session,
                lambda: SmtpTransport(
                    SmtpSettings(host=relay.host, port=relay.port, username="", password="")
                ),
                live.clock,
                get_runtime_settings(session),
                "runner-browser",
                config=MessageConfig(app_settings(live.app), TEST_SECRET_KEY, None),
            )
            session.commit()
            item_id = session.scalar(
                select(QueueItem.id).where(
                    QueueItem.mass_email_id == mass_email.id, QueueItem.sent_at.is_not(None)
                )
            )
            assert item_id is not None
            live.clock.advance(timedelta(minutes=5))
            engagement.record_open(session, item_id, live.clock, HOSTILE)
            session.commit()
        return mass_email.id


@pytest.mark.parametrize(("width", "viewport"), [("desktop", DESKTOP), ("mobile", MOBILE)])
def test_hostile_names_stay_text_on_every_results_page(
    browser: Any, live: LiveApp, watch: Watch, width: str, viewport: dict[str, int]
) -> None:
    mass_email_id = send_hostile_mass_email(live)
    page = new_page(browser, live, watch, viewport)
    log_in(page, MARKETER_EMAIL)
    with live.app.app_context():
        ann = db.session.scalar(select(QueueItem.id).where(QueueItem.email == "ann@example.org"))
    problems: list[str] = []
    for name, path in [
        ("results-index", "/results"),
        ("results-hostile", f"/results/{mass_email_id}"),
        ("recipients-hostile", f"/results/{mass_email_id}/recipients"),
        ("recipient-hostile", f"/results/{mass_email_id}/recipients/{ann}"),
    ]:
        page.goto(path)
        expect(page.locator("main")).to_contain_text(HOSTILE)
        if name == "recipient-hostile":
            # The copy's own <script> is refused by the sandbox, and the
            # browser says so; that is the one error expected here.
            copy = page.frame_locator("iframe.mail-frame")
            expect(copy.locator("p").first).to_contain_text(HOSTILE)
            if not watch.errors:  # events arrive while Playwright is called
                page.wait_for_event("console", timeout=15_000)
            assert watch.errors and all(
                "the document's frame is sandboxed and the 'allow-scripts' permission is not set"
                in error
                for error in watch.errors
            ), watch.errors
            watch.errors.clear()
        problems += [f"{name}: {found}" for found in serious_accessibility_violations(page)]
        if page.evaluate("document.documentElement.scrollWidth - window.innerWidth") > 0:
            problems.append(f"{name}: wider than the screen")
        screenshot(page, f"{name}-{width}")
        assert_clean(page, watch)
    assert watch.dialogs == []
    page.context.close()
    assert problems == []


def test_the_results_index_and_a_mass_email_not_started_explain_what_to_do(
    page: Any, live: LiveApp
) -> None:
    log_in(page, MARKETER_EMAIL)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Results").click()
    expect(page.locator(".empty-state")).to_contain_text("No mass email has results yet.")
    mass_email_id = send_hostile_mass_email(live, tick=False)
    page.goto(f"/results/{mass_email_id}")
    expect(page.get_by_role("heading", name="Opens and clicks over time")).to_be_visible()
    expect(page.locator("main")).to_contain_text("No opens or clicks recorded yet.")
    page.goto(f"/results/{mass_email_id}/recipients?status=clicked")
    expect(page.locator("main")).to_contain_text("No recipient is clicked.")


def test_the_dashboard_works_without_javascript(browser: Any, live: LiveApp, watch: Watch) -> None:
    context = browser.new_context(java_script_enabled=False, base_url=live.url)
    page = context.new_page()
    log_in(page, MARKETER_EMAIL)
    send_hostile_mass_email(live, tick=False)
    page.goto("/")
    row = page.locator("tr[data-mass-email-id]")
    expect(row.locator('[data-live="done"]')).to_have_text("3")  # settled at build

    with live.app.app_context():
        relay = live.relay
        dispatch_tick(
            db.session,
            lambda: SmtpTransport(
                SmtpSettings(host=relay.host, port=relay.port, username="", password="")
            ),
            live.clock,
            get_runtime_settings(db.session),
            "runner-browser",
            config=MessageConfig(app_settings(live.app), TEST_SECRET_KEY, None),
        )
        db.session.commit()
    page.get_by_role("link", name="Refresh").click()

    expect(row.locator('[data-live="done"]')).to_have_text("4")
    context.close()
