"""The dispatcher against a real SMTP server (aiosmtpd, ``tests/smtp_server.py``)
and real databases, with a fixed clock moved by hand (no sleeps): quota over
simulated hours, fairness, every SMTP outcome, send-time checks, pause and
cancel, leases and interrupted items, completion — and never a message twice.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email import message_from_bytes, policy

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.cli import ScriptInfo
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app import app_settings
from app.cli import build_cli
from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.models import (
    BounceKind,
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    EmailStatus,
    EmailTemplate,
    MassEmail,
    MassEmailStatus,
    QueueItem,
    QueueItemStatus,
    SendAttempt,
    SenderProfile,
    TargetListMember,
)
from app.services.campaigns import (
    TemplateInput,
    add_mass_email,
    cancel_mass_email,
    create_campaign,
    create_sender_profile,
    pause_mass_email,
    resume_mass_email,
    save_template,
    schedule_mass_email,
)
from app.services.contacts import change_opt_out
from app.services.dispatch import (
    DispatchError,
    claim_batch,
    housekeeping,
    retry_interrupted,
)
from app.services.dispatch_results import ItemOutcome, record_accepted
from app.services.dispatch_send import MessageConfig, TickResult, dispatch_tick
from app.services.queue_build import build_queue
from app.services.quota import QUOTA_WINDOW
from app.services.runtime_settings import (
    RuntimeSettings,
    get_runtime_settings,
    seed_runtime_settings,
    update_runtime_settings,
)
from app.services.target_lists import create_target_list
from app.services.transport import (
    SendOutcome,
    SendResult,
    SmtpSettings,
    SmtpTransport,
    Transport,
)
from tests.conftest import TEST_SECRET_KEY
from tests.smtp_server import RunningServer, free_port, smtp_server

Q = QueueItemStatus
M = MassEmailStatus
SITE = "https://sluice.example.com"


# ----------------------------------------------------------------- the world


@dataclass
class World:
    """An app, its session, a fixed clock and an SMTP server; ``tick``
    runs one dispatcher tick against the server."""

    app: Flask
    session: Session
    clock: FixedClock
    server: RunningServer
    profile: SenderProfile
    template: EmailTemplate
    tick_times: dict[int, datetime] = field(default_factory=dict)

    @property
    def runtime(self) -> RuntimeSettings:
        return get_runtime_settings(self.session)

    def set(self, **changes: object) -> None:
        update_runtime_settings(self.session, changes, self.clock)
        self.session.commit()

    def transport(self, *, port: int = 0, username: str = "", password: str = "") -> Transport:
        """A transport to the server (or to ``port``), with credentials."""
        settings = SmtpSettings(
            host=self.server.host,
            port=port or self.server.port,
            username=username,
            password=password,
            timeout=5,
        )
        return SmtpTransport(settings)

    def tick(
        self,
        runner_id: str = "runner-1",
        transport_factory: Callable[[], Transport] | None = None,
    ) -> TickResult:
        runtime = self.runtime
        self.session.commit()
        accepted_before = len(self.server.handler.messages)
        result = dispatch_tick(
            self.session,
            transport_factory or self.transport,
            self.clock,
            runtime,
            runner_id,
            config=MessageConfig(app_settings(self.app), TEST_SECRET_KEY, None),
        )
        for index in range(accepted_before, len(self.server.handler.messages)):
            self.tick_times[index] = self.clock.now()
        return result

    def run_in_parallel(self, *, runners: int, ticks: int) -> list[BaseException]:
        """``runners`` threads at once, each with its own session, each
        running ``ticks`` ticks; returns what they raised."""
        failures: list[BaseException] = []
        engine = self.session.get_bind()  # Flask-SQLAlchemy finds it in the app context

        def runner(name: str) -> None:
            session = Session(engine)
            try:
                for _ in range(ticks):
                    dispatch_tick(
                        session,
                        self.transport,
                        self.clock,
                        get_runtime_settings(session),
                        name,
                        config=MessageConfig(app_settings(self.app), TEST_SECRET_KEY, None),
                    )
            except BaseException as error:
                failures.append(error)
            finally:
                session.close()

        threads = [threading.Thread(target=runner, args=(f"runner-{n}",)) for n in range(runners)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return failures

    def start(self, name: str, addresses: list[str], *, build: bool = True) -> MassEmail:
        """A mass email to ``addresses`` (new contacts), scheduled to start
        now and, unless ``build`` is false, its queue built: in progress."""
        session, clock = self.session, self.clock
        now = clock.now()
        targets = create_target_list(session, f"{name} list", "", clock)
        if addresses:
            contact_ids = session.scalars(
                insert(Contact).returning(Contact.id, sort_by_parameter_order=True),
                [
                    {
                        "email": address,
                        "email_lower": address.lower(),
                        "first_name": address.split("@")[0].title(),
                        "custom_fields": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for address in addresses
                ],
            ).all()
            session.execute(
                insert(TargetListMember),
                [
                    {"target_list_id": targets.id, "contact_id": contact_id, "added_at": now}
                    for contact_id in contact_ids
                ],
            )
        campaign = create_campaign(
            session,
            name=name,
            type="newsletter",
            target_list_ids=[targets.id],
            excluding_list_ids=[],
            sender_profile_id=self.profile.id,
            clock=clock,
        )
        mass_email = add_mass_email(
            session, campaign, template_id=self.template.id, name=name, clock=clock
        )
        schedule_mass_email(
            session,
            mass_email,
            start_at=None,
            can_spam_confirmed=True,
            runtime=self.runtime,
            settings=app_settings(self.app),
            secret_key=TEST_SECRET_KEY,
            clock=clock,
        )
        if build:
            build_queue(session, mass_email, clock)
        session.commit()
        return mass_email

    # ------------------------------------------------------------ reading

    def items(self, mass_email: MassEmail) -> list[QueueItem]:
        self.session.expire_all()
        return list(
            self.session.scalars(
                select(QueueItem)
                .where(QueueItem.mass_email_id == mass_email.id)
                .order_by(QueueItem.id)
            )
        )

    def item(self, address: str) -> QueueItem:
        self.session.expire_all()
        item = self.session.scalar(select(QueueItem).where(QueueItem.email == address))
        assert item is not None
        return item

    def statuses(self, mass_email: MassEmail) -> Counter[str]:
        return Counter(str(item.status) for item in self.items(mass_email))

    def status_of(self, mass_email: MassEmail) -> MassEmailStatus:
        self.session.expire_all()
        found = self.session.get(MassEmail, mass_email.id)
        assert found is not None
        return MassEmailStatus(found.status)

    def received(self) -> Counter[str]:
        """Recipient → how many messages the server accepted for it."""
        return Counter(
            recipient
            for message in self.server.handler.messages
            for recipient in message.recipients
        )

    def log(self, event: CampaignLogEvent) -> list[CampaignLogEntry]:
        return list(
            self.session.scalars(
                select(CampaignLogEntry)
                .where(CampaignLogEntry.event == event)
                .order_by(CampaignLogEntry.id)
            )
        )

    def attempts_of(self, address: str) -> list[SendAttempt]:
        item = self.item(address)
        return list(
            self.session.scalars(
                select(SendAttempt)
                .where(SendAttempt.queue_item_id == item.id)
                .order_by(SendAttempt.id)
            )
        )

    def assert_never_twice(self) -> None:
        """Every address the server accepted once at most, and exactly the
        addresses of the items marked sent."""
        received = self.received()
        assert all(count == 1 for count in received.values()), received.most_common(3)
        self.session.expire_all()
        sent = set(self.session.scalars(select(QueueItem.email).where(QueueItem.status == Q.SENT)))
        assert set(received) == sent


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with smtp_server() as running:
        yield running


def make_world(app: Flask, session: Session, clock: FixedClock, server: RunningServer) -> World:
    seed_runtime_settings(session, app_settings(app), clock)
    update_runtime_settings(
        session,
        {"site_url": SITE, "max_per_hour": 10_000, "batch_size": 100, "smtp_connections": 2},
        clock,
    )
    profile = create_sender_profile(
        session, "News", "Example News", "news@example.com", "team@example.com"
    )
    template = save_template(
        session,
        TemplateInput(
            name="Spring", subject="Spring news for {{ FIRST_NAME }}", body_html="<p>Hi!</p>"
        ),
        clock,
    )
    session.commit()
    return World(app, session, clock, server, profile, template)


@pytest.fixture
def world(app: Flask, session: Session, clock: FixedClock, server: RunningServer) -> World:
    return make_world(app, session, clock, server)


def addresses(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{number:04d}@example.org" for number in range(count)]


# ----------------------------------------------------------------- the happy path


def test_a_tick_sends_the_queue_commits_each_result_and_completes(world: World) -> None:
    mass_email = world.start("March", addresses("ann", 5))

    result = world.tick()

    assert (result.claimed, result.sent, result.completed) == (5, 5, [mass_email.id])
    assert world.status_of(mass_email) == M.COMPLETE
    for item in world.items(mass_email):
        assert item.status == Q.SENT and item.sent_at == world.clock.now()
        assert item.last_code == 250 and "queued as TEST" in item.last_reply
        assert (item.attempts, item.lease_expires_at, item.claimed_by) == (1, None, "runner-1")
    [first, *_] = world.attempts_of("ann0000@example.org")
    assert (first.outcome, first.code, first.runner_id) == ("accepted", 250, "runner-1")
    assert first.finished_at == world.clock.now()
    assert len(world.log(CampaignLogEvent.SENT)) == 5
    [data] = [
        m.data for m in world.server.handler.messages if m.recipients == ["ann0003@example.org"]
    ]
    message = message_from_bytes(data, policy=policy.default)
    assert message["Subject"] == "Spring news for Ann0003"
    assert message["X-Sluice-Queue-Item"] == str(world.item("ann0003@example.org").id)
    world.assert_never_twice()


# ----------------------------------------------------------------- quota and fairness


def simulated_portions(
    tick_times: list[datetime], total: int, batch_size: int, max_per_hour: int
) -> list[int]:
    """How many messages each tick may send at best: the batch size, the
    quota left in the sliding window and what is left to send."""
    sent: list[tuple[datetime, int]] = []
    portions = []
    for now in tick_times:
        used = sum(count for when, count in sent if when > now - QUOTA_WINDOW)
        left = total - sum(count for _, count in sent)
        portion = max(0, min(batch_size, max_per_hour - used, left))
        sent.append((now, portion))
        portions.append(portion)
    return portions


def test_the_hourly_quota_holds_in_every_window_and_is_used_to_the_full(world: World) -> None:
    world.set(max_per_hour=100, batch_size=40)
    large = world.start("Large", addresses("large", 200))
    small = world.start("Small", addresses("small", 150))
    tick_times = [world.clock.now() + timedelta(minutes=10 * n) for n in range(37)]  # 6 hours

    portions = []
    for when in tick_times:
        world.clock.advance(when - world.clock.now())
        portions.append(world.tick().sent)

    accepted_at = sorted(world.tick_times.values())
    for moment in accepted_at:  # every window (t - 60 min, t] that ends at an acceptance
        in_window = [t for t in accepted_at if moment - QUOTA_WINDOW < t <= moment]
        assert len(in_window) <= 100
    assert portions == simulated_portions(tick_times, 350, 40, 100)
    assert sum(portions) == 350 and portions[:3] == [40, 40, 20]
    assert world.status_of(large) == world.status_of(small) == M.COMPLETE
    # Shared: the small mass email had half of the very first portion.
    first_tick = [
        message.recipients[0]
        for index, message in enumerate(world.server.handler.messages)
        if world.tick_times[index] == tick_times[0]
    ]
    assert sum(address.startswith("small") for address in first_tick) == 20
    world.assert_never_twice()


def test_a_small_mass_email_is_not_starved_by_a_huge_one(world: World) -> None:
    world.set(batch_size=50)
    huge = world.start("Huge", addresses("huge", 1000))
    small = world.start("Small", addresses("small", 10))

    result = world.tick()

    assert result.sent == 50
    assert world.status_of(small) == M.COMPLETE
    assert world.statuses(huge)[Q.SENT] == 40
    assert result.completed == [small.id]


def test_the_quota_counts_claims_of_every_runner(world: World) -> None:
    world.set(max_per_hour=30, batch_size=20)
    mass_email = world.start("March", addresses("ann", 60))

    assert world.tick("runner-1").sent == 20
    assert world.tick("runner-2").sent == 10
    assert world.tick("runner-3").sent == 0
    world.clock.advance(QUOTA_WINDOW)
    assert world.tick("runner-2").sent == 20
    assert world.statuses(mass_email)[Q.SENT] == 50


# ----------------------------------------------------------------- SMTP outcomes


def test_a_4xx_is_retried_after_the_back_off_and_not_before(world: World) -> None:
    mass_email = world.start("March", ["ann@example.org", "bob@example.org"])
    world.server.handler.rcpt_replies["ann@example.org"] = "450 4.2.1 Mailbox busy"

    first = world.tick()

    ann = world.item("ann@example.org")
    assert (first.sent, first.retried, first.completed) == (1, 1, [])
    assert (ann.status, ann.attempts, ann.last_code) == (Q.QUEUED, 1, 450)
    assert ann.next_attempt_at == world.clock.now() + timedelta(seconds=300)
    del world.server.handler.rcpt_replies["ann@example.org"]
    world.clock.advance(timedelta(seconds=299))
    assert world.tick().claimed == 0  # not due yet
    world.clock.advance(timedelta(seconds=1))
    again = world.tick()

    assert (again.sent, again.completed) == (1, [mass_email.id])
    ann = world.item("ann@example.org")
    assert (ann.status, ann.attempts) == (Q.SENT, 2)
    outcomes = [(a.outcome, a.code) for a in world.attempts_of("ann@example.org")]
    assert outcomes == [("temporary", 450), ("accepted", 250)]
    world.assert_never_twice()


def test_retries_exhausted_fail_the_item_with_the_reply(world: World) -> None:
    world.set(max_attempts=3, retry_base_seconds=60)
    world.start("March", ["ann@example.org"])
    world.server.handler.rcpt_replies["ann@example.org"] = "451 4.3.0 Try again later"

    for delay in (0, 60, 120):  # 60 s, then doubled
        world.clock.advance(timedelta(seconds=delay))
        world.tick()

    ann = world.item("ann@example.org")
    assert (ann.status, ann.attempts, ann.last_code) == (Q.FAILED, 3, 451)
    assert "Try again later" in ann.last_reply
    [failed] = world.log(CampaignLogEvent.FAILED)
    assert failed.detail["reason"] == "retries exhausted" and failed.detail["code"] == 451
    assert world.received() == Counter()


def test_a_5xx_to_rcpt_is_a_hard_bounce_that_marks_the_contact_invalid(world: World) -> None:
    world.start("March", ["gone@example.org", "bob@example.org"])
    world.server.handler.rcpt_replies["gone@example.org"] = "550 5.1.1 User unknown"

    result = world.tick()

    gone = world.item("gone@example.org")
    assert (result.sent, result.bounced) == (1, 1)
    assert (gone.status, gone.bounce_kind, gone.last_code) == (Q.BOUNCED, BounceKind.HARD, 550)
    contact = world.session.get(Contact, gone.contact_id)
    assert contact is not None and contact.email_status == EmailStatus.INVALID
    assert "User unknown" in contact.email_status_reason
    assert contact.email_status_at == world.clock.now()
    [bounce] = world.log(CampaignLogEvent.BOUNCED_HARD)
    assert (bounce.queue_item_id, bounce.detail["code"]) == (gone.id, 550)
    world.assert_never_twice()


def test_a_5xx_to_data_fails_the_item_and_keeps_the_reply(world: World) -> None:
    world.set(smtp_connections=1)
    world.start("March", ["ann@example.org"])
    world.server.handler.data_replies.append("554 5.7.1 Message refused as spam")

    result = world.tick()

    ann = world.item("ann@example.org")
    assert result.failed == 1
    assert (ann.status, ann.last_code) == (Q.FAILED, 554)
    assert "refused as spam" in ann.last_reply
    [failed] = world.log(CampaignLogEvent.FAILED)
    assert failed.detail["reason"] == "rejected"


def test_a_dropped_connection_is_retried_and_the_message_arrives_once(world: World) -> None:
    world.set(smtp_connections=1)
    world.start("March", ["ann@example.org"])
    world.server.handler.drop_next_data = 1

    assert world.tick().retried == 1
    ann = world.item("ann@example.org")
    assert (ann.status, ann.last_code) == (Q.QUEUED, None)
    world.clock.advance(timedelta(seconds=300))
    assert world.tick().sent == 1
    world.assert_never_twice()


def test_an_authentication_failure_pauses_sending_and_shows_the_error(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    with smtp_server(credentials=("sluice", "right")) as server:
        world = make_world(app, session, clock, server)
        mass_email = world.start("March", addresses("ann", 4))

        result = world.tick(
            transport_factory=lambda: world.transport(username="sluice", password="wrong")
        )

        assert result.stopped == "SMTP authentication failed"
        assert (result.sent, result.released, result.paused) == (0, 4, [mass_email.id])
        assert world.status_of(mass_email) == M.PAUSED
        assert all(
            (item.status, item.attempts) == (Q.QUEUED, 0) for item in world.items(mass_email)
        )
        [error] = world.log(CampaignLogEvent.ERROR)
        assert error.queue_item_id is None and error.detail["action"] == "paused"
        assert "535" in error.detail["reason"]
        assert world.tick().claimed == 0  # paused: nothing more is claimed

        resume_mass_email(session, mass_email, clock)
        session.commit()
        fixed = world.tick(
            transport_factory=lambda: world.transport(username="sluice", password="right")
        )
        assert (fixed.sent, fixed.completed) == (4, [mass_email.id])
        world.assert_never_twice()


def test_a_temporary_refusal_of_auth_ends_the_tick_without_pausing(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    """smtplib reports any refusal of AUTH as an authentication error; a
    4xx is the relay being busy, not wrong credentials."""
    with smtp_server(
        credentials=("sluice", "right"), auth_refusal="454 4.7.0 Temporary authentication failure"
    ) as server:
        world = make_world(app, session, clock, server)
        mass_email = world.start("March", addresses("ann", 4))

        result = world.tick(
            transport_factory=lambda: world.transport(username="sluice", password="wrong")
        )

        assert result.stopped.startswith("the relay is not taking mail now: 454")
        # Only the conversations already under way (one per connection) met
        # the refusal; the rest were released uncharged.
        connections = world.runtime.smtp_connections
        assert (result.paused, result.sent) == ([], 0)
        assert 1 <= result.retried <= connections
        assert result.retried + result.released == 4
        assert world.status_of(mass_email) == M.IN_PROGRESS
        assert not world.log(CampaignLogEvent.ERROR)
        assert sum(item.attempts for item in world.items(mass_email)) == result.retried


def test_a_421_ends_the_tick_and_releases_the_rest_uncharged(world: World) -> None:
    world.set(smtp_connections=1)
    mass_email = world.start("March", addresses("ann", 6))
    world.server.handler.data_replies.append("421 4.3.2 Service shutting down")

    result = world.tick()

    assert "421" in result.stopped
    assert result.retried == 1
    assert result.sent + result.released == 5 and result.released >= 3
    counts = world.statuses(mass_email)
    assert (counts[Q.SENT], counts[Q.QUEUED]) == (result.sent, 6 - result.sent)
    released = [i for i in world.items(mass_email) if i.status == Q.QUEUED and i.last_code is None]
    assert len(released) == result.released
    assert all(item.attempts == 0 and item.next_attempt_at is None for item in released)
    world.assert_never_twice()


def test_repeated_connection_failures_end_the_tick(world: World) -> None:
    world.set(smtp_connections=1)
    mass_email = world.start("March", addresses("ann", 8))
    closed_port = free_port()

    result = world.tick(transport_factory=lambda: world.transport(port=closed_port))

    assert "3 connection failures in a row" in result.stopped
    assert result.retried >= 3 and result.retried + result.released == 8
    assert world.statuses(mass_email)[Q.QUEUED] == 8
    assert world.received() == Counter()


# ----------------------------------------------------------------- send-time checks


def test_a_contact_who_opted_out_after_the_queue_was_built_is_not_sent_to(world: World) -> None:
    mass_email = world.start("March", ["ann@example.org", "bob@example.org"])
    bob = world.session.scalar(select(Contact).where(Contact.email == "bob@example.org"))
    assert bob is not None
    change_opt_out(world.session, bob, True, "link", world.clock)
    world.session.commit()

    result = world.tick()

    assert (result.sent, result.skipped, result.completed) == (1, 1, [mass_email.id])
    item = world.item("bob@example.org")
    assert (item.status, item.skip_reason) == (
        Q.UNSUBSCRIBED,
        "opted out after the queue was built",
    )
    assert [a.outcome for a in world.attempts_of("bob@example.org")] == ["skipped"]
    assert set(world.received()) == {"ann@example.org"}


def test_an_address_marked_invalid_after_the_queue_was_built_is_an_error(world: World) -> None:
    world.start("March", ["ann@example.org"])
    ann = world.session.scalar(select(Contact).where(Contact.email == "ann@example.org"))
    assert ann is not None
    ann.email_status = EmailStatus.INVALID
    ann.email_status_reason = "marked by hand"
    world.session.commit()

    assert world.tick().skipped == 1

    item = world.item("ann@example.org")
    assert (item.status, item.skip_reason) == (
        Q.ERROR,
        "the address is marked invalid: marked by hand",
    )
    [error] = world.log(CampaignLogEvent.ERROR)
    assert error.queue_item_id == item.id
    assert world.received() == Counter()


# ----------------------------------------------------------------- pause, resume, cancel


def test_pause_stops_further_portions_and_resume_continues(world: World) -> None:
    world.set(batch_size=3)
    mass_email = world.start("March", addresses("ann", 7))
    assert world.tick().sent == 3

    pause_mass_email(world.session, mass_email, world.clock)
    world.session.commit()
    assert world.tick().claimed == 0
    assert world.tick().claimed == 0

    resume_mass_email(world.session, mass_email, world.clock)
    world.session.commit()
    assert world.tick().sent == 3
    assert world.tick().sent == 1
    assert world.status_of(mass_email) == M.COMPLETE
    world.assert_never_twice()


def test_cancel_stops_for_good(world: World) -> None:
    world.set(batch_size=2)
    mass_email = world.start("March", addresses("ann", 5))
    world.tick()

    cancel_mass_email(world.session, mass_email, world.clock)
    world.session.commit()
    world.tick()

    assert world.status_of(mass_email) == M.CANCELED
    assert world.statuses(mass_email) == Counter({Q.QUEUED: 3, Q.SENT: 2})
    assert len(world.received()) == 2


# ----------------------------------------------------------------- leases


def test_an_expired_lease_is_interrupted_never_resent_until_a_person_retries(
    world: World,
) -> None:
    mass_email = world.start("March", addresses("ann", 3))
    world.session.commit()
    # A runner claims and dies before any SMTP conversation.
    claims = claim_batch(world.session, "dead-runner", world.clock, world.runtime)
    assert len(claims) == 3
    world.clock.advance(timedelta(seconds=299))
    assert housekeeping(world.session, world.clock) == 0
    world.clock.advance(timedelta(seconds=1))

    result = world.tick()

    assert (result.interrupted, result.claimed) == (3, 0)
    assert world.statuses(mass_email) == Counter({Q.INTERRUPTED: 3})
    assert world.status_of(mass_email) == M.COMPLETE  # nothing queued or sending left
    outcomes = [a.outcome for a in world.attempts_of("ann0000@example.org")]
    assert outcomes == ["interrupted"]
    assert world.received() == Counter()


def test_retry_interrupted_puts_them_back_after_a_person_decides(world: World) -> None:
    world.set(batch_size=2)
    mass_email = world.start("March", addresses("ann", 4))
    claim_batch(world.session, "dead-runner", world.clock, world.runtime)
    world.clock.advance(timedelta(seconds=300))
    result = world.tick()
    assert (result.interrupted, result.sent) == (2, 2)
    assert world.status_of(mass_email) == M.COMPLETE

    with pytest.raises(DispatchError, match="is complete"):
        retry_interrupted(world.session, mass_email.id, world.clock)


def test_retry_interrupted_resends_them_while_the_mass_email_is_in_progress(
    world: World,
) -> None:
    world.set(batch_size=2)
    mass_email = world.start("March", addresses("ann", 5))
    claim_batch(world.session, "dead-runner", world.clock, world.runtime)
    world.clock.advance(timedelta(seconds=300))
    world.tick()  # interrupts 2, sends 2, one left queued
    assert world.statuses(mass_email) == Counter({Q.INTERRUPTED: 2, Q.SENT: 2, Q.QUEUED: 1})

    assert retry_interrupted(world.session, mass_email.id, world.clock) == 2
    world.session.commit()
    result = world.tick()

    assert (result.sent, result.completed) == (2, [])
    world.tick()
    assert world.statuses(mass_email) == Counter({Q.SENT: 5})
    assert world.status_of(mass_email) == M.COMPLETE
    world.assert_never_twice()


def test_claims_never_overlap_between_runners(world: World) -> None:
    world.set(batch_size=4)
    world.start("March", addresses("ann", 10))
    first = claim_batch(world.session, "runner-a", world.clock, world.runtime)
    second = claim_batch(world.session, "runner-b", world.clock, world.runtime)
    third = claim_batch(world.session, "runner-c", world.clock, world.runtime)

    ids = [claim.queue_item_id for claim in [*first, *second, *third]]
    assert [len(first), len(second), len(third)] == [4, 4, 2]
    assert len(set(ids)) == 10
    count = world.session.scalar(select(func.count()).select_from(SendAttempt))
    assert count == 10


# ----------------------------------------------------------------- the command line


def run_cli(world: World, *args: str, smtp_url: str = "") -> Result:
    settings = app_settings(world.app)
    url = smtp_url or f"smtp://{world.server.host}:{world.server.port}?timeout=5"
    world.app.config["SLUICE_SETTINGS"] = replace(settings, smtp_url=url)
    world.app.config[CLOCK_CONFIG_KEY] = world.clock
    world.session.commit()
    return CliRunner().invoke(build_cli(), list(args), obj=ScriptInfo(create_app=lambda: world.app))


def test_dispatch_once_starts_due_mass_emails_and_sends_a_portion(world: World) -> None:
    world.set(batch_size=3)
    mass_email = world.start("March", addresses("ann", 4))

    first = run_cli(world, "dispatch", "--once")
    second = run_cli(world, "dispatch", "--once")

    assert first.exit_code == 0, first.output
    assert "Claimed 3: sent 3," in first.output
    assert "Claimed 1: sent 1," in second.output
    assert f"Completed mass email(s) {mass_email.id}." in second.output
    world.assert_never_twice()


def test_dispatch_needs_once(world: World) -> None:
    result = run_cli(world, "dispatch")
    assert result.exit_code == 2 and "needs --once" in result.output


def test_dispatch_once_fails_loudly_when_it_had_to_pause(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    with smtp_server(credentials=("sluice", "right")) as server:
        world = make_world(app, session, clock, server)
        mass_email = world.start("March", addresses("ann", 2))
        url = f"smtp://sluice:wrong@{server.host}:{server.port}?timeout=5"

        result = run_cli(world, "dispatch", "--once", smtp_url=url)

        assert result.exit_code == 1
        assert "The tick ended early: SMTP authentication failed." in result.output
        assert f"paused mass email(s) {mass_email.id}" in result.output


def test_status_prints_counts_and_an_estimate_under_the_quota(world: World) -> None:
    world.set(max_per_hour=100, batch_size=100)
    mass_email = world.start("March", addresses("ann", 250))
    world.tick()  # 100 sent; the window is full for an hour

    result = run_cli(world, "status", str(mass_email.id))

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"Mass email {mass_email.id} (March): in_progress"
    assert "  queued              150" in lines and "  sent                100" in lines
    assert "Quota left in the current hour (all mass emails): 0" in lines
    # A slot opens at 10:00; 150 more at 100/h take 1 h 30 min.
    assert lines[-1] == "Estimated end: 2026-03-02 11:30 UTC (in about 2 h 30 min) at ~100/h"


def test_status_shares_the_pace_and_has_no_estimate_while_paused(world: World) -> None:
    world.set(max_per_hour=1000, batch_size=10)  # 10 per minute: 600/h
    first = world.start("March", addresses("ann", 30))
    world.start("April", addresses("bob", 30))

    shared = run_cli(world, "status", str(first.id))
    pause_mass_email(world.session, first, world.clock)
    paused = run_cli(world, "status", str(first.id))

    assert shared.output.splitlines()[-1] == (
        "Estimated end: 2026-03-02 09:06 UTC (in about 6 min) at ~300/h,"
        " shared with 1 other mass email(s)"
    )
    assert paused.output.splitlines()[-1] == "No estimate while it is paused."
    assert "no mass email with id 99" in run_cli(world, "status", "99").output


def test_queue_retry_interrupted_from_the_command_line(world: World) -> None:
    mass_email = world.start("March", addresses("ann", 3))
    world.set(batch_size=2)
    claim_batch(world.session, "dead-runner", world.clock, world.runtime)
    world.clock.advance(timedelta(seconds=300))
    housekeeping(world.session, world.clock)

    result = run_cli(world, "queue", "retry-interrupted", str(mass_email.id))

    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"2 interrupted item(s) of mass email {mass_email.id} are queued again."
    )
    assert world.statuses(mass_email) == Counter({Q.QUEUED: 3})
    refused = run_cli(world, "queue", "retry-interrupted", "99")
    assert refused.exit_code == 1 and "no mass email with id 99" in refused.output


# ----------------------------------------------------------------- faults at our edge


class RaisingTransport:
    """A transport whose ``send`` raises: a bug in our own code, not an SMTP
    error (those come back as results)."""

    def send(self, message: bytes, envelope_from: str, recipient: str) -> SendResult:
        raise RuntimeError("transport bug")

    def close(self) -> None:
        pass


def test_a_transport_that_raises_leaves_the_item_in_doubt_for_the_lease(world: World) -> None:
    world.set(smtp_connections=1)
    mass_email = world.start("March", ["ann@example.org"])

    result = world.tick(transport_factory=RaisingTransport)

    assert (result.in_doubt, result.sent, result.retried) == (1, 0, 0)
    assert world.item("ann@example.org").status == Q.SENDING
    [attempt] = world.attempts_of("ann@example.org")
    assert attempt.finished_at is None and "transport bug" in attempt.reply
    world.clock.advance(timedelta(seconds=300))
    assert world.tick().interrupted == 1
    assert world.statuses(mass_email) == Counter({Q.INTERRUPTED: 1})
    [attempt] = world.attempts_of("ann@example.org")
    assert attempt.outcome == "interrupted"


def test_a_mass_email_whose_messages_cannot_be_built_is_paused_with_the_reason(
    world: World,
) -> None:
    mass_email = world.start("March", addresses("ann", 2))
    mass_email.campaign.sender_profile_id = None
    world.session.commit()

    result = world.tick()

    assert (result.released, result.paused) == (2, [mass_email.id])
    assert world.status_of(mass_email) == M.PAUSED
    [error] = world.log(CampaignLogEvent.ERROR)
    assert "has no sender profile" in error.detail["reason"]
    assert all(item.attempts == 0 for item in world.items(mass_email))


# ----------------------------------------------------------------- several runners at once


def test_runners_in_parallel_split_the_queue_without_duplicates_under_one_quota(
    world: World,
) -> None:
    world.set(max_per_hour=150, batch_size=20, smtp_connections=2)
    mass_email = world.start("March", addresses("ann", 120))
    world.start("April", addresses("bob", 80))
    assert world.run_in_parallel(runners=3, ticks=12) == []
    assert len(world.received()) == 150  # the hour's quota, and not one more
    world.assert_never_twice()
    world.clock.advance(QUOTA_WINDOW)
    while world.tick().claimed:
        pass
    assert len(world.received()) == 200
    assert world.statuses(mass_email) == Counter({Q.SENT: 120})
    world.assert_never_twice()


# ----------------------------------------------------------------- recording results in groups


def test_accepted_replies_are_recorded_together_and_a_late_one_only_noted(world: World) -> None:
    world.set(batch_size=1)
    world.start("March", ["ann@example.org", "bob@example.org", "cem@example.org"])
    [ann] = claim_batch(world.session, "runner-1", world.clock, world.runtime)
    world.clock.advance(timedelta(seconds=200))
    world.set(batch_size=2)
    later = claim_batch(world.session, "runner-1", world.clock, world.runtime)
    world.clock.advance(timedelta(seconds=100))
    assert housekeeping(world.session, world.clock) == 1  # ann's lease ran out
    world.session.commit()
    replies = [
        (claim, SendResult(SendOutcome.ACCEPTED, 250, f"2.0.0 Ok: queued as Q{n}"))
        for n, claim in enumerate([ann, *later])
    ]

    outcomes = record_accepted(world.session, replies, world.clock, world.runtime)

    assert outcomes == [ItemOutcome.LATE, ItemOutcome.SENT, ItemOutcome.SENT]
    ann_item = world.item("ann@example.org")
    assert ann_item.status == Q.INTERRUPTED  # in doubt stays in doubt, reply kept
    assert ann_item.last_reply == "accepted after the lease expired: 2.0.0 Ok: queued as Q0"
    for n, address in enumerate(["bob@example.org", "cem@example.org"], start=1):
        item = world.item(address)
        assert (item.status, item.sent_at, item.lease_expires_at) == (
            Q.SENT,
            world.clock.now(),
            None,
        )
        assert (item.last_code, item.last_reply) == (250, f"2.0.0 Ok: queued as Q{n}")
    for address in ["ann@example.org", "bob@example.org", "cem@example.org"]:
        [attempt] = world.attempts_of(address)
        assert (attempt.outcome, attempt.code, attempt.finished_at) == (
            "accepted",
            250,
            world.clock.now(),
        )
    sent_log = world.log(CampaignLogEvent.SENT)
    assert sorted(entry.queue_item_id for entry in sent_log) == sorted(
        claim.queue_item_id for claim in later
    )
    assert {entry.detail["reply"] for entry in sent_log} == {
        "2.0.0 Ok: queued as Q1",
        "2.0.0 Ok: queued as Q2",
    }


REFUSE_SENT_LOG = {
    "sqlite": [
        "CREATE TRIGGER refuse_sent BEFORE INSERT ON campaign_log FOR EACH ROW "
        "WHEN NEW.event = 'sent' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_sent() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.event = 'sent' THEN RAISE EXCEPTION 'refused by the test'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse_sent BEFORE INSERT ON campaign_log FOR EACH ROW "
        "EXECUTE FUNCTION refuse_sent()",
    ],
}
ALLOW_SENT_LOG = {
    "sqlite": ["DROP TRIGGER refuse_sent"],
    "postgresql": ["DROP TRIGGER refuse_sent ON campaign_log", "DROP FUNCTION refuse_sent()"],
}


def run_sql(world: World, statements: dict[str, list[str]]) -> None:
    for statement in statements[world.session.get_bind().dialect.name]:
        world.session.execute(text(statement))
    world.session.commit()


def test_replies_that_cannot_be_recorded_leave_their_items_to_the_lease(world: World) -> None:
    world.set(smtp_connections=1)
    mass_email = world.start("March", addresses("ann", 6))
    run_sql(world, REFUSE_SENT_LOG)  # the database refuses the results' transaction
    try:
        with pytest.raises(DBAPIError, match="refused by the test"):
            world.tick()
    finally:
        run_sql(world, ALLOW_SENT_LOG)

    # Each item is either in doubt (its message arrived, its result was
    # never committed) or back in the queue, unsent and uncharged.
    received = set(world.received())
    items = world.items(mass_email)
    assert received and all(item.status == Q.SENDING for item in items if item.email in received)
    unsent = [item for item in items if item.email not in received]
    assert all((item.status, item.attempts) == (Q.QUEUED, 0) for item in unsent)
    world.clock.advance(timedelta(seconds=300))
    result = world.tick()

    assert (result.interrupted, result.sent) == (len(received), len(unsent))
    counts = world.statuses(mass_email)
    assert counts == Counter({Q.INTERRUPTED: len(received), Q.SENT: len(unsent)})
    assert all(count == 1 for count in world.received().values())  # nothing resent
