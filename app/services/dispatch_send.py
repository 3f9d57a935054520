"""One dispatcher tick: housekeeping, claim, send over several connections,
commit each result, complete finished mass emails.

Rules (besides those of ``app.services.dispatch`` and
``app.services.dispatch_results``):

- **One thread builds and sends.** The tick's thread builds each message
  (one ``MessageFactory`` per mass email per tick) and submits it to a
  ``TransportPool`` of ``smtp_connections`` connections, driven by an event
  loop in the same thread: while a connection waits for its reply, the next
  message is built. It hands accepted replies to the results writer
  (``dispatch_writer``: a thread with its own session that commits every
  reply waiting, one transaction per group) and records any other result
  itself, at once. A SQLAlchemy session is never shared between threads,
  and a result is still durable right after its reply. At most
  ``IN_FLIGHT_PER_CONNECTION`` messages per connection wait built in
  memory, so memory stays flat whatever the batch size.
- **Send deadline.** A message is not handed to SMTP later than
  ``SEND_MARGIN`` (at most half the lease) before its claim's lease
  expires, so a conversation still running when housekeeping may call the
  item interrupted is unlikely; one that does is recorded as late.
- **Per-domain pacing** (``app.services.pacing``): claims are handed over
  in claim order under each domain group's connection cap
  (``app.services.dispatch_schedule``). A rate-limit reply about the
  recipient's provider (scope ``domain``) throttles that group: the
  message is charged like any ``temporary`` result, the group's claims not
  yet in a conversation are released without charging an attempt, and the
  other groups go on in the same tick.
- **The tick ends early** on an authentication failure, a 421 reply about
  the relay itself (the relay is closing the channel, RFC 5321 §3.8; scope
  ``relay``) or ``CONNECTION_FAILURES_TO_STOP`` connection failures in a row
  (no reply at all: refused, dropped, timed out). Conversations under way
  finish and are recorded; the claims not yet handed over are released to
  ``queued`` without charging an attempt (their ledger rows stay, so the
  quota errs on the safe side). The failure that ended the tick is charged
  like any ``temporary`` result, except an authentication failure, which is
  not the message's fault.
- **Authentication failure** pauses every mass email in progress (the relay
  serves them all) and writes the relay's reply to each one's campaign log
  (event ``error``, no queue item, ``detail.scope = "mass_email"``,
  ``detail.action = "paused"``); a person fixes the credentials and
  resumes. A mass email whose messages cannot be built at all (no sender
  profile, empty footer settings, content that does not compile) is paused
  the same way, its claims released.
- **In doubt.** A transport that raises leaves its item ``sending``; the
  lease turns it ``interrupted``. Nothing in doubt is retried here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import (
    CampaignLogEntry,
    CampaignLogEvent,
    DomainGroup,
    MassEmail,
    MassEmailStatus,
    QueueItemStatus,
)
from app.services import mass_email_status
from app.services.composition import DkimKey
from app.services.dispatch import (
    ID_SLICE,
    Claim,
    claim_batch,
    complete_finished,
    housekeeping,
)
from app.services.dispatch_results import (
    ContactSnapshot,
    ItemOutcome,
    check_contact,
    load_contacts,
    record_in_doubt,
    record_result,
    release,
    skip,
)
from app.services.dispatch_schedule import ClaimSchedule
from app.services.dispatch_writer import ResultWriter
from app.services.messages import MessageError, MessageFactory, RecipientError
from app.services.pacing import ReplyScope, connection_caps, reply_scope, throttle_group
from app.services.runtime_settings import RuntimeSettings
from app.services.suppression import suppressed_among
from app.services.transport import SendOutcome, SendResult
from app.services.transport_pool import JobResult, SendJob, TransportFactory, TransportPool
from config import Settings

log = logging.getLogger(__name__)

CONNECTION_FAILURES_TO_STOP = 3
IN_FLIGHT_PER_CONNECTION = 2
SEND_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True)
class MessageConfig:
    """What building messages needs from the application: boot settings
    (bounce address), the link-signing secret and the DKIM key."""

    settings: Settings
    secret_key: str
    dkim_key: DkimKey | None


@dataclass
class TickResult:
    """What one tick did, counted per item."""

    interrupted: int = 0  # expired leases found by housekeeping
    claimed: int = 0
    sent: int = 0
    retried: int = 0  # temporary failure, queued again after back-off
    failed: int = 0
    bounced: int = 0
    skipped: int = 0  # send-time checks: unsubscribed, dropped, error
    released: int = 0  # claimed but not handed to SMTP
    in_doubt: int = 0
    late: int = 0
    completed: list[int] = field(default_factory=list)
    paused: list[int] = field(default_factory=list)
    stopped: str = ""  # why the tick ended early, if it did
    # Domain groups this tick throttled after a rate-limit reply, and until when.
    throttled: dict[DomainGroup, datetime] = field(default_factory=dict)

    def count(self, outcome: ItemOutcome) -> None:
        attribute = {
            ItemOutcome.SENT: "sent",
            ItemOutcome.RETRY: "retried",
            ItemOutcome.FAILED: "failed",
            ItemOutcome.BOUNCED: "bounced",
            ItemOutcome.SKIPPED: "skipped",
            ItemOutcome.RELEASED: "released",
            ItemOutcome.LATE: "late",
        }[outcome]
        setattr(self, attribute, getattr(self, attribute) + 1)

    def counts(self) -> str:
        """What was claimed and what became of it."""
        return (
            f"claimed {self.claimed}: sent {self.sent}, retry later {self.retried}, "
            f"failed {self.failed}, bounced {self.bounced}, not sent {self.skipped}, "
            f"released {self.released}, in doubt {self.in_doubt}"
        )

    def describe(self) -> str:
        """One line for the job-run record."""
        line = self.counts()
        if self.completed:
            line += f"; completed mass email(s) {', '.join(map(str, self.completed))}"
        if self.stopped:
            line += f"; ended early: {self.stopped}"
        return line


def dispatch_tick(
    session: Session,
    transport_factory: TransportFactory,
    clock: Clock,
    runtime: RuntimeSettings,
    runner_id: str,
    *,
    config: MessageConfig,
) -> TickResult:
    """One tick (see the module's rules). Commits as it goes: whatever the
    session holds is committed first."""
    tally = TickResult()
    tally.interrupted = housekeeping(session, clock)
    session.commit()
    claims = claim_batch(session, runner_id, clock, runtime)
    tally.claimed = len(claims)
    if claims:
        _Portion(session, clock, runtime, config, tally).send(claims, transport_factory)
    tally.completed = complete_finished(session, clock)
    session.commit()
    return tally


def send_deadline_margin(runtime: RuntimeSettings) -> timedelta:
    return min(SEND_MARGIN, timedelta(seconds=runtime.lease_seconds / 2))


def pause_with_reason(session: Session, mass_email_id: int, reason: str, clock: Clock) -> bool:
    """Pause the mass email if it is in progress, with ``reason`` in its
    campaign log; commits. Returns whether it was paused."""
    mass_email = session.get(MassEmail, mass_email_id, with_for_update=True, populate_existing=True)
    if mass_email is None or mass_email.status != MassEmailStatus.IN_PROGRESS:
        session.commit()
        return False
    mass_email_status.transition(mass_email, MassEmailStatus.PAUSED, clock)
    session.add(
        CampaignLogEntry(
            mass_email_id=mass_email_id,
            queue_item_id=None,
            contact_id=None,
            event=CampaignLogEvent.ERROR,
            occurred_at=clock.now(),
            detail={"scope": "mass_email", "action": "paused", "reason": reason},
        )
    )
    session.commit()
    log.error("mass email %s paused: %s", mass_email_id, reason)
    return True


class _Portion:
    """The sending of one tick's claims."""

    def __init__(
        self,
        session: Session,
        clock: Clock,
        runtime: RuntimeSettings,
        config: MessageConfig,
        tally: TickResult,
    ) -> None:
        self.session = session
        self.clock = clock
        self.runtime = runtime
        self.config = config
        self.tally = tally
        self.claims: dict[int, Claim] = {}
        self.schedule = ClaimSchedule([], {})
        self.contacts: dict[int, ContactSnapshot | None] = {}
        # Addresses (lower-cased) looked up on the suppression list, and
        # those found there: a slice of claims at a time, one query.
        self.suppression_checked: set[str] = set()
        self.suppressed: set[str] = set()
        self.to_withdraw: dict[DomainGroup, str] = {}  # throttled group -> reason
        self.handled: set[int] = set()
        self.factories: dict[int, MessageFactory | None] = {}
        self.unbuildable: dict[int, str] = {}
        self.auth_error = ""
        self.connection_failures = 0
        self.margin = send_deadline_margin(runtime)

    def send(self, claims: list[Claim], transport_factory: TransportFactory) -> None:
        self.claims = {claim.queue_item_id: claim for claim in claims}
        self.schedule = ClaimSchedule(claims, connection_caps(self.runtime))
        self.writer = ResultWriter(self.session, self.clock, self.runtime)
        try:
            self._send(transport_factory)
        finally:
            outcomes, failure = self.writer.close()  # every accepted reply committed
        for outcome in outcomes:
            self.tally.count(outcome)
        self._finish()
        if failure is not None:
            raise failure  # the unrecorded items stay sending: the lease interrupts them

    def _send(self, transport_factory: TransportFactory) -> None:
        connections = self.runtime.smtp_connections
        in_flight = connections * IN_FLIGHT_PER_CONNECTION
        with TransportPool(transport_factory, connections, self.clock) as pool:
            while not self.tally.stopped:
                claim = self.schedule.next_claim() if pool.pending < in_flight else None
                if claim is None:  # all connections busy, or every group at its cap
                    if not pool.pending:
                        break  # nothing waits
                    self._collect(pool, block=True)
                    continue
                job = self._job(claim, self._contact(claim))
                if job is not None:
                    pool.submit(job)
                    self.schedule.started(claim)
                self._collect(pool, block=False)
            while pool.pending:
                self._collect(pool, block=True)

    # ------------------------------------------------------------ before SMTP

    def _contact(self, claim: Claim) -> ContactSnapshot | None:
        """The claim's contact (None: deleted), loaded with those of the next
        claims of its group, ``ID_SLICE`` at a time; each is used once."""
        if claim.contact_id is None:
            return None
        if claim.contact_id not in self.contacts:
            upcoming = [claim, *self.schedule.upcoming(claim.domain_group, ID_SLICE - 1)]
            self._load_contacts(upcoming)
        return self.contacts.pop(claim.contact_id, None)

    def _load_contacts(self, chunk: Iterable[Claim]) -> None:
        chunk = list(chunk)
        ids = {
            claim.contact_id
            for claim in chunk
            if claim.contact_id is not None and claim.contact_id not in self.contacts
        }
        self.contacts.update(dict.fromkeys(ids))  # deleted ones stay None
        self.contacts.update(load_contacts(self.session, list(ids)))
        self._check_suppressed(chunk)

    def _check_suppressed(self, chunk: Iterable[Claim]) -> None:
        addresses = {claim.email.lower() for claim in chunk} - self.suppression_checked
        if addresses:
            self.suppressed.update(suppressed_among(self.session, addresses))
            self.suppression_checked.update(addresses)

    def _is_suppressed(self, claim: Claim) -> bool:
        if claim.email.lower() not in self.suppression_checked:
            self._check_suppressed([claim])
        return claim.email.lower() in self.suppressed

    def _job(self, claim: Claim, contact: ContactSnapshot | None) -> SendJob | None:
        """The claim's message, or None when it is not to be sent now (a
        send-time check refused it, or its mass email cannot be built)."""
        if claim.mass_email_id in self.unbuildable:
            return None
        problem = check_contact(self.session, claim, contact, suppressed=self._is_suppressed(claim))
        if problem is not None:
            self._skip(claim, *problem)
            return None
        factory = self._factory(claim.mass_email_id)
        if factory is None:
            return None
        try:
            message = factory.build(
                queue_item_id=claim.queue_item_id,
                contact=contact,
                to_address=claim.email,
                now=self.clock.now(),
            )
        except RecipientError as error:
            self._skip(claim, QueueItemStatus.ERROR, str(error))
            return None
        except MessageError as error:
            self.unbuildable[claim.mass_email_id] = str(error)
            return None
        return SendJob(
            key=claim.queue_item_id,
            message=message.data,
            envelope_from=message.envelope_from,
            recipient=message.recipient,
            deadline=claim.lease_expires_at - self.margin,
            dot_lines=message.dot_lines,
        )

    def _factory(self, mass_email_id: int) -> MessageFactory | None:
        if mass_email_id not in self.factories:
            mass_email = self.session.get(MassEmail, mass_email_id)
            factory = None
            try:
                if mass_email is None:  # mass emails are never deleted
                    raise MessageError(f"mass email {mass_email_id} vanished")
                factory = MessageFactory.for_mass_email(
                    self.session,
                    mass_email,
                    runtime=self.runtime,
                    settings=self.config.settings,
                    secret_key=self.config.secret_key,
                    dkim_key=self.config.dkim_key,
                )
            except MessageError as error:
                self.unbuildable[mass_email_id] = str(error)
            self.factories[mass_email_id] = factory
        return self.factories[mass_email_id]

    def _skip(self, claim: Claim, status: QueueItemStatus, reason: str) -> None:
        self.handled.add(claim.queue_item_id)
        self.tally.count(skip(self.session, claim, status, reason, self.clock))

    # ------------------------------------------------------------ after SMTP

    def _collect(self, pool: TransportPool, *, block: bool) -> None:
        """Hand every accepted reply that has arrived to the writer thread;
        record any other result here, in the order they came."""
        for job_result in pool.completed(block=block):
            claim, result = self.claims[job_result.job.key], job_result.result
            if result is not None and result.accepted and not job_result.error:
                self.schedule.finished(claim)
                self.handled.add(claim.queue_item_id)
                self.writer.put(claim, result)
                self.connection_failures = 0
            else:
                self._handle(job_result)
            if self.writer.failure:
                self._stop(f"results cannot be recorded: {self.writer.failure}")
            if self.tally.stopped:
                pool.cancel_waiting()  # released in _finish
            elif self.to_withdraw:
                self._withdraw_throttled(pool)

    def _handle(self, job_result: JobResult) -> None:
        claim = self.claims[job_result.job.key]
        self.schedule.finished(claim)
        self.handled.add(claim.queue_item_id)
        result = job_result.result
        if job_result.error:
            record_in_doubt(self.session, claim, job_result.error)
            self.tally.in_doubt += 1
            return
        if result is None:  # its turn came after the send deadline
            self.tally.released += release(
                self.session, [claim], self.clock, "the claim's lease was running out"
            )
            self._stop("the claims' lease was running out")
            return
        if result.outcome is SendOutcome.AUTH_FAILED:
            self.auth_error = f"{result.code or ''} {result.reply}".strip()
            self.tally.released += release(
                self.session, [claim], self.clock, "SMTP authentication failed"
            )
            self._stop("SMTP authentication failed")
            return
        self.tally.count(record_result(self.session, claim, result, self.clock, self.runtime))
        scope = reply_scope(result)
        if scope is ReplyScope.DOMAIN:
            self._throttle(claim.domain_group, result)
        elif scope is ReplyScope.RELAY:
            self._stop(f"the relay is not taking mail now: {result.code} {result.reply}")
        if result.outcome is SendOutcome.TEMPORARY and result.code is None:
            self.connection_failures += 1
            if self.connection_failures >= CONNECTION_FAILURES_TO_STOP:
                self._stop(f"{self.connection_failures} connection failures in a row")
        else:
            self.connection_failures = 0

    # ------------------------------------------------------------ pacing

    def _throttle(self, group: DomainGroup, result: SendResult) -> None:
        """A rate limit of ``group``'s provider: throttle the group (unless
        it already is) and withdraw its claims not yet in a conversation."""
        throttle = throttle_group(self.session, group, result, self.clock, self.runtime)
        self.session.commit()
        if throttle is not None:
            self.tally.throttled[group] = throttle.throttled_until
            log.warning(
                "domain group %s throttled until %s: %s %s",
                group,
                throttle.throttled_until,
                result.code,
                result.reply,
            )
        self.to_withdraw[group] = f"domain group {group} is throttled: {result.code} {result.reply}"

    def _of_group(self, group: DomainGroup) -> Callable[[SendJob], bool]:
        return lambda job: self.claims[job.key].domain_group == group

    def _withdraw_throttled(self, pool: TransportPool) -> None:
        """Release the throttled groups' claims no connection has started,
        uncharged; the other groups go on."""
        for group, reason in self.to_withdraw.items():
            jobs = pool.cancel_waiting(self._of_group(group))
            withdrawn = [self.claims[job.key] for job in jobs]
            for claim in withdrawn:
                self.schedule.finished(claim)
            withdrawn += self.schedule.withdraw(group)
            self.handled.update(claim.queue_item_id for claim in withdrawn)
            self.tally.released += release(self.session, withdrawn, self.clock, reason)
        self.to_withdraw.clear()

    def _stop(self, reason: str) -> None:
        if not self.tally.stopped:
            self.tally.stopped = reason
            log.warning("dispatch tick ends early: %s", reason)

    def _finish(self) -> None:
        """Release what was never handed over; pause what cannot send."""
        unsent = [claim for key, claim in self.claims.items() if key not in self.handled]
        if unsent:
            reason = self.tally.stopped or "its mass email cannot be built"
            self.tally.released += release(self.session, unsent, self.clock, reason)
        paused: list[int] = []
        if self.auth_error:
            reason = f"SMTP authentication failed: {self.auth_error}"
            for mass_email_id in _in_progress(self.session):
                if pause_with_reason(self.session, mass_email_id, reason, self.clock):
                    paused.append(mass_email_id)
        for mass_email_id, error in self.unbuildable.items():
            reason = f"its messages cannot be built: {error}"
            if pause_with_reason(self.session, mass_email_id, reason, self.clock):
                paused.append(mass_email_id)
        self.tally.paused = paused


def _in_progress(session: Session) -> list[int]:
    return list(
        session.scalars(
            select(MassEmail.id)
            .where(MassEmail.status == MassEmailStatus.IN_PROGRESS)
            .order_by(MassEmail.id)
        )
    )
