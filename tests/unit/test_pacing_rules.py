"""Pacing's pure rules: whose a temporary reply is (message, domain or
relay), how long a throttle lasts, and the order in which a tick hands its
claims out under connection caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.models import DomainGroup
from app.services.dispatch import Claim
from app.services.dispatch_schedule import ClaimSchedule
from app.services.pacing import (
    MAX_THROTTLE,
    ReplyScope,
    enhanced_status,
    reply_scope,
    throttle_duration,
)
from app.services.transport import SendOutcome, SendResult, SmtpStage

G = DomainGroup
T = SendOutcome.TEMPORARY


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        ("4.7.28 [192.0.2.1] Our system has detected an unusual rate", (4, 7, 28)),
        ("4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred", (4, 7, 0)),
        ("4.7.500 Server busy. Please try again later", (4, 7, 500)),
        ("  5.1.1 User unknown", (5, 1, 1)),
        ("4.7.0", (4, 7, 0)),
        ("Try again later, closing connection.", None),
        ("RP-001 (BAY004-MC1F43) Unfortunately, some messages weren't sent", None),
        ("4.7.28x not a code", None),
        ("3.7.0 not a class", None),
        ("", None),
    ],
)
def test_enhanced_status_is_read_from_the_start_of_the_reply(
    reply: str, status: tuple[int, int, int] | None
) -> None:
    assert enhanced_status(reply) == status


@pytest.mark.parametrize(
    ("code", "reply", "stage", "scope"),
    [
        # The recipient's provider rate-limits us (texts as Gmail, Yahoo and
        # Outlook.com send them).
        (
            421,
            "4.7.28 Our system has detected an unusual rate of unsolicited mail",
            "rcpt",
            "domain",
        ),
        (421, "4.7.0 Try again later, closing connection.", "data", "domain"),
        (421, "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred", "rcpt", "domain"),
        (451, "4.7.500 Server busy. Please try again later from [192.0.2.1]", "rcpt", "domain"),
        (450, "4.7.1 Client host rejected: try again later", "data", "domain"),
        (421, "RP-001 (BAY004-MC1F43) some messages from 192.0.2.1 weren't sent", "rcpt", "domain"),
        # The relay itself: before any recipient, or a 421 about its own state.
        (421, "4.7.0 mail.example.net Error: too many connections", "connect", "relay"),
        (421, "4.7.0 Too many messages from you", "mail", "relay"),
        (421, "4.3.2 Service shutting down", "data", "relay"),
        (421, "4.4.2 Timeout, closing connection", "rcpt", "relay"),
        # About the message only.
        (450, "4.2.1 The user is receiving mail at a rate that prevents more", "rcpt", "message"),
        (451, "4.3.0 Temporary lookup failure", "rcpt", "message"),
        (452, "4.2.2 Mailbox full", "data", "message"),
        (451, "4.7.1 Sender rate limit exceeded", "mail", "message"),
        (550, "5.7.1 Rejected by policy", "rcpt", "message"),
        (250, "2.0.0 Ok: queued", "data", "message"),
    ],
)
def test_a_temporary_reply_is_about_the_message_the_domain_or_the_relay(
    code: int, reply: str, stage: str, scope: str
) -> None:
    outcome = T if 400 <= code < 500 else SendOutcome.ACCEPTED
    result = SendResult(outcome, code, reply, SmtpStage(stage))
    assert reply_scope(result) == ReplyScope(scope)


def test_no_reply_at_all_is_about_the_message() -> None:
    assert reply_scope(SendResult(T, None, "Connection refused", SmtpStage.CONNECT)) == "message"


def test_throttles_double_in_a_row_up_to_the_cap() -> None:
    durations = [throttle_duration(strikes, 900) for strikes in range(1, 7)]
    assert durations == [
        timedelta(minutes=15),
        timedelta(minutes=30),
        timedelta(hours=1),
        timedelta(hours=2),
        MAX_THROTTLE,
        MAX_THROTTLE,
    ]
    assert throttle_duration(10_000, 60) == MAX_THROTTLE


# ----------------------------------------------------------------- the schedule

LEASE = datetime(2026, 3, 2, 9, 5, tzinfo=UTC)


def claim(item_id: int, group: DomainGroup) -> Claim:
    return Claim(
        queue_item_id=item_id,
        mass_email_id=1,
        contact_id=item_id,
        email=f"c{item_id}@example.org",
        attempts=1,
        attempt_id=item_id,
        runner_id="runner-1",
        lease_expires_at=LEASE,
        domain_group=group,
    )


CAPS = {G.GMAIL: 1, G.YAHOO: 2, G.OUTLOOK: 4, G.OTHER: 4}


def test_claims_go_out_in_claim_order_while_their_groups_have_room() -> None:
    claims = [claim(1, G.OTHER), claim(2, G.YAHOO), claim(3, G.OTHER)]
    schedule = ClaimSchedule(claims, CAPS)
    handed = []
    while (next_claim := schedule.next_claim()) is not None:
        schedule.started(next_claim)
        handed.append(next_claim.queue_item_id)
    assert handed == [1, 2, 3] and schedule.waiting == 0


def test_a_group_at_its_cap_waits_and_lets_the_others_pass() -> None:
    claims = [claim(1, G.GMAIL), claim(2, G.GMAIL), claim(3, G.OTHER), claim(4, G.GMAIL)]
    schedule = ClaimSchedule(claims, CAPS)

    first = schedule.next_claim()
    assert first is not None and first.queue_item_id == 1
    schedule.started(first)
    second = schedule.next_claim()
    assert second is not None and second.queue_item_id == 3  # gmail is at its cap of 1
    schedule.started(second)
    assert schedule.next_claim() is None  # only gmail waits, and it is at its cap
    assert schedule.in_flight(G.GMAIL) == 1

    schedule.finished(first)
    third = schedule.next_claim()
    assert third is not None and third.queue_item_id == 2
    assert [c.queue_item_id for c in schedule.upcoming(G.GMAIL, 5)] == [4]


def test_a_throttled_group_is_withdrawn_and_the_rest_stays() -> None:
    claims = [claim(1, G.GMAIL), claim(2, G.OTHER), claim(3, G.GMAIL)]
    schedule = ClaimSchedule(claims, CAPS)
    assert [c.queue_item_id for c in schedule.withdraw(G.GMAIL)] == [1, 3]
    assert schedule.waiting == 1
    remaining = schedule.next_claim()
    assert remaining is not None and remaining.queue_item_id == 2
    assert schedule.next_claim() is None
