"""A mass email's results (``app.services.results``), on SQLite and
PostgreSQL: a mass email really sent to the test SMTP server, then opened,
clicked, bounced, reported and opted out of through the services that
record those events; the counts, rates, recipient pages, message copies,
the chart's buckets, the CSV export and "make a target list from these"."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.models import (
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    MassEmail,
    MassEmailStatus,
    QueueItem,
    TargetList,
    TargetListMember,
)
from app.services import engagement
from app.services.bounces import apply_report
from app.services.campaigns import TemplateInput, add_mass_email, save_template
from app.services.dashboard import recent_results
from app.services.engagement import OptOutSource
from app.services.messages import preview, public_links
from app.services.overview import database_overview
from app.services.results import (
    BUCKET_WIDTHS,
    MAX_BUCKETS,
    RecipientFilter,
    ResultsError,
    bucket_width,
    campaign_log_csv,
    message_copy,
    opens_and_clicks,
    parse_filter,
    recipient_detail,
    recipient_page,
    results_summary,
)
from app.services.results_chart import timeline_svg
from app.services.runtime_settings import get_runtime_settings
from app.services.target_lists import TargetListError, target_list_from_results
from app.services.tokens import LinkSigner
from bounce.report import BounceReport, RecipientReport, ReportKind
from tests.conftest import TEST_SECRET_KEY, add_contact
from tests.integration.test_dispatch import World, make_world
from tests.smtp_server import RunningServer, smtp_server

F = RecipientFilter
NAMES = ("ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal")
FORMULA = '=HYPERLINK("http://evil.example/","click me")'
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with smtp_server() as running:
        yield running


@dataclass
class Sent:
    """A mass email sent to ``NAMES``, and what each recipient then did."""

    world: World
    mass_email: MassEmail
    items: dict[str, QueueItem]

    @property
    def session(self) -> Session:
        return self.world.session


def bounce(
    item: QueueItem, kind: ReportKind, diagnostic: str = "550 5.1.1 unknown"
) -> BounceReport:
    return BounceReport(
        is_bounce=kind in {ReportKind.HARD, ReportKind.SOFT},
        kind=kind,
        reason="userunknown" if kind is ReportKind.HARD else "mailboxfull",
        recipient=item.email,
        status="5.1.1" if kind is ReportKind.HARD else "4.2.2",
        diagnostic=diagnostic,
        recipients=(RecipientReport(recipient=item.email, action="failed"),),
        queue_item_id=item.id,
    )


def send_and_engage(app: Flask, session: Session, clock: FixedClock, server: RunningServer) -> Sent:
    """Send to eight recipients, then: ann opens twice, bob clicks (an
    implied open), cy bounces hard, dee soft (with a formula in the
    diagnostic), eve reports spam, fay opts out, gus opens then clicks, hal
    does nothing."""
    assert clock.now() == START
    world = make_world(app, session, clock, server)
    world.template = save_template(
        session,
        TemplateInput(
            name="Results",
            subject="News for {{ FIRST_NAME }}",
            body_html='<p>Hello {{ FIRST_NAME }}</p><p><a href="https://example.com/offer">Offer</a></p>',
        ),
        clock,
    )
    mass_email = world.start("Spring results", [f"{name}@example.org" for name in NAMES])
    world.tick()
    items = {name: world.item(f"{name}@example.org") for name in NAMES}
    link_id = 0

    def at(minutes: int) -> None:
        clock.advance(START + timedelta(minutes=minutes) - clock.now())

    at(10)
    engagement.record_open(session, items["ann"].id, clock, "Mail/1")
    at(12)
    engagement.record_open(session, items["ann"].id, clock, "Mail/1")
    at(60)
    assert engagement.record_click(session, items["bob"].id, link_id, clock, "Mail/1")
    at(70)
    apply_report(session, bounce(items["cy"], ReportKind.HARD), clock=clock, source="test")
    apply_report(
        session, bounce(items["dee"], ReportKind.SOFT, FORMULA), clock=clock, source="test"
    )
    apply_report(session, bounce(items["eve"], ReportKind.COMPLAINT), clock=clock, source="test")
    engagement.opt_out(session, items["fay"].id, OptOutSource.LINK, clock)
    at(120)
    engagement.record_open(session, items["gus"].id, clock, "Mail/1")
    at(125)
    assert engagement.record_click(session, items["gus"].id, link_id, clock, "Mail/1")
    session.commit()
    items = {name: world.item(f"{name}@example.org") for name in NAMES}
    return Sent(world, mass_email, items)


@pytest.fixture
def sent(app: Flask, session: Session, clock: FixedClock, server: RunningServer) -> Sent:
    return send_and_engage(app, session, clock, server)


# ------------------------------------------------------------------ summary


def test_counts_and_rates_of_each_status(sent: Sent) -> None:
    summary = results_summary(sent.session, sent.mass_email.id)

    counts = {row.key: row.count for row in summary.statuses}
    assert counts == {
        F.QUEUED: 0,
        F.SENDING: 0,
        F.SENT: 1,  # hal
        F.OPENED: 1,  # ann
        F.CLICKED: 2,  # bob, gus
        F.BOUNCED_HARD: 1,
        F.BOUNCED_SOFT: 1,
        F.UNSUBSCRIBED: 1,
        F.SPAM_REPORT: 1,
        F.DROPPED: 0,
        F.ERROR: 0,
        F.FAILED: 0,
        F.INTERRUPTED: 0,
    }
    assert summary.total == 8
    assert sum(row.rate for row in summary.statuses) == pytest.approx(1.0)
    assert next(row.rate for row in summary.statuses if row.key is F.CLICKED) == 0.25
    reach = summary.reach
    assert (reach.sent, reach.bounced, reach.delivered) == (8, 2, 6)
    # ann, bob (implied by the click) and gus opened; each counted once.
    assert (reach.opened, reach.clicked) == (3, 2)
    assert (reach.unsubscribed, reach.spam_reports) == (1, 1)
    assert reach.rate(reach.opened) == 0.5
    assert reach.bounce_rate == 0.25
    assert reach.click_to_open == pytest.approx(2 / 3)
    assert summary.count(F.EVER_OPENED) == 3
    assert summary.count(F.ALL) == 8


def test_a_draft_or_unknown_or_deleted_mass_email_has_no_results(sent: Sent) -> None:
    with pytest.raises(ResultsError, match="no mass email with results has id 999"):
        results_summary(sent.session, 999)
    sent.mass_email.deleted_at = START
    with pytest.raises(ResultsError):
        results_summary(sent.session, sent.mass_email.id)
    sent.session.rollback()
    draft = add_mass_email(
        sent.session,
        sent.mass_email.campaign,
        template_id=sent.world.template.id,
        name="Draft",
        clock=sent.world.clock,
    )
    assert draft.status == MassEmailStatus.DRAFT
    with pytest.raises(ResultsError):
        recipient_page(sent.session, draft.id)


def test_a_mass_email_whose_queue_is_not_built_counts_zero_everywhere(sent: Sent) -> None:
    empty = sent.world.start("Not yet", ["later@example.org"], build=False)

    summary = results_summary(sent.session, empty.id)

    assert summary.total == 0
    assert all(row.rate == 0 for row in summary.statuses)
    assert summary.reach.rate(0) == summary.reach.bounce_rate == summary.reach.click_to_open == 0
    assert opens_and_clicks(sent.session, empty.id).buckets == []
    assert recipient_page(sent.session, empty.id).rows == []


# --------------------------------------------------------------- recipients


def test_recipient_pages_follow_the_keyset_both_ways(sent: Sent) -> None:
    ids = sorted(item.id for item in sent.items.values())

    first = recipient_page(sent.session, sent.mass_email.id, size=3)
    second = recipient_page(sent.session, sent.mass_email.id, after=first.next_after, size=3)
    third = recipient_page(sent.session, sent.mass_email.id, after=second.next_after, size=3)

    assert [row.id for row in first.rows] == ids[:3]
    assert [row.id for row in second.rows] == ids[3:6]
    assert [row.id for row in third.rows] == ids[6:]
    assert (first.previous_before, third.next_after) == (None, None)
    back = recipient_page(sent.session, sent.mass_email.id, before=third.previous_before, size=3)
    assert [row.id for row in back.rows] == ids[3:6]
    assert (back.previous_before, back.next_after) == (ids[3], ids[5])
    start = recipient_page(sent.session, sent.mass_email.id, before=back.previous_before, size=3)
    assert [row.id for row in start.rows] == ids[:3]
    assert start.previous_before is None


@pytest.mark.parametrize(
    ("chosen", "names"),
    [
        (F.SENT, {"hal"}),
        (F.OPENED, {"ann"}),
        (F.CLICKED, {"bob", "gus"}),
        (F.BOUNCED_HARD, {"cy"}),
        (F.BOUNCED_SOFT, {"dee"}),
        (F.SPAM_REPORT, {"eve"}),
        (F.UNSUBSCRIBED, {"fay"}),
        (F.EVER_OPENED, {"ann", "bob", "gus"}),
        (F.EVER_CLICKED, {"bob", "gus"}),
        (F.QUEUED, set()),
    ],
)
def test_the_recipient_table_filters_by_status(
    sent: Sent, chosen: RecipientFilter, names: set[str]
) -> None:
    page = recipient_page(sent.session, sent.mass_email.id, chosen)

    assert {row.email.split("@")[0] for row in page.rows} == names


def test_a_recipient_row_has_the_contact_name_and_engagement(sent: Sent) -> None:
    [gus] = [
        row
        for row in recipient_page(sent.session, sent.mass_email.id, F.CLICKED).rows
        if row.email == "gus@example.org"
    ]
    assert gus.name == "Gus"
    assert (gus.open_count, gus.click_count) == (1, 1)  # opened, so the click implied none
    assert gus.clicked_at == START + timedelta(minutes=125)
    assert gus.status_label == "Clicked"
    assert gus.relay_answer.startswith("250 2.0.0 Ok: queued as")


def test_parse_filter_refuses_unknown_names() -> None:
    assert parse_filter("") is F.ALL
    assert parse_filter("bounced_hard") is F.BOUNCED_HARD
    with pytest.raises(ValueError, match="is not one of all, queued"):
        parse_filter("<script>")


def test_a_recipients_detail_lists_its_events(sent: Sent) -> None:
    detail = recipient_detail(sent.session, sent.mass_email.id, sent.items["cy"].id)

    assert detail.row.status_label == "Bounced (hard)"
    assert [event.event for event in detail.events] == [
        CampaignLogEvent.SENT,
        CampaignLogEvent.BOUNCED_HARD,
    ]
    assert detail.events[1].detail["status"] == "5.1.1"
    other = sent.world.start("Other", ["zed@example.org"])
    zed = sent.world.item("zed@example.org")
    with pytest.raises(ResultsError, match=f"has no recipient {zed.id}"):
        recipient_detail(sent.session, sent.mass_email.id, zed.id)
    assert recipient_detail(sent.session, other.id, zed.id).row.email == "zed@example.org"


def test_the_copy_as_sent_is_the_recipients_message_with_links_that_record_nothing(
    app: Flask, sent: Sent
) -> None:
    session = sent.session
    runtime = get_runtime_settings(session)
    links = public_links(runtime, app_settings(app), TEST_SECRET_KEY)
    ann = sent.items["ann"]

    html = message_copy(session, sent.mass_email.id, ann.id, links)

    assert html is not None
    assert "Hello Ann" in html
    # The same message a preview for ann shows: test links (item 0), no pixel.
    expected = preview(
        session,
        sent.mass_email,
        ann.contact_id,
        runtime=runtime,
        settings=app_settings(app),
        secret_key=TEST_SECRET_KEY,
    )
    assert html == expected.html
    signer = LinkSigner(TEST_SECRET_KEY)
    click_tokens = [part.split('"')[0] for part in html.split("/t/c/")[1:]]
    assert click_tokens
    assert [signer.verify_click(token) for token in click_tokens] == [(0, 0)], html
    assert "/t/o/" not in html  # no open pixel
    with pytest.raises(ResultsError):
        message_copy(session, sent.mass_email.id, 10**9, links)


# --------------------------------------------------------------- the chart


def test_opens_and_clicks_are_counted_per_bucket(sent: Sent) -> None:
    timeline = opens_and_clicks(sent.session, sent.mass_email.id)

    # 9:10 to 11:05 is 115 minutes: 5-minute buckets from 9:10.
    assert timeline.width == timedelta(minutes=5)
    assert timeline.buckets[0].start == START + timedelta(minutes=10)
    assert len(timeline.buckets) == 24
    busy = {
        bucket.start: (bucket.opens, bucket.clicks)
        for bucket in timeline.buckets
        if bucket.opens or bucket.clicks
    }
    assert busy == {
        START + timedelta(minutes=10): (2, 0),  # ann, twice
        START + timedelta(minutes=60): (1, 1),  # bob's click and its implied open
        START + timedelta(minutes=120): (1, 0),  # gus
        START + timedelta(minutes=125): (0, 1),
    }
    assert (timeline.opens, timeline.clicks) == (4, 2)
    svg = timeline_svg(timeline, "Opens and clicks: <Spring>")
    assert b"<script" not in svg
    assert b"Opens and clicks: &lt;Spring&gt;" in svg


def test_bucket_widths_keep_the_chart_readable() -> None:
    assert bucket_width(START, START) == timedelta(minutes=1)
    assert bucket_width(START, START + timedelta(minutes=47)) == timedelta(minutes=1)
    assert bucket_width(START, START + timedelta(minutes=48)) == timedelta(minutes=5)
    assert bucket_width(START, START + timedelta(days=3)) == timedelta(hours=3)
    widest = bucket_width(START, START + timedelta(days=10 * 365))
    assert widest > BUCKET_WIDTHS[-1]
    assert timedelta(days=10 * 365) < widest * MAX_BUCKETS


# --------------------------------------------------------------- CSV export


def test_the_campaign_log_exports_as_csv_with_formulas_defused(sent: Sent) -> None:
    chunks = list(campaign_log_csv(sent.session, sent.mass_email.id))
    rows = list(csv.reader(io.StringIO("".join(chunks))))

    logged = sent.session.scalar(
        select(func.count())
        .select_from(CampaignLogEntry)
        .where(CampaignLogEntry.mass_email_id == sent.mass_email.id)
    )
    assert rows[0][:5] == ["occurred_at", "event", "email", "contact_id", "queue_item_id"]
    assert len(rows) == 1 + logged
    assert chunks[0] == ",".join(rows[0]) + "\r\n"  # the header goes out first, alone
    by_event = {(row[1], row[2]): dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    soft = by_event[("bounced_soft", "dee@example.org")]
    assert soft["diagnostic"] == "'" + FORMULA
    assert soft["status"] == "4.2.2"
    click = by_event[("clicked", "bob@example.org")]
    assert click["url"] == "https://example.com/offer"
    assert click["occurred_at"] == (START + timedelta(minutes=60)).isoformat()
    for row in rows[1:]:
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row), row


def test_the_csv_export_defuses_every_formula_trigger(sent: Sent) -> None:
    session = sent.session
    hal = sent.items["hal"]
    for trigger in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "'=1"):
        session.add(
            CampaignLogEntry(
                mass_email_id=sent.mass_email.id,
                queue_item_id=hal.id,
                contact_id=hal.contact_id,
                event=CampaignLogEvent.ERROR,
                occurred_at=START,
                detail={"reason": trigger, "extra": trigger},
            )
        )
    session.commit()

    rows = list(csv.reader(io.StringIO("".join(campaign_log_csv(session, sent.mass_email.id)))))

    reasons = [row[8] for row in rows[1:] if row[1] == "error"]
    assert reasons == ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\t=1", "''=1"]
    others = [row[-1] for row in rows[1:] if row[1] == "error"]
    assert others[0] == '{"extra": "=1+1"}'  # JSON text starts with "{": safe as it is


# --------------------------------------------------------------- target list


def test_a_target_list_from_everyone_who_clicked(sent: Sent, clock: FixedClock) -> None:
    target_list, added = target_list_from_results(
        sent.session,
        sent.mass_email.id,
        F.EVER_CLICKED,
        name="  Clickers ",
        description="",
        clock=clock,
    )
    sent.session.commit()

    assert (target_list.name, added) == ("Clickers", 2)
    members = set(
        sent.session.scalars(
            select(Contact.email)
            .join(TargetListMember, TargetListMember.contact_id == Contact.id)
            .where(TargetListMember.target_list_id == target_list.id)
        )
    )
    assert members == {"bob@example.org", "gus@example.org"}


def test_a_target_list_leaves_out_deleted_contacts_and_bad_names_create_nothing(
    sent: Sent, clock: FixedClock
) -> None:
    session = sent.session
    session.delete(session.get(Contact, sent.items["cy"].contact_id))
    session.commit()

    hard, added = target_list_from_results(
        session, sent.mass_email.id, F.BOUNCED_HARD, name="Hard", description="", clock=clock
    )
    assert added == 0  # cy's contact is gone; the item stays, without a contact
    session.commit()
    before = session.scalar(select(func.count()).select_from(TargetList))
    for name, message in [
        ("", "must not be empty"),
        ("x" * 201, "at most 200 characters"),
        ("Hard", "already exists"),
    ]:
        with pytest.raises(TargetListError, match=message):
            target_list_from_results(
                session, sent.mass_email.id, F.ALL, name=name, description="", clock=clock
            )
        session.rollback()
    with pytest.raises(ResultsError):
        target_list_from_results(session, 999, F.ALL, name="Nowhere", description="", clock=clock)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(TargetList)) == before
    assert hard.id is not None


# --------------------------------------------------------------- dashboard


def test_the_dashboard_lists_recent_complete_mass_emails_with_their_rates(sent: Sent) -> None:
    assert sent.world.status_of(sent.mass_email) is MassEmailStatus.COMPLETE

    [recent] = recent_results(sent.session)

    assert (recent.mass_email_id, recent.name) == (sent.mass_email.id, "Spring results")
    assert (recent.recipients, recent.sent, recent.delivered) == (8, 8, 6)
    assert (recent.opened, recent.clicked, recent.bounced) == (3, 2, 2)
    assert (recent.open_rate, recent.click_rate, recent.bounce_rate) == (0.5, 2 / 6, 0.25)


def test_the_contact_count_is_estimated_only_for_a_big_table_on_postgresql(
    session: Session, clock: FixedClock
) -> None:
    for name in ("ann", "bob", "cy"):
        add_contact(session, clock, f"{name}@example.org")
    session.commit()

    exact = database_overview(session)

    assert (exact.contacts, exact.contacts_approximate) == (3, False)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE contacts"))
        estimated = database_overview(session, exact_limit=2)
        assert (estimated.contacts, estimated.contacts_approximate) == (3, True)
    else:  # SQLite has no statistics to read: always counted
        assert database_overview(session, exact_limit=0).contacts_approximate is False
