"""Applying bounce results (SPEC §5): from a returned message, or a relay's
webhook, to the queue item, the contact, the suppression list and the
campaign log.

``apply_report`` applies one classified ``BounceReport`` whose queue item
is known (the poller's messages and the relays' webhooks both end here):

- **hard** → the queue item ``bounced`` (``bounce_kind`` hard, through
  ``queue_status``), the address suppressed (reason hard bounce) and the
  contact's address marked ``invalid`` when it still has it
  (``dispatch_results.suppress_hard_bounce``, as a 5xx to RCPT at send
  time does); campaign log ``bounced_hard``.
- **soft** → campaign log ``bounced_soft``; the item becomes ``bounced``
  (soft) unless the report only says delivery is delayed (RFC 3464 §2.3.3
  ``Action: delayed``: the message may still arrive). When the address has
  ``soft_bounce_threshold`` soft bounces within ``soft_bounce_window_days``
  (runtime settings, 3 in 30 by default), counting at most one per queue
  item, it is suppressed (reason soft threshold).
- **complaint** (an ARF spam report, RFC 5965) → campaign log ``complaint``
  (the "spam report" event), the item ``spam_report``, the contact opted
  out (``engagement.opt_out``, source ``complaint``, which a recipient's
  opt-back-in link cannot undo) and the address suppressed (reason
  complaint).
- **autoreply** (RFC 3834) → campaign log ``autoreply``; not a bounce:
  nothing else changes.

Every campaign-log row carries, in its ``detail``, the kind, reason, status
code, diagnostic text, recipient, remote MTA and source; the row has the
item's contact, so it is also the contact's activity log.

**Once and only once:** each (queue item, kind, address) is applied once —
``bounce_events`` has a unique constraint on it, and the item's row is
locked while a report is applied — so the same bounce fetched twice, a
webhook retried, or a second bounce message for the same message neither
counts a soft bounce twice nor writes a second log row.

``process_message`` is the poller's entry point for one fetched message
(it does not commit: the poller commits, then moves the message):

1. It is recorded in ``bounce_messages``, unique on (Message-ID, SHA-256 of
   the bytes); a message recorded before is ``DUPLICATE`` and nothing is
   applied again.
2. It is parsed and classified (``bounce.read``).
3. A ``+unsubscribe-<token>`` address among its ``return_addresses``, on a
   message that is neither a bounce nor an automatic reply, is a
   ``List-Unsubscribe`` mailto request: a valid token opts the contact out
   as the web link does (``UNSUBSCRIBED``); an invalid one is ``FORGED``.
4. The queue item is found by VERP (``bounce.verp``) over the report's
   ``return_addresses``, most trustworthy first: the first valid address
   decides; a VERP-shaped address that does not verify, with no valid one,
   makes the message ``FORGED`` (kept for review, never applied). With VERP
   off in the settings, by the returned message's ``X-Sluice-Queue-Item``
   header, else the item id in its Message-ID (``<q<item>.<random>@…>``,
   written by ``composition``); both unsigned, so they must agree with each
   other and the item's address must be among the bounce's recipients when
   it names any. With VERP on, the unsigned header is never used: it would
   let a forged bounce mark any address.
5. A report with a queue item is applied (``APPLIED``; ``DUPLICATE`` when
   it had been applied already); a bounce, complaint or auto-reply without
   one is ``UNMATCHED``; anything else the parser understood is
   ``NOT_A_BOUNCE``, and a message it could make nothing of is
   ``UNRECOGNISED``. Every outcome is recorded on the message's row.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import bounce
from app.clock import Clock
from app.models import (
    BounceEvent,
    BounceKind,
    BounceMessage,
    CampaignLogEntry,
    CampaignLogEvent,
    MessageOutcome,
    QueueItem,
    QueueItemStatus,
    SuppressionReason,
)
from app.models.bounces import MESSAGE_ID_MAX_LENGTH, SUPPRESSION_SOURCE_MAX_LENGTH
from app.services import engagement, suppression
from app.services.bulk_sql import insert_ignoring_conflicts
from app.services.dispatch_results import suppress_hard_bounce
from app.services.engagement import OptOutSource
from app.services.queue_status import transition_if_allowed
from app.services.return_path import mailto_codec, verp_codec
from app.services.runtime_settings import RuntimeSettings, get_runtime_settings
from app.services.tokens import LinkSigner
from bounce.queue_ids import item_from_header, item_from_message_id
from bounce.report import BounceReport, RecipientReport, ReportKind
from bounce.verp import VerpCodec, VerpKind, first_verified
from config import Settings

__all__ = [
    "AppliedResult",
    "MessageOutcome",
    "ProcessedMessage",
    "apply_report",
    "process_message",
]

S = QueueItemStatus
DETAIL_TEXT_MAX_LENGTH = 1000
# The control characters a log detail never keeps (JSON and terminals).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# composition writes Message-ID: <q<item>.<16 hex>@<sending domain>>.

_LOG_EVENT = {
    ReportKind.HARD: CampaignLogEvent.BOUNCED_HARD,
    ReportKind.SOFT: CampaignLogEvent.BOUNCED_SOFT,
    ReportKind.COMPLAINT: CampaignLogEvent.COMPLAINT,
    ReportKind.AUTOREPLY: CampaignLogEvent.AUTOREPLY,
}


@dataclass(frozen=True)
class AppliedResult:
    """What ``apply_report`` did: ``applied`` is False when nothing changed
    (already applied, a test message, an unknown item, not a bounce);
    ``suppressed`` when the address was added to the suppression list now."""

    queue_item_id: int | None
    kind: ReportKind | None
    applied: bool
    suppressed: bool = False
    detail: str = ""
    already_applied: bool = False


@dataclass(frozen=True)
class ProcessedMessage:
    """What became of one fetched message (see the module's rules)."""

    outcome: MessageOutcome
    queue_item_id: int | None = None
    kind: ReportKind | None = None
    detail: str = ""

    @property
    def keep_for_review(self) -> bool:
        """Whether a person should look at it: the poller moves these to the
        ``Unparsed`` folder, the rest to ``Processed``."""
        return self.outcome in {MessageOutcome.FORGED, MessageOutcome.UNRECOGNISED}


# ----------------------------------------------------------------- applying a report


def apply_report(
    session: Session,
    report: BounceReport,
    *,
    clock: Clock,
    source: str,
    runtime: RuntimeSettings | None = None,
) -> AppliedResult:
    """Apply ``report`` to its queue item (see the module's rules); flushes,
    the caller commits. ``source`` says where the report came from, for the
    log and the suppression list ("bounce message <id>", "webhook ses").
    Raises ``ValueError`` for a report without a queue item id."""
    item_id, kind = report.queue_item_id, report.kind
    if item_id is None:
        raise ValueError("a report is applied to a known queue item; this one has none")
    if kind is None:
        return AppliedResult(item_id, None, False, detail="not a bounce, complaint or auto-reply")
    if engagement.is_test_item(item_id):
        return AppliedResult(item_id, kind, False, detail="a test message: nothing is recorded")
    item = session.get(QueueItem, item_id, with_for_update=True, populate_existing=True)
    if item is None:
        return AppliedResult(item_id, kind, False, detail=f"no queue item {item_id}")
    applying = _Applying(
        session, item, report, kind, clock, source, runtime or get_runtime_settings(session)
    )
    if not applying.record_event():
        detail = f"{kind} already applied to this item"
        return AppliedResult(item_id, kind, False, detail=detail, already_applied=True)
    suppressed = _APPLY[kind](applying)
    applying.log()
    session.flush()
    return AppliedResult(item_id, kind, True, suppressed, detail=f"{kind} applied")


@dataclass(frozen=True)
class _Applying:
    """One report being applied to its locked queue item."""

    session: Session
    item: QueueItem
    report: BounceReport
    kind: ReportKind
    clock: Clock
    source: str
    runtime: RuntimeSettings

    def record_event(self) -> bool:
        """The (item, kind, address) row of ``bounce_events``; False when it
        exists (applied before). A hard bounce already recorded at send time
        (a 5xx to RCPT leaves the item ``bounced`` hard) counts as applied."""
        item, report = self.item, self.report
        if (
            self.kind is ReportKind.HARD
            and item.status == S.BOUNCED
            and item.bounce_kind == BounceKind.HARD
        ):
            return False
        statement = (
            insert_ignoring_conflicts(self.session, BounceEvent)
            .values(
                queue_item_id=item.id,
                address_lower=item.email.lower(),
                kind=self.kind,
                reason=(report.reason or "")[:50],
                status=(report.status or "")[:20],
                occurred_at=self.clock.now(),
                source=self.source[:SUPPRESSION_SOURCE_MAX_LENGTH],
            )
            .returning(BounceEvent.id)
        )
        return self.session.execute(statement).first() is not None

    def log(self) -> None:
        """The campaign-log row, with everything the report says."""
        report, item = self.report, self.item
        recipient = _first_recipient(report)
        detail = {
            "kind": self.kind.value,
            "reason": _clean(report.reason),
            "status": _clean(report.status),
            "diagnostic": _clean(report.diagnostic),
            "recipient": _clean(report.recipient),
            "remote_mta": _clean(recipient.remote_mta) if recipient else None,
            "action": _clean(recipient.action) if recipient else None,
            "source": _clean(self.source),
        }
        if self.kind is ReportKind.COMPLAINT:
            detail["event"] = "spam report"
        self.session.add(
            CampaignLogEntry(
                mass_email_id=item.mass_email_id,
                queue_item_id=item.id,
                contact_id=item.contact_id,
                event=_LOG_EVENT[self.kind],
                occurred_at=self.clock.now(),
                detail={key: value for key, value in detail.items() if value is not None},
            )
        )


def _hard(applying: _Applying) -> bool:
    session, item, clock = applying.session, applying.item, applying.clock
    if transition_if_allowed(item, S.BOUNCED, clock) or item.status == S.BOUNCED:
        item.bounce_kind = BounceKind.HARD
    added = not suppression.is_suppressed(session, item.email)
    reason = _reason_text(applying.report)
    suppress_hard_bounce(session, item, reason, clock, source=applying.source)
    return added


def _soft(applying: _Applying) -> bool:
    session, item, clock, runtime = (
        applying.session,
        applying.item,
        applying.clock,
        applying.runtime,
    )
    if not _only_delayed(applying.report) and transition_if_allowed(item, S.BOUNCED, clock):
        item.bounce_kind = BounceKind.SOFT
    window = timedelta(days=runtime.soft_bounce_window_days)
    count = _soft_bounces_since(session, item.email.lower(), clock.now() - window)
    if count < runtime.soft_bounce_threshold:
        return False
    days = runtime.soft_bounce_window_days
    why = f"{count} soft bounces in {days} days, the last: {applying.source}"
    return suppression.add(session, item.email, SuppressionReason.SOFT_THRESHOLD, why, clock)


def _complaint(applying: _Applying) -> bool:
    session, item, clock = applying.session, applying.item, applying.clock
    # The spam report first: engagement.opt_out then leaves the status as
    # it is (spam_report is final) and logs the opt-out with its source.
    transition_if_allowed(item, S.SPAM_REPORT, clock)
    engagement.opt_out(session, item.id, OptOutSource.COMPLAINT, clock)
    reason = SuppressionReason.COMPLAINT
    return suppression.add(session, item.email, reason, applying.source, clock)


def _autoreply(applying: _Applying) -> bool:
    return False  # logged only: an auto-reply is no bounce (RFC 3834)


_APPLY: dict[ReportKind, Callable[[_Applying], bool]] = {
    ReportKind.HARD: _hard,
    ReportKind.SOFT: _soft,
    ReportKind.COMPLAINT: _complaint,
    ReportKind.AUTOREPLY: _autoreply,
}


def _soft_bounces_since(session: Session, address_lower: str, since: Any) -> int:
    """Soft bounces of the address recorded since ``since``, one per item."""
    return (
        session.scalar(
            select(func.count())
            .select_from(BounceEvent)
            .where(
                BounceEvent.address_lower == address_lower,
                BounceEvent.kind == ReportKind.SOFT,
                BounceEvent.occurred_at >= since,
            )
        )
        or 0
    )


def _first_recipient(report: BounceReport) -> RecipientReport | None:
    for recipient in report.recipients:
        if recipient.kind is not None or recipient.action in {"failed", "delayed"}:
            return recipient
    return report.recipients[0] if report.recipients else None


def _only_delayed(report: BounceReport) -> bool:
    recipient = _first_recipient(report)
    return recipient is not None and (recipient.action or "").lower() == "delayed"


def _clean(text: str | None) -> str | None:
    if not text:
        return None
    return _CONTROL.sub(" ", text).strip()[:DETAIL_TEXT_MAX_LENGTH] or None


def _reason_text(report: BounceReport) -> str:
    """The contact's ``email_status_reason`` after a hard bounce."""
    parts = [report.status, _clean(report.diagnostic) or report.reason]
    return " ".join(part for part in parts if part) or "hard bounce"


# ----------------------------------------------------------------- matching


@dataclass(frozen=True)
class Match:
    """Which queue item a report answers, or why none: ``forged`` when a
    VERP-shaped address failed to verify."""

    queue_item_id: int | None
    forged: bool = False
    detail: str = ""


def match_by_verp(report: BounceReport, codec: VerpCodec) -> Match:
    """The first verified VERP address among the report's return addresses
    (most trustworthy first); forged when only forgeries were found."""
    result, address = first_verified(codec, report.return_addresses)
    if result.kind is VerpKind.VALID:
        return Match(result.item_id, detail=f"VERP {_clean(address)}")
    if result.kind is VerpKind.FORGED:
        return Match(None, forged=True, detail=f"forged VERP address {_clean(address)}")
    return Match(None, detail="no VERP address")


def match_by_headers(session: Session, report: BounceReport) -> Match:
    """With VERP off: the returned message's ``X-Sluice-Queue-Item``, else
    the item in its Message-ID; both must agree when both are there, and the
    item's address must be among the bounce's recipients when it names any
    (the header is unsigned)."""
    from_header = item_from_header(report.returned_queue_item_header)
    from_message_id = item_from_message_id(report.returned_message_id)
    if from_header and from_message_id and from_header != from_message_id:
        return Match(None, detail="the returned message's header and Message-ID disagree")
    item_id = from_header or from_message_id
    if item_id is None:
        return Match(None, detail="no queue item header or Sluice Message-ID")
    named = {address.lower() for address in _recipients(report)}
    item_address = session.scalar(select(QueueItem.email).where(QueueItem.id == item_id))
    if item_address is None:
        return Match(None, detail=f"no queue item {item_id}")
    if named and item_address.lower() not in named:
        return Match(None, detail=f"queue item {item_id} was not sent to the bounced recipient")
    return Match(item_id, detail="returned message's headers")


def _recipients(report: BounceReport) -> set[str]:
    addresses = {r.recipient for r in report.recipients if r.recipient}
    if report.recipient:
        addresses.add(report.recipient)
    return {address.strip() for address in addresses}


# ----------------------------------------------------------------- one fetched message


@dataclass(frozen=True)
class _Mailbox:
    """The codecs of the bounce mailbox under the current settings."""

    verp: VerpCodec | None
    mailto: VerpCodec | None
    verp_enabled: bool

    @classmethod
    def of(cls, settings: Settings, runtime: RuntimeSettings, secret_key: str) -> _Mailbox:
        # Recognising VERP addresses does not depend on verp_enabled (mail
        # sent before it was switched off still bounces): only the fallback
        # to the unsigned headers does.
        try:
            codec = verp_codec(
                settings.bounce_address, runtime.bounce_domain, secret_key, enabled=True
            )
        except ValueError:
            codec = None
        return cls(codec, mailto_codec(settings.bounce_address, secret_key), runtime.verp_enabled)


def process_message(
    session: Session,
    raw: bytes,
    *,
    clock: Clock,
    secret_key: str,
    settings: Settings,
    runtime: RuntimeSettings | None = None,
    reader: Callable[[bytes], BounceReport] | None = None,
) -> ProcessedMessage:
    """Record, read, match and apply one fetched message (see the module's
    rules); flushes, never commits. ``reader`` defaults to ``bounce.read``."""
    report = (reader or bounce.read)(raw)
    row = _record_message(session, raw, report.message_id, clock)
    if row is None:
        return ProcessedMessage(
            MessageOutcome.DUPLICATE, detail="this message was processed before"
        )
    runtime = runtime or get_runtime_settings(session)
    mailbox = _Mailbox.of(settings, runtime, secret_key)
    processing = _Processing(session, clock, mailbox, secret_key, runtime)
    result = _process(processing, report, row)
    row.outcome = result.outcome
    row.kind = result.kind
    row.queue_item_id = result.queue_item_id if _item_exists(session, result) else None
    row.detail = result.detail[:DETAIL_TEXT_MAX_LENGTH]
    session.flush()
    return result


def _item_exists(session: Session, result: ProcessedMessage) -> bool:
    return (
        result.queue_item_id is not None
        and session.get(QueueItem, result.queue_item_id) is not None
    )


def _record_message(
    session: Session, raw: bytes, message_id: str | None, clock: Clock
) -> BounceMessage | None:
    """The message's ``bounce_messages`` row, or None when it was recorded
    before (the unique constraint decides, also between two pollers)."""
    statement = (
        insert_ignoring_conflicts(session, BounceMessage)
        .values(
            message_id=(_clean(message_id) or "")[:MESSAGE_ID_MAX_LENGTH],
            content_hash=hashlib.sha256(raw).hexdigest(),
            size=len(raw),
            received_at=clock.now(),
            outcome=MessageOutcome.UNRECOGNISED,
            detail="",
        )
        .returning(BounceMessage.id)
    )
    inserted = session.execute(statement).scalar()
    return None if inserted is None else session.get(BounceMessage, inserted)


@dataclass(frozen=True)
class _Processing:
    """One fetched message being processed."""

    session: Session
    clock: Clock
    mailbox: _Mailbox
    secret_key: str
    runtime: RuntimeSettings


def _process(processing: _Processing, report: BounceReport, row: BounceMessage) -> ProcessedMessage:
    session, clock, mailbox = processing.session, processing.clock, processing.mailbox
    kind = report.kind
    if kind is None:
        unsubscribe = _unsubscribe_request(session, report, mailbox, processing.secret_key, clock)
        if unsubscribe is not None:
            return unsubscribe
        if report.problems and not report.is_bounce and not report.recipients:
            detail = "; ".join(report.problems)[:500]
            return ProcessedMessage(MessageOutcome.UNRECOGNISED, detail=detail)
        return ProcessedMessage(MessageOutcome.NOT_A_BOUNCE, detail="not a bounce")
    match = _match(session, report, mailbox)
    if match.forged:
        return ProcessedMessage(MessageOutcome.FORGED, kind=kind, detail=match.detail)
    if match.queue_item_id is None:
        return ProcessedMessage(MessageOutcome.UNMATCHED, kind=kind, detail=match.detail)
    applied = apply_report(
        session,
        replace(report, queue_item_id=match.queue_item_id),
        clock=clock,
        source=f"bounce message {row.id}",
        runtime=processing.runtime,
    )
    if not applied.applied:
        outcome = MessageOutcome.DUPLICATE if applied.already_applied else MessageOutcome.UNMATCHED
        return ProcessedMessage(outcome, match.queue_item_id, kind, applied.detail)
    detail = f"{applied.detail} ({match.detail})"
    return ProcessedMessage(MessageOutcome.APPLIED, match.queue_item_id, kind, detail)


def _match(session: Session, report: BounceReport, mailbox: _Mailbox) -> Match:
    if mailbox.verp is not None:
        found = match_by_verp(report, mailbox.verp)
        if found.queue_item_id is not None or found.forged or mailbox.verp_enabled:
            return found
    if mailbox.verp_enabled:
        return Match(None, detail="no VERP address (no bounce address configured)")
    return match_by_headers(session, report)


def _unsubscribe_request(
    session: Session,
    report: BounceReport,
    mailbox: _Mailbox,
    secret_key: str,
    clock: Clock,
) -> ProcessedMessage | None:
    """A ``List-Unsubscribe`` mailto request (RFC 2369) among the report's
    addresses: the contact opted out (as the web link does), or forged."""
    codecs = [codec for codec in (mailbox.mailto, mailbox.verp) if codec is not None]
    signer = LinkSigner(secret_key)
    for address in report.return_addresses:
        for codec in codecs:
            result = codec.decode(address)
            if result.kind is not VerpKind.UNSUBSCRIBE or result.token is None:
                continue
            item_id = signer.verify_mailto(result.token)
            if item_id is None:
                return ProcessedMessage(
                    MessageOutcome.FORGED, detail=f"invalid unsubscribe token in {_clean(address)}"
                )
            if engagement.is_test_item(item_id) or session.get(QueueItem, item_id) is None:
                return ProcessedMessage(
                    MessageOutcome.UNMATCHED, detail=f"unsubscribe request for item {item_id}"
                )
            changed = engagement.opt_out(session, item_id, OptOutSource.MAILTO, clock)
            detail = "opted out by mail" if changed else "already opted out"
            return ProcessedMessage(MessageOutcome.UNSUBSCRIBED, item_id, None, detail)
    return None
