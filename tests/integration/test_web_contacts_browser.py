"""The contacts, import, target list and suppression pages in a real
browser (Debian's chromium through Playwright): a marketer's main flows,
hostile names shown as text, accessibility (axe-core) and screenshots at
1280 and 375 px (``tests/artifacts/screenshots/``)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from app import app_settings
from app.extensions import db
from app.models import CampaignLogEntry, CampaignLogEvent, Contact, SuppressionReason
from app.services import suppression
from app.services.target_lists import create_target_list
from jobs import contact_import
from jobs.recording import run_recorded
from jobs.scheduler import JobRunner
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
from tests.conftest import add_contact
from tests.service.test_queue_build import make_mass_email, make_scene

__all__ = ["browser", "live", "watch"]  # fixtures

HOSTILE = "<script>alert(1)</script>"
CSV = (
    "email,first name,last name,company\n"
    f"ann@example.com,Ann,Smith,{HOSTILE}\n"
    "not an address,Bad,Row,\n"
    "bob@gmial.com,Bob,Jones,Acme\n"
    "cid@example.com,Cid,Lee,Acme\n"
)


@pytest.fixture
def page(browser: Any, live: LiveApp, watch: Watch) -> Any:
    opened = new_page(browser, live, watch)
    yield opened
    assert_clean(opened, watch)
    opened.context.close()


def status(page: Any) -> Any:
    return page.get_by_role("status").first


def test_a_marketer_imports_a_csv_with_bad_rows_and_builds_a_list(
    page: Any, live: LiveApp, tmp_path: Path
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(CSV, encoding="utf-8")
    log_in(page, MARKETER_EMAIL)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Contacts").click()
    expect(page.get_by_text("There are no contacts yet.")).to_be_visible()
    page.get_by_role("link", name="Import a CSV file").first.click()

    page.get_by_role("button", name="Import").click()  # nothing chosen
    expect(page.locator("#file-error")).to_have_text("Error: choose a CSV file")
    expect(page.get_by_label("CSV file", exact=True)).to_have_attribute("aria-invalid", "true")

    page.get_by_label("CSV file", exact=True).set_input_files(str(csv_file))
    page.get_by_label("Target list").fill("Newsletter")
    page.get_by_role("button", name="Import").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Import of people.csv")
    expect(status(page)).to_contain_text("4 row(s) into list Newsletter: 3 created")
    rejected = page.get_by_role("region", name="Rows that were not imported, in file order")
    expect(rejected).to_contain_text("row 3")
    expect(rejected).to_contain_text("An email address must have an @-sign.")
    expect(page.get_by_role("region", name="Rows imported with a warning")).to_contain_text(
        "did you mean bob@gmail.com?"
    )
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the rejected rows (CSV)").click()
    downloaded = Path(download_info.value.path()).read_text(encoding="utf-8-sig")
    assert downloaded.splitlines()[1].startswith("3,email 'not an address'")
    screenshot(page, "contacts-import-report-desktop")

    page.goto("/contacts?q=acme")
    expect(page.get_by_role("row")).to_have_count(3)  # header + Bob + Cid
    page.goto("/lists")
    page.get_by_label("Name", exact=True).fill("Acme people")
    page.get_by_role("button", name="Create list").click()
    expect(status(page)).to_have_text("List Acme people created. Add contacts to it below.")
    page.get_by_label("Search", exact=True).fill("acme")
    page.get_by_role("button", name="Add everyone found").click()
    expect(status(page)).to_have_text("2 contact(s) added to the list.")
    expect(page.get_by_text("2 member(s).")).to_be_visible()

    page.get_by_role("link", name="cid@example.com").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("cid@example.com")
    page.get_by_role("button", name="Opt out of mass email").click()
    expect(status(page)).to_have_text("cid@example.com is opted out of mass email.")
    page.get_by_label("Last name").fill("x" * 201)
    page.get_by_role("button", name="Save fields").click()
    expect(page.locator("#last_name-error")).to_have_text("Error: at most 200 characters")
    page.get_by_role("button", name="Delete contact").click()
    expect(status(page)).to_contain_text("Contact cid@example.com deleted.")


def test_a_file_over_the_in_request_limit_is_imported_in_the_background(
    page: Any, live: LiveApp, tmp_path: Path
) -> None:
    # The in-request limit lowered to 1 KB, so a small file is "big".
    live.app.config["SLUICE_SETTINGS"] = replace(
        app_settings(live.app), import_inline_max_kilobytes=1
    )
    rows = "".join(f"person{n}@example.com,Person,{n}\n" for n in range(40))
    csv_file = tmp_path / "big.csv"
    csv_file.write_text("email,first name,last name\nnot an address,Bad,Row\n" + rows)
    assert csv_file.stat().st_size > 1024

    log_in(page, MARKETER_EMAIL)
    page.goto("/contacts/import")
    page.get_by_label("CSV file", exact=True).set_input_files(str(csv_file))
    page.get_by_label("Target list").fill("Big list")
    page.get_by_role("button", name="Import").click()

    expect(status(page)).to_contain_text("big.csv (1 KB) is imported in the background")
    in_progress = page.get_by_role("region", name="Imports waiting or running, oldest first")
    expect(in_progress).to_contain_text("big.csv")
    expect(in_progress).to_contain_text("waiting for the runner")
    assert serious_accessibility_violations(page) == []
    screenshot(page, "contacts-import-pending-desktop")

    # The runner's job imports it; the page, polling, reloads by itself.
    runner = JobRunner(live.app, runner="browser-test-runner")
    runner.start(paused=True)
    try:
        run_recorded(runner.context, contact_import.JOB_ID, contact_import.run)
    finally:
        runner.stop()
    expect(page.get_by_role("heading", name="Imports in progress")).to_have_count(0, timeout=15_000)
    page.get_by_role("link", name="big.csv").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Import of big.csv")
    expect(page.get_by_text("did not finish")).to_have_count(0)
    rejected = page.get_by_role("region", name="Rows that were not imported, in file order")
    expect(rejected).to_contain_text("row 2")
    expect(page.get_by_role("link", name="Download the rejected rows (CSV)")).to_be_visible()
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Contact)) == 40


def test_the_suppression_list_flow(page: Any) -> None:
    log_in(page, MARKETER_EMAIL)
    page.goto("/suppression")
    page.get_by_label("Address to suppress").fill("gone@example.com")
    page.get_by_label("Note").fill("asked by phone")
    page.get_by_role("button", name="Suppress").click()
    expect(status(page)).to_have_text(
        "gone@example.com is suppressed: no mass email will reach it."
    )
    page.get_by_role("link", name=re.compile("^Remove gone@example.com")).click()
    expect(page.get_by_label("Address to remove")).to_have_value("gone@example.com")
    page.get_by_role("button", name="Remove from the list").click()
    expect(page.locator("#why-error")).to_contain_text("say why")
    page.get_by_label("Why").fill("mailbox fixed, ticket 12")
    page.get_by_role("button", name="Remove from the list").click()
    expect(status(page)).to_have_text(
        "gone@example.com is no longer suppressed (removal recorded)."
    )
    expect(page.get_by_role("region", name=re.compile("removed from the list"))).to_contain_text(
        "mailbox fixed, ticket 12"
    )


def test_a_marketer_adds_and_changes_a_custom_field_that_a_template_then_reads(
    page: Any, live: LiveApp
) -> None:
    with live.app.app_context():
        contact = add_contact(
            db.session,
            live.clock,
            "ann@example.com",
            first_name="Ann",
            custom_fields={"city": "Denver"},
        )
        db.session.commit()
        contact_id = contact.id
    log_in(page, MARKETER_EMAIL)
    page.goto(f"/contacts/{contact_id}")
    custom = page.get_by_role("region", name="Custom fields")
    expect(custom.get_by_label("city", exact=True)).to_have_value("Denver")
    expect(custom.get_by_text("In a template: {{ city }}")).to_be_visible()

    custom.get_by_label("Name", exact=True).fill("E-mail")
    custom.get_by_label("Value", exact=True).fill("gold")
    custom.get_by_role("button", name="Save custom fields").click()
    expect(page.locator("#new_name-error")).to_contain_text("'E-mail' is the contact's email")
    expect(custom.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(custom.get_by_label("Value", exact=True)).to_have_value("gold")  # kept as typed

    custom.get_by_label("Name", exact=True).fill("plan")
    custom.get_by_role("button", name="Save custom fields").click()
    expect(status(page)).to_have_text("Custom fields saved: added plan.")
    expect(custom.get_by_label("plan", exact=True)).to_have_value("gold")
    expect(custom.get_by_text("In a template: {{ plan }}")).to_be_visible()

    custom.get_by_label("plan", exact=True).fill("platinum")
    custom.get_by_label("city", exact=True).fill("")
    custom.get_by_role("button", name="Save custom fields").click()
    expect(status(page)).to_have_text("Custom fields saved: changed plan; removed city.")
    expect(custom.get_by_label("plan", exact=True)).to_have_value("platinum")
    expect(custom.get_by_label("city", exact=True)).to_have_count(0)
    screenshot(page, "contact-custom-fields-desktop")

    page.goto("/templates/new")
    page.get_by_label("Preview for").fill("ann@example.com")
    page.get_by_label("HTML body").fill("<p>Your plan: {{ plan }}</p>")
    preview = page.frame_locator('iframe[name="preview-desktop"]')
    expect(preview.get_by_text("Your plan: platinum")).to_be_visible()


def seed(live: LiveApp) -> dict[str, int]:
    """A hostile contact with activity, lists, a suppression and an import."""
    with live.app.app_context():
        session = db.session
        scene = make_scene(session, live.clock)
        mass_email = make_mass_email(session, scene, live.clock, HOSTILE)
        mass_email.queue_built_at = live.clock.now()
        hostile = add_contact(
            session,
            live.clock,
            "hostile@example.com",
            first_name=HOSTILE,
            company=HOSTILE,
            custom_fields={HOSTILE: HOSTILE, "plan": "pro", "note": "two\nlines"},
        )
        for event in (CampaignLogEvent.SENT, CampaignLogEvent.OPENED, CampaignLogEvent.CLICKED):
            session.add(
                CampaignLogEntry(
                    contact_id=hostile.id,
                    mass_email_id=mass_email.id,
                    event=event,
                    occurred_at=live.clock.now(),
                    detail={"url": HOSTILE},
                )
            )
        create_target_list(session, HOSTILE, HOSTILE, live.clock)
        suppression.add(
            session, "blocked@example.com", SuppressionReason.MANUAL, HOSTILE, live.clock
        )
        session.commit()
        return {"contact": hostile.id, "list": scene.customers.id}


@pytest.mark.parametrize(("width", "viewport"), [("desktop", DESKTOP), ("mobile", MOBILE)])
def test_every_contacts_page_is_accessible_fits_and_shows_hostile_text_as_text(
    browser: Any, live: LiveApp, watch: Watch, width: str, viewport: dict[str, int]
) -> None:
    ids = seed(live)
    page = new_page(browser, live, watch, viewport)
    log_in(page, MARKETER_EMAIL)
    pages = [
        ("contacts", "/contacts"),
        ("contacts-search", "/contacts?q=hostile"),
        ("contact", f"/contacts/{ids['contact']}"),
        ("contact-new", "/contacts/new"),
        ("contacts-import", "/contacts/import"),
        ("lists", "/lists"),
        ("list", f"/lists/{ids['list']}"),
        ("suppression", "/suppression"),
    ]
    problems = []
    for name, path in pages:
        page.goto(path)
        problems += [f"{name}: {found}" for found in serious_accessibility_violations(page)]
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 0:
            problems.append(f"{name}: {overflow} px wider than the {viewport['width']} px screen")
        screenshot(page, f"{name}-{width}")
        assert_clean(page, watch)
    page.goto(f"/contacts/{ids['contact']}")
    expect(page.get_by_text(f"url: {HOSTILE}").first).to_be_visible()
    expect(page.get_by_label(HOSTILE, exact=True)).to_have_value(HOSTILE)
    expect(page.get_by_label("note", exact=True)).to_have_value("two\nlines")
    page.context.close()
    assert problems == []
