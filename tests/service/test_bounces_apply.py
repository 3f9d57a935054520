"""Applying classified bounce reports (``app.services.bounces.apply_report``):
what each kind does to the queue item, the contact, the suppression list
and the campaign log, the soft-bounce threshold, and once-only application.

Reports are built directly: ``BounceReport`` is the pure library's output,
the boundary this service starts from."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import (
    BounceEvent,
    BounceKind,
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    EmailStatus,
    QueueItem,
    QueueItemStatus,
)
from app.services import engagement, suppression
from app.services.bounces import apply_report
from app.services.runtime_settings import (
    RuntimeSettings,
    get_runtime_settings,
    update_runtime_settings,
)
from bounce.report import BounceReport, RecipientReport, ReportKind
from tests.service.sent_mail import sent_items

Q = QueueItemStatus
SOURCE = "bounce message 1"


def report(
    item: QueueItem,
    kind: ReportKind,
    *,
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <x>: Recipient address rejected: User unknown",
    reason: str = "userunknown",
    action: str = "failed",
) -> BounceReport:
    recipient = RecipientReport(
        recipient=item.email,
        action=action,
        status=status,
        diagnostic=diagnostic,
        remote_mta="dns; mx.example.org",
        kind=kind,
        reason=reason,
    )
    return BounceReport(
        is_bounce=kind in {ReportKind.HARD, ReportKind.SOFT},
        kind=kind,
        reason=reason,
        recipient=item.email,
        status=status,
        diagnostic=diagnostic,
        recipients=(recipient,),
        queue_item_id=item.id,
    )


def soft(item: QueueItem, action: str = "failed") -> BounceReport:
    return report(
        item,
        ReportKind.SOFT,
        status="4.2.2",
        diagnostic="smtp; 452 4.2.2 Mailbox full",
        reason="mailboxfull",
        action=action,
    )


def log_rows(session: Session, item: QueueItem) -> list[CampaignLogEntry]:
    return list(
        session.scalars(
            select(CampaignLogEntry)
            .where(CampaignLogEntry.queue_item_id == item.id)
            .order_by(CampaignLogEntry.id)
        )
    )


def activity(session: Session, contact_id: int | None) -> list[str]:
    """The contact's activity log: the campaign log rows of that contact."""
    return [
        str(entry.event)
        for entry in session.scalars(
            select(CampaignLogEntry)
            .where(CampaignLogEntry.contact_id == contact_id)
            .order_by(CampaignLogEntry.occurred_at, CampaignLogEntry.id)
        )
    ]


@pytest.fixture
def items(app: Flask, session: Session, clock: FixedClock) -> list[QueueItem]:
    return sent_items(session, app, clock, "March", ["ann@example.org", "bob@example.org"])


def test_a_hard_bounce_bounces_the_item_invalidates_and_suppresses_the_address(
    session: Session, clock: FixedClock, items: list[QueueItem]
) -> None:
    ann = items[0]

    result = apply_report(session, report(ann, ReportKind.HARD), clock=clock, source=SOURCE)
    session.commit()

    assert (result.applied, result.suppressed, result.kind) == (True, True, ReportKind.HARD)
    session.refresh(ann)
    assert (ann.status, ann.bounce_kind) == (Q.BOUNCED, BounceKind.HARD)
    contact = session.get(Contact, ann.contact_id)
    assert contact is not None and contact.email_status == EmailStatus.INVALID
    assert contact.email_status_reason == (
        "5.1.1 smtp; 550 5.1.1 <x>: Recipient address rejected: User unknown"
    )
    entry = suppression.find(session, "ann@example.org")
    assert entry is not None and (entry.reason, entry.source) == ("hard_bounce", SOURCE)
    [row] = log_rows(session, ann)
    assert row.event == CampaignLogEvent.BOUNCED_HARD
    assert row.detail == {
        "kind": "hard",
        "reason": "userunknown",
        "status": "5.1.1",
        "diagnostic": "smtp; 550 5.1.1 <x>: Recipient address rejected: User unknown",
        "recipient": "ann@example.org",
        "remote_mta": "dns; mx.example.org",
        "action": "failed",
        "source": SOURCE,
    }
    assert activity(session, ann.contact_id) == ["bounced_hard"]
    # Bob's message is untouched.
    session.refresh(items[1])
    assert items[1].status == Q.SENT and not suppression.is_suppressed(session, "bob@example.org")


def test_the_same_report_twice_is_applied_once(
    session: Session, clock: FixedClock, items: list[QueueItem]
) -> None:
    ann = items[0]
    for kind_report in (report(ann, ReportKind.HARD), soft(items[1])):
        first = apply_report(session, kind_report, clock=clock, source="bounce message 1")
        clock.advance(timedelta(minutes=5))
        second = apply_report(session, kind_report, clock=clock, source="bounce message 2")
        assert first.applied and not second.applied and second.already_applied

    session.commit()
    assert len(log_rows(session, ann)) == 1 and len(log_rows(session, items[1])) == 1
    assert session.scalar(select(func.count()).select_from(BounceEvent)) == 2


def test_a_hard_bounce_already_recorded_at_send_time_is_not_applied_again(
    session: Session, clock: FixedClock, app: Flask
) -> None:
    # A 5xx to RCPT left the item bounced hard (dispatch_results); a DSN
    # about the same message later changes nothing.
    [item] = sent_items(session, app, clock, "April", ["carol@example.org"])
    item.status = Q.BOUNCED  # as record_result leaves it (test set-up)
    item.bounce_kind = BounceKind.HARD
    session.commit()

    result = apply_report(session, report(item, ReportKind.HARD), clock=clock, source=SOURCE)

    assert not result.applied and result.already_applied
    assert log_rows(session, item) == []


def test_soft_bounces_are_logged_and_suppress_at_the_threshold_within_the_window(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    update_runtime_settings(
        session, {"soft_bounce_threshold": 3, "soft_bounce_window_days": 30}, clock
    )
    # Four mass emails to Dan, 20 days apart: the first falls out of the
    # window before the fourth bounce.
    sent = []
    for month in ("May", "June", "July", "August"):
        [item] = sent_items(session, app, clock, month, ["dan@example.org"])
        sent.append(item)

    results = []
    for item in sent:
        results.append(
            apply_report(session, soft(item), clock=clock, source=f"bounce of {item.id}")
        )
        clock.advance(timedelta(days=12))
    session.commit()

    # 1st, 2nd (12 days later): below 3; 3rd at day 24: 3 in 30 days → suppressed.
    assert [result.suppressed for result in results] == [False, False, True, False]
    entry = suppression.find(session, "dan@example.org")
    assert entry is not None and entry.reason == "soft_threshold"
    assert entry.source == f"3 soft bounces in 30 days, the last: bounce of {sent[2].id}"
    for item in sent:
        session.refresh(item)
        assert (item.status, item.bounce_kind) == (Q.BOUNCED, BounceKind.SOFT)
        [row] = log_rows(session, item)
        assert row.event == CampaignLogEvent.BOUNCED_SOFT
        assert (row.detail["status"], row.detail["diagnostic"]) == (
            "4.2.2",
            "smtp; 452 4.2.2 Mailbox full",
        )
    contact = session.get(Contact, sent[0].contact_id)
    assert contact is not None and contact.email_status == EmailStatus.VALID


def test_soft_bounces_outside_the_window_never_reach_the_threshold(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    update_runtime_settings(
        session, {"soft_bounce_threshold": 2, "soft_bounce_window_days": 7}, clock
    )
    for month in ("May", "June", "July"):
        [item] = sent_items(session, app, clock, month, ["erin@example.org"])
        assert not apply_report(session, soft(item), clock=clock, source=SOURCE).suppressed
        clock.advance(timedelta(days=8))

    assert not suppression.is_suppressed(session, "erin@example.org")


def test_a_delayed_notice_is_logged_but_the_message_may_still_arrive(
    session: Session, clock: FixedClock, items: list[QueueItem]
) -> None:
    ann = items[0]

    result = apply_report(session, soft(ann, action="delayed"), clock=clock, source=SOURCE)

    assert result.applied
    session.refresh(ann)
    assert (ann.status, ann.bounce_kind) == (Q.SENT, None)
    [row] = log_rows(session, ann)
    assert (row.event, row.detail["action"]) == (CampaignLogEvent.BOUNCED_SOFT, "delayed")


def test_a_complaint_is_a_spam_report_that_opts_out_and_suppresses(
    session: Session, clock: FixedClock, items: list[QueueItem]
) -> None:
    bob = items[1]
    complaint = report(bob, ReportKind.COMPLAINT, status="", diagnostic="", reason="abuse")

    result = apply_report(session, complaint, clock=clock, source="webhook ses")
    session.commit()

    assert result.applied and result.suppressed
    session.refresh(bob)
    assert bob.status == Q.SPAM_REPORT and bob.unsubscribed_at == clock.now()
    contact = session.get(Contact, bob.contact_id)
    assert contact is not None and contact.opted_out and contact.opt_out_source == "complaint"
    entry = suppression.find(session, "bob@example.org")
    assert entry is not None and (entry.reason, entry.source) == ("complaint", "webhook ses")
    events = [(row.event, row.detail.get("source")) for row in log_rows(session, bob)]
    assert events == [
        (CampaignLogEvent.OPTED_OUT, "complaint"),
        (CampaignLogEvent.COMPLAINT, "webhook ses"),
    ]
    assert log_rows(session, bob)[1].detail["event"] == "spam report"
    assert activity(session, bob.contact_id) == ["opted_out", "complaint"]
    # The recipient's opt-back-in link cannot undo a complaint's opt-out.
    assert engagement.opt_in(session, bob.id, clock) == engagement.OptInResult.REFUSED


def test_an_autoreply_is_logged_and_nothing_else_changes(
    session: Session, clock: FixedClock, items: list[QueueItem]
) -> None:
    ann = items[0]
    autoreply = report(
        ann, ReportKind.AUTOREPLY, status="", diagnostic="I am out of the office", reason="vacation"
    )

    result = apply_report(session, autoreply, clock=clock, source=SOURCE)

    assert result.applied and not result.suppressed
    session.refresh(ann)
    assert (ann.status, ann.bounce_kind) == (Q.SENT, None)
    [row] = log_rows(session, ann)
    assert row.event == CampaignLogEvent.AUTOREPLY
    assert row.detail["diagnostic"] == "I am out of the office"
    contact = session.get(Contact, ann.contact_id)
    assert contact is not None and not contact.opted_out
    assert contact.email_status == EmailStatus.VALID
    assert not suppression.is_suppressed(session, ann.email)


def test_a_hard_bounce_after_a_soft_one_makes_the_bounce_hard(
    session: Session, clock: FixedClock, items: list[QueueItem]
) -> None:
    ann = items[0]
    apply_report(session, soft(ann), clock=clock, source=SOURCE)
    apply_report(session, report(ann, ReportKind.HARD), clock=clock, source=SOURCE)

    session.refresh(ann)
    assert (ann.status, ann.bounce_kind) == (Q.BOUNCED, BounceKind.HARD)
    assert [row.event for row in log_rows(session, ann)] == [
        CampaignLogEvent.BOUNCED_SOFT,
        CampaignLogEvent.BOUNCED_HARD,
    ]


def test_hostile_report_text_is_cleaned_and_cut_in_the_log(
    session: Session, clock: FixedClock, items: list[QueueItem]
) -> None:
    ann = items[0]
    hostile = report(
        ann, ReportKind.SOFT, diagnostic="x\x00y\x1b[31m" + "z" * 100_000, status="4.0.0"
    )

    apply_report(session, hostile, clock=clock, source=SOURCE)
    session.commit()

    [row] = log_rows(session, ann)
    assert row.detail["diagnostic"].startswith("x y [31mzzz")
    assert len(row.detail["diagnostic"]) == 1000


def test_reports_that_cannot_be_applied_say_why(
    session: Session, clock: FixedClock, items: list[QueueItem]
) -> None:
    ann = items[0]
    with pytest.raises(ValueError, match="known queue item"):
        apply_report(session, BounceReport(kind=ReportKind.HARD), clock=clock, source=SOURCE)

    test_item = apply_report(
        session, BounceReport(kind=ReportKind.HARD, queue_item_id=0), clock=clock, source=SOURCE
    )
    unknown = apply_report(
        session, BounceReport(kind=ReportKind.HARD, queue_item_id=999), clock=clock, source=SOURCE
    )
    not_a_bounce = apply_report(
        session, BounceReport(queue_item_id=ann.id), clock=clock, source=SOURCE
    )

    assert not (test_item.applied or unknown.applied or not_a_bounce.applied)
    assert "test message" in test_item.detail and "no queue item 999" in unknown.detail
    assert log_rows(session, ann) == []
    assert get_runtime_settings(session).soft_bounce_threshold == 3
