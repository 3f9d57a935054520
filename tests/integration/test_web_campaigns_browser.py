"""The template and campaign pages in a real browser (Debian's chromium
through Playwright): the editor's placeholder helper and live preview in
sandboxed frames, errors with their line, a campaign from creation to a
scheduled mass email (pre-flight, CAN-SPAM, Send Test caught by the test
relay), pause, resume, delete; hostile names; axe-core and 375 px on every
page, with screenshots (``tests/artifacts/screenshots/``)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.models import MassEmail, MassEmailStatus, SenderProfile
from app.services.campaigns import create_sender_profile
from app.services.queue_build import activate_due
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
from tests.service.test_queue_build import make_mass_email, make_scene, schedule

__all__ = ["browser", "live", "watch"]  # fixtures

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def page(browser: Any, live: LiveApp, watch: Watch) -> Any:
    """A desktop page logged in as the marketer; afterwards, nothing the
    browser reported (no CSP violation, no script error, no alert)."""
    opened = new_page(browser, live, watch)
    log_in(opened, MARKETER_EMAIL)
    yield opened
    assert_clean(opened, watch)
    opened.context.close()


def seeded(live: LiveApp, *mass_emails: str, hostile: bool = False) -> dict[str, int]:
    """Contacts, lists, a sender profile and a template (``make_scene``),
    plus a draft mass email per name, each in its own campaign; their ids.
    ``hostile`` names the profile, template and list ``HOSTILE``."""
    with live.app.app_context():
        scene = make_scene(db.session, live.clock)
        if hostile:
            scene.profile.name = scene.template.name = scene.customers.name = HOSTILE
        ids = {"template": scene.template.id}
        for name in mass_emails:
            made = make_mass_email(db.session, scene, live.clock, name=name)
            ids[name] = made.id
            ids[f"{name} campaign"] = made.campaign_id
        db.session.commit()
        return ids


def test_the_template_editor_inserts_placeholders_previews_live_and_shows_errors(
    page: Any, live: LiveApp
) -> None:
    seeded(live)
    page.goto("/templates")
    page.get_by_role("link", name="New template").first.click()
    page.get_by_label("Name", exact=True).fill("Welcome")
    page.get_by_label("Subject").fill("Welcome ")
    page.get_by_role("button", name="{{ first_name }}").click()  # into the subject
    body = page.get_by_label("HTML body")
    body.fill("<p>Dear </p>")
    body.evaluate("node => node.setSelectionRange(8, 8)")
    page.get_by_role("button", name="{{ last_name }}").click()

    expect(page.get_by_label("Subject")).to_have_value("Welcome {{ first_name }}")
    expect(body).to_have_value("<p>Dear {{ last_name }}</p>")
    desktop = page.frame_locator('iframe[name="preview-desktop"]')
    mobile = page.frame_locator('iframe[name="preview-mobile"]')
    # The live preview follows the typing: the contact is the first one (ann).
    expect(desktop.get_by_text("Dear")).to_be_visible()
    expect(mobile.get_by_text("Example Corp")).to_be_visible()
    page.get_by_label("Preview for").fill("dee@example.org")
    body.fill("<p>Dear {{ first_name }}</p>")
    expect(desktop.get_by_text("Dear Dee")).to_be_visible()
    expect(mobile.get_by_text("Dear Dee")).to_be_visible()
    frame_box = page.locator('iframe[name="preview-mobile"]').bounding_box()
    assert frame_box is not None and 370 <= frame_box["width"] <= 380
    screenshot(page, "template-editor-desktop")

    body.fill("<p>Dear {{ first_name }}</p>\n<p>{% if %}</p>")
    expect(desktop.get_by_text("No preview: fix these first")).to_be_visible()
    expect(desktop.get_by_text("body_html, line 2:")).to_be_visible()
    page.get_by_role("button", name="Save template").click()

    expect(page.get_by_role("alert").first).to_contain_text("The template was not saved")
    expect(page.locator("#body_html-error")).to_contain_text("line 2:")
    expect(page.get_by_label("HTML body")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("HTML body").fill("<p>Dear {{ first_name }}</p>")
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("status").first).to_have_text("Template 'Welcome' saved.")
    expect(desktop.get_by_text("Dear Ann")).to_be_visible()  # the saved one, for ann


def test_a_campaign_from_creation_to_scheduled_with_send_test(
    page: Any, live: LiveApp, watch: Watch
) -> None:
    seeded(live)
    page.goto("/campaigns")
    expect(page.get_by_text("No campaigns yet.")).to_be_visible()
    page.get_by_role("link", name="Sender profiles").click()
    page.get_by_label("Name", exact=True).fill("Shop")
    page.get_by_label("From name").fill("The Shop")
    page.get_by_label("From address").fill("shop@example.com")
    page.get_by_role("button", name="Save sender profile").click()
    expect(page.get_by_role("status").first).to_have_text("Sender profile 'Shop' saved.")

    page.goto("/campaigns/new")
    page.get_by_label("Name", exact=True).fill("Spring 2026")
    page.get_by_role("group", name="Target lists").get_by_label("Customers").check()
    page.get_by_role("group", name="Excluding lists").get_by_label("Blocked").check()
    page.get_by_label("Sender profile").select_option(label="Shop <shop@example.com>")
    page.get_by_role("button", name="Save campaign").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Spring 2026")

    page.get_by_label("Template").select_option(label="Spring")
    page.get_by_label("At this time").check()
    page.get_by_label("Start time (UTC)").fill("2026-03-01T09:00")  # the day before
    page.get_by_role("button", name="Add mass email").click()
    expect(page.locator("#start_at-error")).to_contain_text("is in the past")
    page.get_by_label("Start time (UTC)").fill("2026-03-03T08:00")
    page.get_by_role("button", name="Add mass email").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("Schedule")
    expect(page.get_by_text("No errors: it can be scheduled.")).to_be_visible()
    expect(page.get_by_label("Start time (UTC)")).to_have_value("2026-03-03T08:00")
    screenshot(page, "schedule-desktop")
    page.get_by_role("button", name="Schedule").click()
    expect(page.locator("#can_spam_confirmed-error")).to_contain_text("confirm")
    page.get_by_label("I confirm that the subject and content meet CAN-SPAM").check()
    page.get_by_role("button", name="Schedule").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "is scheduled to start at 2026-03-03 08:00:00 UTC"
    )

    page.get_by_label("Send the test to").fill("me@example.com")
    page.get_by_role("button", name="Send Test").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Test sent to me@example.com. The relay answered: 250"
    )
    assert [m.recipients for m in live.relay.handler.messages] == [["me@example.com"]]
    assert b"[TEST] Spring sale for Ann" in live.relay.handler.messages[0].data
    expect(page.frame_locator("iframe").first.get_by_text("Hello Ann")).to_be_visible()

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status").first).to_contain_text("is paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status").first).to_contain_text("resumed: it is scheduled again")
    page.get_by_role("link", name="Delete…").click()
    expect(page.get_by_text("it is canceled first, and nothing more is sent")).to_be_visible()
    page.get_by_role("button", name=re.compile("^Delete the mass email")).click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Links in the mail it sent keep working"
    )
    with live.app.app_context():
        mass_email = db.session.query(MassEmail).one()
        assert mass_email.status == MassEmailStatus.CANCELED and mass_email.deleted_at
    assert [d for d in watch.dialogs if not d.startswith("confirm:")] == []


def test_send_test_without_a_relay_says_so(page: Any, live: LiveApp) -> None:
    from dataclasses import replace

    from app import app_settings

    mass_email_id = seeded(live, "April")["April"]
    live.app.config["SLUICE_SETTINGS"] = replace(app_settings(live.app), smtp_url="")
    page.goto(f"/campaigns/mass-emails/{mass_email_id}")

    page.get_by_label("Send the test to").fill("me@example.com")
    page.get_by_role("button", name="Send Test").click()

    expect(page.get_by_role("alert").first).to_contain_text(
        "The test was not sent: no SMTP relay is configured: set SLUICE_SMTP_URL"
    )


def test_hostile_names_are_text_on_every_page(page: Any, live: LiveApp) -> None:
    found = seeded(live, HOSTILE, hostile=True)
    ids = (found[HOSTILE], found[f"{HOSTILE} campaign"], found["template"])
    for path in (
        "/campaigns",
        f"/campaigns/{ids[1]}",
        f"/campaigns/{ids[1]}/edit",
        "/campaigns/senders",
        f"/campaigns/mass-emails/{ids[0]}",
        f"/campaigns/mass-emails/{ids[0]}/schedule",
        "/templates",
        f"/templates/{ids[2]}",
    ):
        page.goto(path)
        expect(page.get_by_text(HOSTILE).first).to_be_visible()
    # The page fixture then checks that no alert() ran and no CSP report came.


def test_a_sender_profile_is_deleted_only_once_no_campaign_uses_it(
    page: Any, live: LiveApp
) -> None:
    ids = seeded(live, "Spring")  # the profile "News" is the campaign's
    page.goto("/campaigns/senders")
    page.get_by_role("link", name="News (edit)").click()
    page.get_by_role("link", name="Delete “News”…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete the sender profile “News”?")
    expect(page.get_by_text("1 campaign(s) use it")).to_be_visible()
    expect(page.get_by_role("button", name="Delete the sender profile")).to_have_count(0)
    page.get_by_role("link", name="Spring (edit the campaign)").click()
    expect(page).to_have_url(re.compile(f"/campaigns/{ids['Spring campaign']}/edit$"))

    page.goto(f"/campaigns/{ids['Spring campaign']}/delete")
    page.get_by_role("button", name=re.compile("^Delete the campaign")).click()
    expect(page.get_by_role("status").first).to_contain_text("deleted")

    page.goto("/campaigns/senders")
    page.get_by_role("link", name="News (edit)").click()
    page.get_by_role("link", name="Delete “News”…").click()
    expect(page.get_by_text("No campaign uses it")).to_be_visible()
    page.get_by_role("button", name="Delete the sender profile").click()
    expect(page.get_by_role("status").first).to_have_text("Sender profile 'News' deleted.")
    expect(page.get_by_text("No sender profiles yet.")).to_be_visible()


def pages_to_check(live: LiveApp) -> list[tuple[str, str]]:
    found = seeded(live, "Draft", "Sending")
    with live.app.app_context():
        sending = db.session.get(MassEmail, found["Sending"])
        assert sending is not None
        schedule(live.app, db.session, live.clock, sending)
        activate_due(db.session, live.clock)
        used = db.session.scalars(
            select(SenderProfile.id).where(SenderProfile.name == "News")
        ).one()
        spare = create_sender_profile(db.session, "Spare", "", "spare@example.com", "").id
        db.session.commit()
    ids = (found["Draft"], found["Draft campaign"], found["Sending"], found["template"])
    return [
        ("templates", "/templates"),
        ("template-new", "/templates/new"),
        ("template-edit", f"/templates/{ids[3]}"),
        ("campaigns", "/campaigns"),
        ("campaign-new", "/campaigns/new"),
        ("campaign", f"/campaigns/{ids[1]}"),
        ("senders", "/campaigns/senders"),
        ("sender-delete", f"/campaigns/senders/{spare}/delete"),
        ("sender-delete-refused", f"/campaigns/senders/{used}/delete"),
        ("mass-email-draft", f"/campaigns/mass-emails/{ids[0]}"),
        ("mass-email-edit", f"/campaigns/mass-emails/{ids[0]}/edit"),
        ("mass-email-schedule", f"/campaigns/mass-emails/{ids[0]}/schedule"),
        ("mass-email-sending", f"/campaigns/mass-emails/{ids[2]}"),
        ("mass-email-delete", f"/campaigns/mass-emails/{ids[2]}/delete"),
    ]


def settle_frames(page: Any) -> None:
    """Wait until every preview frame shows its document. The sandboxed
    frames render in their own process: chromium paints them into a
    full-page screenshot only once a first capture has composited them."""
    frames = page.locator("iframe")
    for index in range(frames.count()):
        if frames.nth(index).get_attribute("src") != "about:blank":
            expect(page.frame_locator("iframe").nth(index).locator("body")).to_be_visible()
            frames.nth(index).scroll_into_view_if_needed()
            page.screenshot()


@pytest.mark.parametrize(("width", "viewport"), [("desktop", DESKTOP), ("mobile", MOBILE)])
def test_every_campaign_page_is_accessible_and_fits_the_screen(
    browser: Any, live: LiveApp, watch: Watch, width: str, viewport: dict[str, int]
) -> None:
    """axe-core finds no serious or critical violation; nothing is wider
    than the screen; a screenshot of each page is saved."""
    pages = pages_to_check(live)
    page = new_page(browser, live, watch, viewport)
    log_in(page, MARKETER_EMAIL)
    problems = []
    for name, path in pages:
        page.goto(path)
        problems += [f"{name}: {found}" for found in serious_accessibility_violations(page)]
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 0:
            problems.append(f"{name}: {overflow} px wider than the {viewport['width']} px screen")
        settle_frames(page)
        screenshot(page, f"{name}-{width}")
        assert_clean(page, watch)
    page.context.close()
    assert problems == []
