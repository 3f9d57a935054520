"""Per-domain pacing against a real SMTP server (aiosmtpd,
``tests/smtp_server.py``) and real databases, with a fixed clock moved by
hand: hourly caps per domain group over simulated hours, throttles after
rate-limit replies that stop one group while the others go on, connection
caps, several runners at once — and never a message twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import DomainGroup, DomainThrottle, QueueItem, QueueItemStatus
from app.services.domain_groups import domain_group
from app.services.quota import QUOTA_WINDOW
from app.services.runtime_settings import RuntimeSettings
from tests.integration.test_dispatch import World, make_world, run_cli
from tests.smtp_server import RunningServer, smtp_server

G = DomainGroup
Q = QueueItemStatus
GMAIL_RATE_LIMIT = (
    "421 4.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail"
)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """The SMTP server; a test parametrized with ``PIPELINED`` runs against
    it without and with PIPELINING offered (a pipelined reply still says
    which command it answers)."""
    with smtp_server(pipelining=getattr(request, "param", False)) as running:
        yield running


PIPELINED = pytest.mark.parametrize(
    "server", [False, True], ids=["plain", "pipelining"], indirect=True
)


@pytest.fixture
def world(app: Flask, session: Session, clock: FixedClock, server: RunningServer) -> World:
    return make_world(app, session, clock, server)


def mixed(prefix: str, **counts: int) -> list[str]:
    """Addresses at the given domains (``gmail_com=3`` → 3 at gmail.com),
    interleaved so every group is spread over the queue's id order."""
    per_domain = [
        [f"{prefix}{number:04d}@{domain.replace('_', '.')}" for number in range(count)]
        for domain, count in counts.items()
    ]
    longest = max(len(addresses) for addresses in per_domain)
    return [batch[i] for i in range(longest) for batch in per_domain if i < len(batch)]


def acceptances(world: World) -> list[tuple[datetime, DomainGroup]]:
    """When the server accepted each message (the tick's time), and its group."""
    return [
        (world.tick_times[index], domain_group(message.recipients[0]))
        for index, message in enumerate(world.server.handler.messages)
    ]


def assert_windows_within(
    accepted: list[tuple[datetime, DomainGroup]], max_per_hour: int, caps: dict[DomainGroup, int]
) -> None:
    """No 60-minute window (ending at any acceptance) holds more than the
    global quota, nor more than a capped group's cap of that group."""
    for moment, _ in accepted:
        window = [group for when, group in accepted if moment - QUOTA_WINDOW < when <= moment]
        assert len(window) <= max_per_hour, moment
        for group, cap in caps.items():
            assert Counter(window)[group] <= cap, (moment, group)


def due_per_group(world: World) -> Counter[DomainGroup]:
    world.session.expire_all()
    now = world.clock.now()
    rows = world.session.execute(
        select(QueueItem.domain_group, func.count())
        .where(
            QueueItem.status == Q.QUEUED,
            (QueueItem.next_attempt_at.is_(None)) | (QueueItem.next_attempt_at <= now),
        )
        .group_by(QueueItem.domain_group)
    )
    return Counter({G(group): count for group, count in rows})


def best_portion(world: World, runtime: RuntimeSettings) -> int:
    """The most a tick may send now, worked out from what the server
    received: the batch size, the global quota left, and per group the
    smaller of its due items and what its cap leaves."""
    now = world.clock.now()
    recent = [group for when, group in acceptances(world) if when > now - QUOTA_WINDOW]
    room = 0
    for group, due in due_per_group(world).items():
        cap = runtime.group_hourly_cap(group)
        room += min(due, max(0, cap - Counter(recent)[group])) if cap else due
    return min(runtime.batch_size, runtime.max_per_hour - len(recent), room)


# ----------------------------------------------------------------- groups at queue build


def test_the_queue_build_stores_each_recipients_domain_group(world: World) -> None:
    mass_email = world.start(
        "March",
        ["ann@gmail.com", "bob@Yahoo.co.uk", "cy@hotmail.fr", "dee@example.org", "eve@aol.com"],
    )

    groups = {item.email: item.domain_group for item in world.items(mass_email)}

    assert groups == {
        "ann@gmail.com": G.GMAIL,
        "bob@Yahoo.co.uk": G.YAHOO,
        "cy@hotmail.fr": G.OUTLOOK,
        "dee@example.org": G.OTHER,
        "eve@aol.com": G.YAHOO,
    }


# ----------------------------------------------------------------- hourly caps


def test_each_group_keeps_its_hourly_cap_and_the_others_fill_every_portion(
    world: World,
) -> None:
    world.set(max_per_hour=100, batch_size=40, pace_gmail_per_hour=30, pace_yahoo_per_hour=10)
    first = world.start("March", mixed("m", gmail_com=90, yahoo_com=30, example_org=40))
    second = world.start("April", mixed("a", gmail_com=30, ymail_com=10, example_net=20))
    runtime = world.runtime
    portions = []

    for _ in range(49):  # every 10 minutes for 8 hours
        expected = best_portion(world, runtime)
        result = world.tick()
        assert result.claimed == result.sent == expected, world.clock.now()
        portions.append(result.sent)
        world.clock.advance(timedelta(minutes=10))

    accepted = acceptances(world)
    assert_windows_within(accepted, 100, {G.GMAIL: 30, G.YAHOO: 10})
    assert Counter(group for _, group in accepted) == {G.GMAIL: 120, G.YAHOO: 40, G.OTHER: 60}
    # Gmail and Yahoo capped: the first portion is still full, made of others.
    assert portions[0] == 40
    assert sum(portions[:6]) == 30 + 10 + 60  # the first hour: both caps, all of the rest
    assert world.status_of(first) == world.status_of(second) == "complete"
    world.assert_never_twice()


def test_a_capped_group_does_not_hold_up_the_next_portion(world: World) -> None:
    world.set(batch_size=10, pace_gmail_per_hour=5)
    world.start("March", mixed("m", gmail_com=20, example_org=20))

    first, second, third = world.tick(), world.tick(), world.tick()

    assert (first.sent, second.sent, third.sent) == (10, 10, 5)
    assert Counter(domain_group(address) for address in world.received())[G.GMAIL] == 5
    world.clock.advance(QUOTA_WINDOW)
    assert world.tick().sent == 5  # gmail's next hour
    world.assert_never_twice()


# ----------------------------------------------------------------- throttles


@PIPELINED
@pytest.mark.parametrize(
    ("domain", "group", "reply"),
    [
        ("gmail.com", G.GMAIL, GMAIL_RATE_LIMIT),
        ("yahoo.com", G.YAHOO, "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred"),
        ("hotmail.com", G.OUTLOOK, "451 4.7.500 Server busy. Please try again later"),
    ],
)
def test_a_rate_limit_throttles_only_its_group_which_resumes_after_the_back_off(
    world: World, domain: str, group: DomainGroup, reply: str
) -> None:
    world.set(smtp_connections=1, throttle_seconds=900)
    addresses = mixed("m", **{domain.replace(".", "_"): 6, "example_org": 6})
    mass_email = world.start("March", addresses)
    world.server.handler.rcpt_domain_replies[domain] = reply
    started = world.clock.now()

    result = world.tick()

    assert result.stopped == ""  # the tick went on for the other group
    assert result.throttled == {group: started + timedelta(seconds=900)}
    assert result.sent == 6 and set(world.received()) == {
        a for a in addresses if a.endswith("example.org")
    }
    throttled_items = [i for i in world.items(mass_email) if i.domain_group == group]
    charged = [i for i in throttled_items if i.attempts == 1]
    released = [i for i in throttled_items if i.attempts == 0]
    # The reply that throttled (and one already in its conversation, if any)
    # is a temporary failure with back-off; the rest went back uncharged.
    assert 1 <= len(charged) <= 2 and len(charged) + len(released) == 6
    assert result.retried == len(charged) and result.released == len(released)
    assert all(i.status == Q.QUEUED and i.last_code == int(reply[:3]) for i in charged)
    assert all(i.next_attempt_at == started + timedelta(seconds=300) for i in charged)
    assert all(i.status == Q.QUEUED and i.next_attempt_at is None for i in released)
    [throttle] = world.session.scalars(select(DomainThrottle)).all()
    assert (throttle.domain_group, throttle.strikes, throttle.code) == (group, 1, int(reply[:3]))

    # Another runner honours the throttle: the items are due, the group is not.
    world.clock.advance(timedelta(seconds=899))
    assert world.tick("runner-2").claimed == 0
    del world.server.handler.rcpt_domain_replies[domain]
    world.clock.advance(timedelta(seconds=1))
    resumed = world.tick("runner-2")

    assert (resumed.sent, resumed.completed) == (6, [mass_email.id])
    assert set(world.received()) == set(addresses)
    world.assert_never_twice()


@PIPELINED
def test_a_421_without_an_enhanced_code_to_data_throttles_the_recipients_group(
    world: World,
) -> None:
    world.set(smtp_connections=1)
    mass_email = world.start("March", mixed("m", outlook_com=4, example_org=4))
    # Outlook.com's hourly limit reply carries no enhanced status code.
    world.server.handler.data_domain_replies["outlook.com"] = (
        "421 RP-001 (BAY004-MC1F43) Unfortunately, some messages from 192.0.2.1 weren't sent."
    )

    result = world.tick()

    assert result.stopped == "" and list(result.throttled) == [G.OUTLOOK]
    assert result.sent == 4 and result.retried + result.released == 4
    assert all(address.endswith("example.org") for address in world.received())
    outlook = [i for i in world.items(mass_email) if i.domain_group == G.OUTLOOK]
    assert sorted(i.attempts for i in outlook) == [0] * result.released + [1] * result.retried


@PIPELINED
def test_a_421_before_any_recipient_is_the_relay_and_ends_the_tick(world: World) -> None:
    world.set(smtp_connections=1)
    mass_email = world.start("March", mixed("m", gmail_com=3, example_org=3))
    world.server.handler.mail_replies.append("421 4.7.0 Error: too many connections from you")

    result = world.tick()

    assert "421" in result.stopped and result.throttled == {}
    assert result.retried == 1 and result.sent + result.released == 5
    assert world.session.scalar(select(func.count()).select_from(DomainThrottle)) == 0
    assert world.statuses(mass_email)[Q.QUEUED] == 6 - result.sent


def test_repeated_rate_limits_throttle_longer(world: World) -> None:
    world.set(throttle_seconds=600)
    world.start("March", mixed("m", gmail_com=4))
    world.server.handler.rcpt_domain_replies["gmail.com"] = GMAIL_RATE_LIMIT
    lengths = []
    for _ in range(3):
        result = world.tick()
        [until] = result.throttled.values()
        lengths.append(until - world.clock.now())
        world.clock.advance(until - world.clock.now())

    assert lengths == [timedelta(minutes=10), timedelta(minutes=20), timedelta(minutes=40)]
    assert world.received() == Counter()


def test_status_shows_each_groups_use_caps_and_throttle(world: World) -> None:
    world.set(pace_gmail_per_hour=50, pace_yahoo_connections=2)
    mass_email = world.start("March", mixed("m", gmail_com=3, example_org=2))
    world.server.handler.rcpt_domain_replies["gmail.com"] = GMAIL_RATE_LIMIT
    world.tick()

    lines = run_cli(world, "status", str(mass_email.id)).output.splitlines()

    assert "Domain groups (all mass emails, last 60 minutes):" in lines
    [gmail] = [line for line in lines if line.startswith("  gmail ")]
    assert "3 claimed of 50/h" in gmail
    assert "throttled until 2026-03-02 09:15 UTC (in about 15 min): 421 4.7.28" in gmail
    [yahoo] = [line for line in lines if line.startswith("  yahoo ")]
    assert yahoo.endswith("0 claimed (global quota only), at most 2 connection(s)")
    [other] = [line for line in lines if line.startswith("  other ")]
    assert "throttled" not in other


def test_dispatch_once_says_which_group_it_throttled_and_exits_zero(world: World) -> None:
    world.start("March", mixed("m", gmail_com=2, example_org=2))
    world.server.handler.rcpt_domain_replies["gmail.com"] = GMAIL_RATE_LIMIT

    result = run_cli(world, "dispatch", "--once")

    assert result.exit_code == 0, result.output
    assert (
        "Domain group gmail is throttled until 2026-03-02 09:15 UTC after a rate-limit reply;"
        " its unsent claims were released." in result.output.splitlines()
    )
    assert "ended early" not in result.output


# ----------------------------------------------------------------- connection caps


@pytest.mark.parametrize("cap", [1, 2])
def test_a_group_never_has_more_conversations_at_once_than_its_cap(world: World, cap: int) -> None:
    world.set(smtp_connections=4, pace_gmail_connections=cap)
    world.start("March", mixed("m", gmail_com=24, example_org=8))
    world.server.handler.data_delay_seconds = 0.05  # a slow relay: conversations overlap

    result = world.tick()

    assert result.sent == 32
    peaks = world.server.handler.peak_conversations
    assert 1 <= peaks["gmail.com"] <= cap
    # The other group had several at once, so the cap is what held gmail.
    assert peaks["example.org"] >= 2
    world.assert_never_twice()


# ----------------------------------------------------------------- several runners


def test_runners_in_parallel_keep_the_group_caps_without_duplicates(world: World) -> None:
    world.set(max_per_hour=150, batch_size=20, smtp_connections=2, pace_gmail_per_hour=40)
    world.start("March", mixed("m", gmail_com=100, example_org=100))
    assert world.run_in_parallel(runners=3, ticks=12) == []
    received = Counter(domain_group(address) for address in world.received())
    assert received == {G.GMAIL: 40, G.OTHER: 100}  # gmail's cap; the rest all sent
    world.assert_never_twice()
    world.clock.advance(QUOTA_WINDOW)
    while world.tick().claimed:
        pass
    received = Counter(domain_group(address) for address in world.received())
    assert received == {G.GMAIL: 80, G.OTHER: 100}
    world.assert_never_twice()
