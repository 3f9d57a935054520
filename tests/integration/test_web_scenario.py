"""The issue's end-to-end scenario in a real browser (Debian's chromium
through Playwright), every part real: the app served over HTTP, the test
SMTP relay (aiosmtpd), the test IMAP server (Dovecot), a fixed clock the
test moves forward.

An administrator logs in and sets the quota and the postal address; a
marketer, on the pages, imports a CSV with bad rows, builds a list and an
exclusion list, writes a template, previews it, sends a test (caught by
the relay) and schedules after the pre-flight check; the runner sends
under a fast-forwarded clock while the dashboard follows the progress
live; a recipient opens, another clicks; a bounce appended to the IMAP
server is polled; the results page shows the hard bounce and the chart,
the recipient's copy, a target list made from the clickers and the CSV
export. Screenshots at desktop and mobile width; axe-core on the import
report, the schedule page and every results page. It runs on SQLite and
on PostgreSQL (``live`` below).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from app import app_settings
from app.context import app_bounce_handler
from app.extensions import db
from app.services.bounce_poll import poll_bounces
from app.services.dispatch_send import MessageConfig, dispatch_tick
from app.services.queue_build import activate_due
from app.services.runtime_settings import get_runtime_settings
from app.services.transport import SmtpSettings, SmtpTransport
from tests.browser_harness import (
    ADMIN_EMAIL,
    MARKETER_EMAIL,
    MOBILE,
    LiveApp,
    Watch,
    assert_clean,
    browser,
    log_in,
    log_out,
    new_page,
    screenshot,
    serious_accessibility_violations,
    served_app,
    watch,
)
from tests.conftest import TEST_SECRET_KEY
from tests.dovecot import DovecotServer
from tests.integration.test_bounce_processing import dsn
from tests.smtp_server import ReceivedMessage

__all__ = ["browser", "watch"]  # fixtures

CSV_FILE = (
    "email,first_name,last_name,company\r\n"
    "ann@example.org,Ann,Archer,Acme\r\n"
    "bob@example.org,Bob,Baker,Acme\r\n"
    "not-an-address,Bad,Row,Acme\r\n"
    "cy@example.org,Cy,Cole,Initech\r\n"
    "dee@example.org,Dee,Dunn,Initech\r\n"
    "eve@example.org,Eve,Evans,Initech\r\n"
    "fay@gmial.com,Fay,Fox,Initech\r\n"  # a typo: imported, with a warning
    "gus@example.org,Gus,Gray,Initech,one cell too many\r\n"
)
MASS_EMAIL = "Spring sale"
SPRING_CUSTOMERS = [  # the imported rows that are good, the typo among them
    "ann@example.org",
    "bob@example.org",
    "cy@example.org",
    "dee@example.org",
    "eve@example.org",
    "fay@gmial.com",
]


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[LiveApp]:
    """The app served on each database in turn (``database_url``): the
    other browser tests run on SQLite only, this one goes through the
    runner and the bounce poller, whose queries differ on PostgreSQL."""
    with served_app(database_url, tmp_path) as served:
        yield served


def relay_transport(live: LiveApp) -> SmtpTransport:
    return SmtpTransport(
        SmtpSettings(
            host=live.relay.host, port=live.relay.port, username="", password="", timeout=10
        )
    )


def html_part(message: ReceivedMessage) -> str:
    parsed = message_from_bytes(message.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(("html",))
    assert body is not None
    content: str = body.get_content()
    return content


def received_by(live: LiveApp, address: str) -> ReceivedMessage:
    [message] = [
        message
        for message in live.relay.handler.messages
        if message.recipients == [address] and b"X-Sluice-Test" not in message.data
    ]
    return message


def link_in(html: str, live: LiveApp, kind: str) -> str:
    """The message's first tracked link of ``kind`` (``c`` click, ``o`` open pixel)."""
    match = re.search(rf'"({re.escape(live.url)}/t/{kind}/[^"]+)"', html)
    assert match, f"no /t/{kind}/ link in the message"
    return match.group(1)


def admin_sets_quota_and_address(page: Any) -> None:
    log_in(page, ADMIN_EMAIL)
    page.goto("/admin/settings")
    page.get_by_label("Max emails per hour").fill("600")
    page.get_by_label("Batch size per tick").fill("2")
    page.get_by_label("Postal address").fill("2 Harbour Road\nPortsmouth PO1 2AB")
    page.get_by_label("Open tracking").check()
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status").first).to_contain_text("Settings saved: Max emails per hour")
    log_out(page)


def check_page(page: Any, name: str, problems: list[str]) -> None:
    """axe-core, the screen's width, a screenshot, and nothing reported."""
    problems += [f"{name}: {found}" for found in serious_accessibility_violations(page)]
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 0:
        problems.append(f"{name}: {overflow} px wider than the screen")
    screenshot(page, name)


def status(page: Any) -> Any:
    """The page's first flash message that is not an error."""
    return page.get_by_role("status").first


def import_the_csv(page: Any, tmp_path: Path, problems: list[str]) -> None:
    """The CSV with its two bad rows: the report names them by row, and
    the rejected rows download as a file to correct."""
    csv_file = tmp_path / "spring.csv"
    csv_file.write_text(CSV_FILE, encoding="utf-8")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Contacts").click()
    page.get_by_role("link", name="Import a CSV file").first.click()
    page.get_by_label("CSV file", exact=True).set_input_files(str(csv_file))
    page.get_by_label("Target list").fill("Spring customers")
    page.get_by_role("button", name="Import").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Import of spring.csv")
    expect(status(page)).to_contain_text("Imported 8 row(s) into list Spring customers: 6 created")
    expect(status(page)).to_contain_text("2 rejected; 1 warning(s).")
    rejected = page.get_by_role("region", name="Rows that were not imported, in file order")
    row_headers = rejected.get_by_role("rowheader")
    expect(row_headers).to_have_text(["row 4", "row 9"])
    expect(rejected.get_by_role("row", name=re.compile("^row 4 email"))).to_contain_text(
        "An email address must have an @-sign."
    )
    expect(rejected.get_by_role("row", name=re.compile("^row 9 the whole row"))).to_contain_text(
        "has 5 cells but the header has 4 columns"
    )
    warnings = page.get_by_role("region", name="Rows imported with a warning")
    expect(warnings.get_by_role("row", name=re.compile("^row 8 fay@gmial.com"))).to_contain_text(
        "did you mean fay@gmail.com?"
    )
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the rejected rows (CSV)").click()
    downloaded = Path(download_info.value.path()).read_text(encoding="utf-8-sig")
    lines = downloaded.splitlines()
    assert [line.split(",", 1)[0] for line in lines[1:]] == ["4", "9"], downloaded
    assert "not-an-address" in lines[1] and "one cell too many" in lines[2], downloaded
    check_page(page, "scenario-import-report-desktop", problems)


def build_the_lists(page: Any) -> None:
    """The imported list shows its members; an excluding list gets Eve."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Lists").click()
    page.get_by_role("link", name="Spring customers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Spring customers")
    expect(page.get_by_text("6 member(s).")).to_be_visible()
    members = page.get_by_role("region", name=re.compile("^Members, newest contact first"))
    for address in SPRING_CUSTOMERS:
        expect(members.get_by_role("link", name=address, exact=True)).to_be_visible()

    page.get_by_role("link", name="Target lists").click()
    page.get_by_label("Name", exact=True).fill("Do not mail")
    page.get_by_label("Description").fill("asked for no offers")
    page.get_by_role("button", name="Create list").click()
    expect(status(page)).to_have_text("List Do not mail created. Add contacts to it below.")
    page.get_by_label("Email address").fill("eve@example.org")
    page.get_by_role("button", name="Add to the list").click()
    expect(status(page)).to_have_text("eve@example.org added to the list.")
    expect(page.get_by_text("1 member(s).")).to_be_visible()
    expect(page.get_by_role("link", name="eve@example.org")).to_be_visible()


def write_the_template(page: Any, live: LiveApp) -> None:
    """The editor's preview frame renders it for the first contact, Ann,
    with the postal address the administrator set in the footer."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Templates").click()
    page.get_by_role("link", name="New template").first.click()
    page.get_by_label("Name", exact=True).fill("Spring")
    page.get_by_label("Subject").fill("Spring sale for {{ first_name }}")
    heading = "<h1>Hello {{ first_name }}</h1>"
    offers = f'<p><a href="{live.url}/healthz">See the offers</a></p>'
    page.get_by_label("HTML body").fill(heading + offers)
    page.get_by_role("button", name="Preview", exact=True).click()
    desktop = page.get_by_title("Preview at desktop width").content_frame
    expect(desktop.get_by_role("heading", name="Hello Ann")).to_be_visible()
    expect(desktop.locator("body")).to_contain_text("2 Harbour Road")
    expect(desktop.locator("body")).to_contain_text("Portsmouth PO1 2AB")
    page.get_by_role("button", name="Save template").click()
    expect(status(page)).to_have_text("Template 'Spring' saved.")


def add_the_sender_profile(page: Any) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name="Sender profiles").click()
    page.get_by_label("Name", exact=True).fill("News")
    page.get_by_label("From name").fill("Example News")
    page.get_by_label("From address").fill("news@example.com")
    page.get_by_label("Reply-To address").fill("team@example.com")
    page.get_by_role("button", name="Save sender profile").click()
    expect(status(page)).to_have_text("Sender profile 'News' saved.")


def create_the_campaign(page: Any) -> None:
    """The campaign sends to the imported list except the excluding one;
    the mass email takes the template and starts once scheduled."""
    page.get_by_role("link", name="All campaigns").click()
    page.get_by_role("link", name="New campaign").first.click()
    page.get_by_label("Name", exact=True).fill("Spring")
    page.get_by_label("Type").select_option("newsletter")
    page.get_by_role("group", name="Target lists").get_by_label("Spring customers").check()
    page.get_by_role("group", name="Excluding lists").get_by_label("Do not mail").check()
    page.get_by_label("Sender profile").select_option(label="News <news@example.com>")
    page.get_by_role("button", name="Save campaign").click()
    expect(status(page)).to_have_text("Campaign 'Spring' saved.")

    page.get_by_label("Template").select_option(label="Spring")
    page.get_by_label("Name", exact=True).fill(MASS_EMAIL)
    page.get_by_label("Send now, once scheduled").check()
    page.get_by_role("button", name="Add mass email").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Schedule “{MASS_EMAIL}”")


def preview_and_send_test(page: Any, live: LiveApp) -> None:
    """The mass email's own preview, then Send Test, caught by the relay
    with the marketer as its only recipient."""
    page.get_by_role("link", name="Back to the mass email").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(MASS_EMAIL)
    desktop = page.get_by_title("Preview at desktop width").content_frame
    expect(desktop.get_by_role("heading", name="Hello Ann")).to_be_visible()
    expect(desktop.locator("body")).to_contain_text("2 Harbour Road")
    page.get_by_label("Send the test to").fill(MARKETER_EMAIL)
    page.get_by_role("button", name="Send Test").click()
    expect(status(page)).to_contain_text(f"Test sent to {MARKETER_EMAIL}. The relay answered: 250")
    [test_message] = live.relay.handler.messages
    assert test_message.recipients == [MARKETER_EMAIL]
    assert b"X-Sluice-Test" in test_message.data
    assert b"[TEST] Spring sale for Ann" in test_message.data


def schedule_it(page: Any, problems: list[str]) -> int:
    """The pre-flight findings, the CAN-SPAM confirmation it insists on,
    then scheduled to start now; the mass email's id."""
    page.get_by_role("link", name="Check and schedule…").click()
    preflight = page.get_by_role("region", name="Pre-flight check")
    expect(preflight).to_contain_text("No errors: it can be scheduled.")
    expect(preflight).to_contain_text("5 recipients after exclusions and suppressions")
    expect(preflight).to_contain_text("1 removed by the excluding lists")
    check_page(page, "scenario-schedule-desktop", problems)
    page.get_by_label("Now", exact=True).check()
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.get_by_role("alert").first).to_have_text(
        "The mass email was not scheduled: see below."
    )
    confirmation = page.get_by_label("I confirm that the subject and content meet CAN-SPAM")
    expect(confirmation).to_have_accessible_description(re.compile("Error: .*confirm"))
    confirmation.check()
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(status(page)).to_have_text(
        f"'{MASS_EMAIL}' is scheduled to start at 2026-03-02 09:00:00 UTC."
    )
    found = re.search(r"/campaigns/mass-emails/(\d+)$", page.url)
    assert found, page.url
    return int(found.group(1))


def marketer_prepares_the_mass_email(
    page: Any, live: LiveApp, tmp_path: Path, problems: list[str]
) -> int:
    """Import, lists, template, sender profile, campaign, preview, Send
    Test, schedule: all in the browser; the scheduled mass email's id."""
    log_in(page, MARKETER_EMAIL)
    import_the_csv(page, tmp_path, problems)
    build_the_lists(page)
    write_the_template(page, live)
    add_the_sender_profile(page)
    create_the_campaign(page)
    preview_and_send_test(page, live)
    return schedule_it(page, problems)


def runner_tick(live: LiveApp) -> None:
    """What the runner's dispatch job does once, then the clock moves on
    by the tick interval (no sleeping: the clock is fast-forwarded)."""
    with live.app.app_context():
        session = db.session
        activate_due(session, live.clock)
        runtime = get_runtime_settings(session)
        session.commit()
        dispatch_tick(
            session,
            lambda: relay_transport(live),
            live.clock,
            runtime,
            "runner-scenario",
            config=MessageConfig(app_settings(live.app), TEST_SECRET_KEY, None),
        )
        session.commit()
    live.clock.advance(timedelta(seconds=runtime.tick_interval_seconds))


def test_the_issues_scenario_end_to_end(
    browser: Any, live: LiveApp, watch: Watch, dovecot: DovecotServer, tmp_path: Path
) -> None:
    problems: list[str] = []
    admin = new_page(browser, live, watch)
    admin_sets_quota_and_address(admin)
    assert live.runtime_settings().max_per_hour == 600
    assert live.runtime_settings().postal_address.splitlines() == [
        "2 Harbour Road",
        "Portsmouth PO1 2AB",
    ]

    marketer = new_page(browser, live, watch)
    mass_email_id = marketer_prepares_the_mass_email(marketer, live, tmp_path, problems)

    # The runner sends two per tick (the batch size the administrator set);
    # the dashboard follows without a reload.
    runner_tick(live)
    marketer.goto("/")
    row = marketer.locator(f'tr[data-mass-email-id="{mass_email_id}"]')
    expect(row.locator('[data-live="done"]')).to_have_text("2")
    expect(row.locator('[data-live="total"]')).to_have_text("5")
    check_page(marketer, "scenario-dashboard-sending-desktop", problems)
    runner_tick(live)
    expect(row.locator('[data-live="done"]')).to_have_text("4", timeout=30_000)
    expect(marketer.locator('[data-live="as-of"]')).to_contain_text("updated every 5 s")
    runner_tick(live)
    # Done: the next refresh sees it gone from the table and reloads.
    recent = marketer.get_by_role("region", name="Table of recent results")
    expect(recent).to_contain_text(MASS_EMAIL, timeout=30_000)
    # Everyone on the list was sent it but Eve (excluded); the two bad
    # rows were never imported.
    recent.get_by_role("link", name=MASS_EMAIL).click()
    marketer.get_by_role("link", name="See the recipients").click()
    recipients = marketer.get_by_role("region", name="Table of recipients")
    expect(recipients.get_by_role("rowheader")).to_have_count(5)
    sent_to = recipients.get_by_role("rowheader").all_inner_texts()
    assert sorted(sent_to) == sorted(set(SPRING_CUSTOMERS) - {"eve@example.org"})

    # Ann opens (her mail client loads the pixel); Bob clicks, later.
    reader = new_page(browser, live, watch)
    live.clock.advance(timedelta(minutes=20))
    pixel = reader.request.get(link_in(html_part(received_by(live, "ann@example.org")), live, "o"))
    assert pixel.status == 200
    live.clock.advance(timedelta(minutes=40))
    reader.goto(link_in(html_part(received_by(live, "bob@example.org")), live, "c"))
    expect(reader.locator("body")).to_contain_text('"status"')  # landed on /healthz
    reader.context.close()

    # Cy's mailbox does not exist: the bounce arrives in the bounce mailbox.
    user = dovecot.new_user()
    cy = received_by(live, "cy@example.org")
    dovecot.append(
        user, [dsn(cy, status="5.1.1", diagnostic="550 5.1.1 <cy@example.org>: User unknown")]
    )
    live.clock.advance(timedelta(minutes=10))
    with live.app.app_context():
        result = poll_bounces(
            db.session,
            dovecot.url(user),
            app_bounce_handler(live.app, live.clock),
            clock=live.clock,
            runner="runner-scenario",
        )
        db.session.commit()
    assert (result.skipped, result.error) == ("", ""), result.describe()

    # The results page: the hard bounce and the chart.
    marketer.goto("/results")
    marketer.get_by_role("link", name=MASS_EMAIL).click()
    expect(marketer.get_by_role("heading", level=1)).to_have_text(f"Results: {MASS_EMAIL}")
    by_status = marketer.get_by_role("region", name="Table of recipients by status")
    expect(
        by_status.get_by_role("row", name=re.compile(r"^Bounced \(hard\) 1 20\.0 %"))
    ).to_be_visible()
    expect(by_status.get_by_role("row", name=re.compile(r"^Clicked 1 20\.0 %"))).to_be_visible()
    chart = marketer.get_by_role("img", name=re.compile("Bar chart: 2 opens and 1 clicks"))
    expect(chart).to_be_visible()
    # Visible is not loaded: decode() waits for the image (and fails on a
    # broken one) before its size is read.
    assert chart.evaluate("image => image.decode().then(() => image.naturalWidth)") > 0
    check_page(marketer, "scenario-results-desktop", problems)

    # The hard-bounced recipient, and her copy as sent.
    by_status.get_by_role("link", name="Bounced (hard)").click()
    expect(marketer.get_by_role("region", name="Table of recipients")).to_contain_text(
        "cy@example.org"
    )
    check_page(marketer, "scenario-recipients-desktop", problems)
    marketer.get_by_role("link", name="cy@example.org").click()
    expect(marketer.get_by_role("heading", level=1)).to_have_text("Recipient: cy@example.org")
    expect(marketer.get_by_role("region", name="Table of this recipient's events")).to_contain_text(
        "bounced hard"
    )
    copy = marketer.frame_locator("iframe.mail-frame")
    expect(copy.get_by_role("heading", name="Hello Cy")).to_be_visible()
    check_page(marketer, "scenario-recipient-desktop", problems)

    # A target list of everyone who clicked; the campaign log as CSV.
    marketer.go_back()
    marketer.go_back()
    marketer.get_by_label("Recipients", exact=True).select_option("ever_clicked")
    marketer.get_by_label("List name").fill("Spring clickers")
    marketer.get_by_role("button", name="Create target list").click()
    expect(marketer.get_by_role("status").first).to_have_text(
        "Target list “Spring clickers” created with 1 contact(s) (everyone who clicked)."
    )
    with marketer.expect_download() as download_info:
        marketer.get_by_role("link", name="Download the campaign log (CSV)").click()
    exported = download_info.value.path().read_text(encoding="utf-8")
    assert ",bounced_hard,cy@example.org," in exported
    assert ",clicked,bob@example.org," in exported
    marketer.get_by_role("navigation", name="Main").get_by_role("link", name="Lists").click()
    marketer.get_by_role("link", name="Spring clickers").click()
    expect(marketer.get_by_text("1 member(s).")).to_be_visible()
    clickers = marketer.get_by_role("region", name=re.compile("^Members, newest contact first"))
    expect(clickers.get_by_role("rowheader")).to_have_text(["bob@example.org"])

    # The same pages at 375 px.
    mobile = new_page(browser, live, watch, MOBILE)
    log_in(mobile, MARKETER_EMAIL)
    for name, path in [
        ("dashboard", "/"),
        ("results-index", "/results"),
        ("results", f"/results/{mass_email_id}"),
        ("recipients", f"/results/{mass_email_id}/recipients"),
    ]:
        mobile.goto(path)
        check_page(mobile, f"scenario-{name}-mobile", problems)
        assert_clean(mobile, watch)
    assert_clean(marketer, watch)
    assert_clean(admin, watch)
    for page in (admin, marketer, mobile):
        page.context.close()
    assert problems == []
