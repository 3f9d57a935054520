"""Polling the bounce mailbox: ``bounce.mailbox`` reads it, a message
handler applies each message (``app.services.bounces.process_message``),
and this module keeps the checkpoint in the database.

Rules (docs/bounce-poller.md):

- **Result and checkpoint in one transaction.** For each message the
  handler applies it (without committing), the checkpoint past its UID is
  written, and both are committed together; only then is the message moved
  out of the polled folder. A poller stopped between the commit and the
  move leaves a message the next poll hands to the handler again, which
  counts it once (its record is unique per Message-ID and content hash).
- **One bad message never stops the batch.** A handler that raises has its
  work rolled back; the error and the checkpoint past the message are
  committed (``last_error``) and the message goes to ``Unparsed``. A
  database that cannot be reached is not the message's fault: the poll
  stops and the message stays where it is for the next poll.
- **One poller per mailbox.** A poll takes a lease on the mailbox's row
  (``locked_by``/``locked_until``), renews it with every message and
  releases it at the end; a runner that finds the lease held by another
  skips its poll. A lease whose runner died runs out after ``LEASE``.
- **The checkpoint is per mailbox** (the URL without its password): a new
  URL or folder starts from its folder's first message.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import BounceMailboxCheckpoint
from bounce.mailbox import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    Checkpoint,
    ConnectionReport,
    FetchedMessage,
    Folder,
    Mailbox,
    MailboxConfigError,
    PollStats,
    Sleeper,
    StopPoll,
    parse_imap_url,
    probe,
)

log = logging.getLogger(__name__)

# A poll renews its lease with every message; this long without one, the
# runner is taken for dead and another may poll.
LEASE = timedelta(minutes=10)
MAX_ERROR_TEXT = 2000


class AppliedMessage(Protocol):
    """What the poller needs from a handled message: whether a person
    should look at it (→ ``Unparsed``) or it is done (→ ``Processed``)."""

    @property
    def keep_for_review(self) -> bool: ...


# Apply one raw message in the session, without committing.
MessageHandler = Callable[[Session, bytes], AppliedMessage]


@dataclass(frozen=True)
class PollResult:
    mailbox: str  # the URL without its password
    stats: PollStats | None = None
    skipped: str = ""  # why nothing was polled (another runner holds the lease)

    @property
    def error(self) -> str:
        return self.stats.error if self.stats is not None else ""

    def describe(self) -> str:
        if self.stats is None:
            return f"{self.mailbox}: skipped, {self.skipped}"
        text = f"{self.mailbox}: {self.stats.describe()}"
        return f"{text}; ended early: {self.error}" if self.error else text


@dataclass(frozen=True)
class PollOptions:
    """How to talk to the server (tests shorten the waits)."""

    ssl_context: ssl.SSLContext | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    batch_size: int = DEFAULT_BATCH_SIZE
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_reconnects: int = 5
    sleeper: Sleeper = time.sleep


def poll_bounces(
    session: Session,
    imap_url: str,
    handler: MessageHandler,
    *,
    clock: Clock,
    runner: str,
    options: PollOptions | None = None,
) -> PollResult:
    """Poll the mailbox of ``imap_url`` once (see the module's rules).

    Raises ``MailboxConfigError`` for a malformed URL; everything the
    server does wrong is in the result's ``error`` and the row's
    ``last_error``."""
    options = options or PollOptions()
    url = parse_imap_url(imap_url)
    if not claim_mailbox(session, url.key, runner, clock):
        return PollResult(url.key, skipped="another runner is polling this mailbox")
    row = _row(session, url.key)
    start = Checkpoint(row.uidvalidity, row.last_uid)
    mailbox = Mailbox(
        url,
        ssl_context=options.ssl_context,
        timeout=options.timeout,
        batch_size=options.batch_size,
        max_message_bytes=options.max_message_bytes,
    )
    writer = _CheckpointWriter(session, url.key, runner, clock)
    try:
        stats = mailbox.poll(
            lambda message, checkpoint: writer.apply(handler, message, checkpoint),
            start,
            on_error=writer.record_failure,
            sleeper=options.sleeper,
            max_reconnects=options.max_reconnects,
        )
    except BaseException:
        # Interrupted (Ctrl-C, a bug): what was committed stays; the lease
        # is given back so the next poll need not wait for it to run out.
        writer.release()
        raise
    writer.finish(stats)
    if stats.error:
        log.warning("bounce poll of %s ended early: %s", url.key, stats.error)
    return PollResult(url.key, stats)


def claim_mailbox(session: Session, key: str, runner: str, clock: Clock) -> bool:
    """Take the mailbox's lease for ``runner`` (creating its row on first
    use) unless another runner holds one still running; commits."""
    now = clock.now()
    if session.scalar(select(BounceMailboxCheckpoint.id).filter_by(mailbox=key)) is None:
        session.add(
            BounceMailboxCheckpoint(
                mailbox=key, last_uid=0, last_error="", locked_by=runner, locked_until=now + LEASE
            )
        )
        try:
            session.commit()
            return True
        except IntegrityError:  # another runner created it a moment ago
            session.rollback()
    claimed = session.execute(
        update(BounceMailboxCheckpoint)
        .where(
            BounceMailboxCheckpoint.mailbox == key,
            or_(
                BounceMailboxCheckpoint.locked_by.is_(None),
                BounceMailboxCheckpoint.locked_by == runner,
                BounceMailboxCheckpoint.locked_until < now,
            ),
        )
        .values(locked_by=runner, locked_until=now + LEASE)
    )
    session.commit()
    return bool(getattr(claimed, "rowcount", 0))


def _row(session: Session, key: str) -> BounceMailboxCheckpoint:
    return session.execute(select(BounceMailboxCheckpoint).filter_by(mailbox=key)).scalar_one()


def _is_database_unavailable(error: BaseException) -> bool:
    """The database, not the message, is at fault: connection lost, server
    gone, lock timeouts."""
    return isinstance(error, OperationalError | InterfaceError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


class _CheckpointWriter:
    """The database side of one poll: each message's result with its
    checkpoint, failures, and the poll's end."""

    def __init__(self, session: Session, key: str, runner: str, clock: Clock) -> None:
        self.session = session
        self.key = key
        self.runner = runner
        self.clock = clock

    def apply(
        self, handler: MessageHandler, message: FetchedMessage, checkpoint: Checkpoint
    ) -> Folder:
        try:
            applied = handler(self.session, message.raw)
            self._store(checkpoint)
            self.session.commit()
        except Exception as error:
            self.session.rollback()
            if _is_database_unavailable(error):
                raise StopPoll(f"the database is unavailable: {error}") from error
            raise
        return Folder.UNPARSED if applied.keep_for_review else Folder.PROCESSED

    def record_failure(self, message: FetchedMessage, checkpoint: Checkpoint, problem: str) -> None:
        self.session.rollback()
        self._store(checkpoint, error=problem)
        self.session.commit()

    def finish(self, stats: PollStats) -> None:
        """The poll's end: checkpoint (a UIDVALIDITY seen on an empty folder
        too), the time, and ``last_error``: why the poll ended early, else
        the last message that failed in it, else cleared; lease released."""
        self.session.rollback()
        problem = stats.error or (stats.errors[-1] if stats.errors else "")
        self._store(stats.checkpoint, error=problem, finished=True)
        self.session.commit()

    def release(self) -> None:
        """Give the lease back, touching nothing else (best effort: the
        lease runs out on its own anyway)."""
        try:
            self.session.rollback()
            self.session.execute(
                update(BounceMailboxCheckpoint)
                .where(
                    BounceMailboxCheckpoint.mailbox == self.key,
                    BounceMailboxCheckpoint.locked_by == self.runner,
                )
                .values(locked_by=None, locked_until=None)
            )
            self.session.commit()
        except Exception:
            log.warning("could not release the lease of %s", self.key, exc_info=True)

    def _store(
        self, checkpoint: Checkpoint, *, error: str | None = None, finished: bool = False
    ) -> None:
        """Write the checkpoint and renew the lease (release it when
        ``finished``); ``error``: None leaves ``last_error``, "" clears it."""
        now = self.clock.now()
        values: dict[str, object] = {
            "uidvalidity": checkpoint.uidvalidity,
            "last_uid": checkpoint.last_uid,
            "locked_until": now + LEASE,
        }
        if error:
            values |= {"last_error": error[:MAX_ERROR_TEXT], "last_error_at": now}
        elif error == "":
            values["last_error"] = ""
        if finished:
            values |= {"last_poll_at": now, "locked_by": None, "locked_until": None}
        self.session.execute(
            update(BounceMailboxCheckpoint)
            .where(BounceMailboxCheckpoint.mailbox == self.key)
            .values(**values)
        )


def test_connection(
    imap_url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> ConnectionReport:
    """For the admin UI and ``sluice bounces test-connection``: connect, log
    in and look at the folder, changing nothing. Never raises: a malformed
    URL is a failed ``configuration`` step."""
    try:
        url = parse_imap_url(imap_url)
    except MailboxConfigError as error:
        return ConnectionReport("(not parsed)", failed_step="configuration", error=str(error))
    return probe(url, ssl_context=ssl_context, timeout=timeout)


# pytest would otherwise collect the function wherever a test imports it.
test_connection.__test__ = False  # type: ignore[attr-defined]
