"""The issue's end-to-end scenario in a real browser (Debian's chromium
through Playwright), every part real: the app served over HTTP, the test
SMTP relay (aiosmtpd), the test IMAP server (Dovecot), a fixed clock the
test moves forward.

An administrator logs in and sets the quota and the postal address; a
marketer imports a CSV with bad rows, builds a list and an exclusion list,
writes a template, previews it, sends a test (caught by the relay) and
schedules; the runner sends under a fast-forwarded clock while the
dashboard follows the progress live; a recipient opens, another clicks;
a bounce appended to the IMAP server is polled; the results page shows
the hard bounce and the chart, the recipient's copy, a target list made
from the clickers and the CSV export. Screenshots at desktop and mobile
width; axe-core on every results page.

Pages other helpers are building right now (contacts and import, target
lists, templates, campaigns) are driven through the same services here;
each such step is marked ``PAGE:`` with the page that will replace it.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from playwright.sync_api import expect
from sqlalchemy import select

from app import app_settings
from app.context import app_bounce_handler
from app.extensions import db
from app.models import Contact, QueueItem, TargetListMember
from app.services.addresses import own_sending_addresses
from app.services.bounce_poll import poll_bounces
from app.services.campaigns import (
    TemplateInput,
    add_mass_email,
    create_campaign,
    create_sender_profile,
    save_template,
    schedule_mass_email,
)
from app.services.contact_csv import RejectedRow
from app.services.contact_import import import_contacts
from app.services.dispatch_send import MessageConfig, dispatch_tick
from app.services.messages import preview, send_test
from app.services.queue_build import activate_due
from app.services.runtime_settings import get_runtime_settings
from app.services.target_lists import add_members, create_target_list, get_target_list
from app.services.transport import SmtpSettings, SmtpTransport
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
    log_out,
    new_page,
    screenshot,
    serious_accessibility_violations,
    watch,
)
from tests.conftest import TEST_SECRET_KEY
from tests.dovecot import DovecotServer
from tests.integration.test_bounce_processing import dsn
from tests.smtp_server import ReceivedMessage

__all__ = ["browser", "live", "watch"]  # fixtures

CSV_FILE = (
    "email,first_name,last_name,company\r\n"
    "ann@example.org,Ann,Archer,Acme\r\n"
    "bob@example.org,Bob,Baker,Acme\r\n"
    "not-an-address,Bad,Row,Acme\r\n"
    "cy@example.org,Cy,Cole,Initech\r\n"
    "dee@example.org,Dee,Dunn,Initech\r\n"
    "eve@example.org,Eve,Evans,Initech\r\n"
    "fay@exmaple.org,Fay,Fox,Initech\r\n"  # a typo: imported, with a warning
    "gus@example.org,Gus,Gray,Initech,one cell too many\r\n"
)
MASS_EMAIL = "Spring sale"


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


def marketer_prepares_the_mass_email(live: LiveApp) -> int:
    """Import, lists, template, preview, Send Test, schedule: through the
    services until their pages are on main (each step marked PAGE:)."""
    clock, app = live.clock, live.app
    with app.app_context():
        session = db.session
        settings = app_settings(app)
        # PAGE: /contacts/import (CSV upload with the per-row error report).
        rejected: list[RejectedRow] = []
        summary = import_contacts(
            session,
            io.BytesIO(CSV_FILE.encode()),
            list_name="Spring customers",
            update=False,
            default_type=None,
            clock=clock,
            own_addresses=own_sending_addresses(session, settings.bounce_address),
            on_rejected=rejected.append,
        )
        session.commit()
        assert (summary.created, summary.rejected) == (6, 2)
        # The page will show these per row, with a download of the rows.
        assert [row.position.row for row in rejected] == [4, 9]
        # PAGE: /lists (a target list and an excluding list, members added).
        customers = get_target_list(session, "Spring customers")
        excluded = create_target_list(session, "Do not mail", "asked for no offers", clock)
        eve = session.scalar(select(Contact).where(Contact.email == "eve@example.org"))
        assert eve is not None
        add_members(session, excluded, [eve.id], clock)
        # PAGE: /templates (editor with placeholder helper and live preview).
        template = save_template(
            session,
            TemplateInput(
                name="Spring",
                subject="Spring sale for {{ FIRST_NAME }}",
                body_html=(
                    "<h1>Hello {{ FIRST_NAME }}</h1>"
                    f'<p><a href="{live.url}/healthz">See the offers</a></p>'
                ),
            ),
            clock,
        )
        profile = create_sender_profile(
            session, "News", "Example News", "news@example.com", "team@example.com"
        )
        # PAGE: /campaigns (create, lists, template, sender, preview, Send
        # Test, pre-flight and CAN-SPAM confirmation, schedule).
        campaign = create_campaign(
            session,
            name="Spring",
            type="newsletter",
            target_list_ids=[customers.id],
            excluding_list_ids=[excluded.id],
            sender_profile_id=profile.id,
            clock=clock,
        )
        mass_email = add_mass_email(
            session, campaign, template_id=template.id, name=MASS_EMAIL, clock=clock
        )
        runtime = get_runtime_settings(session)
        shown = preview(
            session,
            mass_email,
            None,
            runtime=runtime,
            settings=settings,
            secret_key=TEST_SECRET_KEY,
        )
        assert "Hello Ann" in shown.html and "2 Harbour Road" in shown.html
        result = send_test(
            session,
            mass_email,
            "mark@example.com",
            None,
            relay_transport(live),
            clock=clock,
            runtime=runtime,
            settings=settings,
            secret_key=TEST_SECRET_KEY,
            dkim_key=None,
        )
        assert result.accepted, result
        [test_message] = [m for m in live.relay.handler.messages if b"X-Sluice-Test" in m.data]
        assert test_message.recipients == ["mark@example.com"]
        schedule_mass_email(
            session,
            mass_email,
            start_at=None,
            can_spam_confirmed=True,
            runtime=runtime,
            settings=settings,
            secret_key=TEST_SECRET_KEY,
            clock=clock,
        )
        session.commit()
        return mass_email.id


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


def check_page(page: Any, name: str, problems: list[str]) -> None:
    """axe-core, the screen's width, a screenshot, and nothing reported."""
    problems += [f"{name}: {found}" for found in serious_accessibility_violations(page)]
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 0:
        problems.append(f"{name}: {overflow} px wider than the screen")
    screenshot(page, name)


def test_the_issues_scenario_end_to_end(
    browser: Any, live: LiveApp, watch: Watch, dovecot: DovecotServer
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
    log_in(marketer, MARKETER_EMAIL)
    mass_email_id = marketer_prepares_the_mass_email(live)

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
    with live.app.app_context():
        statuses = dict(
            db.session.execute(
                select(QueueItem.email, QueueItem.status).where(
                    QueueItem.mass_email_id == mass_email_id
                )
            ).all()
        )
    assert set(statuses) == {
        "ann@example.org",
        "bob@example.org",
        "cy@example.org",
        "dee@example.org",
        "fay@exmaple.org",
    }  # eve excluded; the two bad rows never imported

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
    assert chart.evaluate("image => image.complete && image.naturalWidth > 0")
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
    with live.app.app_context():
        clickers = get_target_list(db.session, "Spring clickers")
        members = db.session.scalars(
            select(Contact.email)
            .join(TargetListMember, TargetListMember.contact_id == Contact.id)
            .where(TargetListMember.target_list_id == clickers.id)
        ).all()
    assert members == ["bob@example.org"]
