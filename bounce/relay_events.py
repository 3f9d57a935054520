"""Delivery events from relays' webhooks, read into the facts Sluice acts on.

Each ``*_events`` function takes a provider's (already authenticated) JSON
and returns one ``RelayEvent`` per recipient event it reports; anything it
cannot use is skipped with the reason in ``RelayBatch.skipped``, never
raised: one odd event does not lose the rest of a batch.

How each provider's verdict becomes a kind (``RelayEvent.provider_kind``):

- Amazon SES (notification or event publishing): ``Bounce`` with
  ``bounceType`` ``Permanent`` is permanent, ``Transient``/``Undetermined``
  temporary; ``Complaint`` is a complaint; ``Delivery`` and others are not
  bounces.
- SendGrid: ``bounce`` (``type`` ``bounce``) permanent, ``bounce`` with
  ``type`` ``blocked`` and ``blocked`` temporary, ``dropped`` for a
  previously bounced or invalid address permanent, ``spamreport`` a
  complaint; ``deferred`` is not final and ``delivered`` not a bounce.
- Mailgun: ``failed`` with ``severity`` ``permanent``/``temporary``,
  ``complained``.
- Postmark: ``Bounce`` records by ``Type`` (``HardBounce``,
  ``BadEmailAddress`` permanent; ``SpamComplaint`` a complaint;
  ``AutoResponder`` an auto-reply; the rest temporary), ``SpamComplaint``
  records.

A permanent failure is not yet a hard bounce: ``bounce.relay_report``
decides with the same rule table as returned mail (``bounce.classify``),
so "permanent" for a content rejection stays soft. Where the relay itself
says the *address* is bad (SES ``NoEmail``/``Suppressed``, SendGrid
``Invalid Address``, Postmark ``HardBounce``/``BadEmailAddress``),
``address_invalid`` records it.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from bounce.classify import classify
from bounce.report import BounceReport, RecipientReport, ReportKind

_STATUS_IN_TEXT = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
MAX_EVENTS = 10_000  # per request: a relay batches at most a few thousand
MAX_TEXT = 2_000  # characters kept of a diagnostic


class ProviderKind(enum.StrEnum):
    """What the relay says happened to one recipient."""

    PERMANENT = "permanent"
    TEMPORARY = "temporary"
    COMPLAINT = "complaint"
    AUTOREPLY = "autoreply"


@dataclass(frozen=True)
class RelayEvent:
    provider: str
    provider_kind: ProviderKind
    recipient: str
    description: str  # the relay's own words for the event type, for the log
    status: str | None = None
    diagnostic: str | None = None
    address_invalid: bool = False
    message_id: str | None = None  # our Message-ID, when the relay reports it
    queue_item_header: str | None = None  # X-Sluice-Queue-Item, when reported
    event_id: str | None = None


@dataclass
class RelayBatch:
    events: list[RelayEvent] = field(default_factory=list)
    ignored: int = 0  # events that are not bounces (deliveries, opens, …)
    skipped: list[str] = field(default_factory=list)  # events that made no sense


def status_in(text: str | None) -> str | None:
    """The first enhanced status code (RFC 3463) in ``text``."""
    match = _STATUS_IN_TEXT.search(text or "")
    return ".".join(match.groups()) if match else None


# ------------------------------------------------------------------ helpers


def _text(value: object, limit: int = MAX_TEXT) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:limit]


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _items(value: object) -> list[object]:
    return list(value[:MAX_EVENTS]) if isinstance(value, list) else []


def _address(value: object) -> str | None:
    text = _text(value, 320)
    if text is None:
        return None
    text = text.strip("<>").strip()
    return text if "@" in text and not any(c.isspace() for c in text) else None


def _header(headers: object, name: str) -> str | None:
    """A header's value from a list of ``{"name", "value"}`` (SES) or a
    mapping (Mailgun, Postmark metadata), matched case-insensitively."""
    wanted = name.lower()
    if isinstance(headers, Mapping):
        for key, value in headers.items():
            if isinstance(key, str) and key.lower() == wanted:
                return _text(value, 1000)
    for item in _items(headers):
        entry = _mapping(item)
        key = entry.get("name") or entry.get("Name")
        if isinstance(key, str) and key.lower() == wanted:
            return _text(entry.get("value", entry.get("Value")), 1000)
    return None


def _collect(
    items: Iterable[object], read: Callable[[Mapping[str, object], RelayBatch], None]
) -> RelayBatch:
    batch = RelayBatch()
    for number, item in enumerate(items, start=1):
        if not isinstance(item, Mapping):
            batch.skipped.append(f"event {number}: not a JSON object")
            continue
        try:
            read(item, batch)
        except _Skip as skip:
            batch.skipped.append(f"event {number}: {skip}")
    return batch


class _Skip(ValueError):
    """One event that makes no sense; the batch goes on."""


# ------------------------------------------------------------------ Amazon SES


_SES_ADDRESS_INVALID = frozenset({"NoEmail", "Suppressed", "OnAccountSuppressionList"})


def ses_events(message: object) -> RelayBatch:
    """An SES notification (the SNS ``Message``, itself JSON text) or an
    SES event-publishing record."""
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except (json.JSONDecodeError, RecursionError):
            return RelayBatch(skipped=["the SNS Message is not SES JSON"])
    return _collect([message], _read_ses)


def _read_ses(record: Mapping[str, object], batch: RelayBatch) -> None:
    event_type = record.get("notificationType") or record.get("eventType")
    mail = _mapping(record.get("mail"))
    headers = mail.get("headers")
    message_id = _text(_mapping(mail.get("commonHeaders")).get("messageId")) or _header(
        headers, "Message-ID"
    )
    first = len(batch.events)
    if event_type == "Bounce":
        bounce = _mapping(record.get("bounce"))
        bounce_type = _text(bounce.get("bounceType"), 40) or "Undetermined"
        sub_type = _text(bounce.get("bounceSubType"), 40) or "General"
        kind = ProviderKind.PERMANENT if bounce_type == "Permanent" else ProviderKind.TEMPORARY
        for item in _items(bounce.get("bouncedRecipients")):
            entry = _mapping(item)
            recipient = _address(entry.get("emailAddress"))
            if recipient is None:
                raise _Skip("a bounced recipient has no address")
            diagnostic = _text(entry.get("diagnosticCode"))
            batch.events.append(
                RelayEvent(
                    provider="ses",
                    provider_kind=kind,
                    recipient=recipient,
                    description=f"SES bounce {bounce_type}/{sub_type}",
                    status=_text(entry.get("status"), 20) or status_in(diagnostic),
                    diagnostic=diagnostic,
                    address_invalid=kind is ProviderKind.PERMANENT
                    and sub_type in _SES_ADDRESS_INVALID,
                )
            )
    elif event_type == "Complaint":
        complaint = _mapping(record.get("complaint"))
        feedback = _text(complaint.get("complaintFeedbackType"), 40) or "abuse"
        for item in _items(complaint.get("complainedRecipients")):
            recipient = _address(_mapping(item).get("emailAddress"))
            if recipient is None:
                raise _Skip("a complained recipient has no address")
            batch.events.append(
                RelayEvent(
                    provider="ses",
                    provider_kind=ProviderKind.COMPLAINT,
                    recipient=recipient,
                    description=f"SES complaint ({feedback})",
                )
            )
    elif isinstance(event_type, str):
        batch.ignored += 1
    else:
        raise _Skip("no notificationType or eventType")
    # What identifies the message is the same for each of its recipients.
    batch.events[first:] = [
        replace(
            event,
            message_id=message_id,
            queue_item_header=_header(headers, "X-Sluice-Queue-Item"),
            event_id=_text(mail.get("messageId"), 200),
        )
        for event in batch.events[first:]
    ]


# ------------------------------------------------------------------ SendGrid


_SENDGRID_DROPPED_PERMANENT = ("bounced address", "invalid")
_SENDGRID_DROPPED_COMPLAINT = "spam reporting address"


def sendgrid_events(payload: object) -> RelayBatch:
    """SendGrid's event webhook: a JSON array of events."""
    if not isinstance(payload, list):
        return RelayBatch(skipped=["the body is not a JSON array of events"])
    return _collect(_items(payload), _read_sendgrid)


def _read_sendgrid(event: Mapping[str, object], batch: RelayBatch) -> None:
    name = _text(event.get("event"), 40)
    recipient = _address(event.get("email"))
    reason = _text(event.get("reason"))
    kind: ProviderKind | None = None
    if name == "bounce":
        blocked = _text(event.get("type"), 40) == "blocked"
        kind = ProviderKind.TEMPORARY if blocked else ProviderKind.PERMANENT
    elif name == "blocked":
        kind = ProviderKind.TEMPORARY
    elif name == "spamreport":
        kind = ProviderKind.COMPLAINT
    elif name == "dropped" and reason:
        lowered = reason.lower()
        if lowered.startswith(_SENDGRID_DROPPED_COMPLAINT):
            kind = ProviderKind.COMPLAINT
        elif lowered.startswith(_SENDGRID_DROPPED_PERMANENT):
            kind = ProviderKind.PERMANENT
    if kind is None:
        batch.ignored += 1
        return
    if recipient is None:
        raise _Skip(f"a {name} event has no email address")
    classification = _text(event.get("bounce_classification"), 60) or ""
    batch.events.append(
        RelayEvent(
            provider="sendgrid",
            provider_kind=kind,
            recipient=recipient,
            description=f"SendGrid {name}" + (f" ({classification})" if classification else ""),
            status=_text(event.get("status"), 20) or status_in(reason),
            diagnostic=reason,
            address_invalid=kind is ProviderKind.PERMANENT
            and (classification == "Invalid Address" or name == "dropped"),
            message_id=_text(event.get("smtp-id"), 1000),
            event_id=_text(event.get("sg_event_id"), 200),
        )
    )


# ------------------------------------------------------------------ Mailgun


def mailgun_events(payload: object) -> RelayBatch:
    """One Mailgun webhook: ``{"signature": …, "event-data": …}``."""
    event = _mapping(payload).get("event-data")
    if not isinstance(event, Mapping):
        return RelayBatch(skipped=["the body has no event-data object"])
    return _collect([event], _read_mailgun)


def _read_mailgun(event: Mapping[str, object], batch: RelayBatch) -> None:
    name = _text(event.get("event"), 40)
    if name == "failed":
        severity = _text(event.get("severity"), 20)
        kind = ProviderKind.PERMANENT if severity == "permanent" else ProviderKind.TEMPORARY
    elif name == "complained":
        kind = ProviderKind.COMPLAINT
    else:
        batch.ignored += 1
        return
    recipient = _address(event.get("recipient"))
    if recipient is None:
        raise _Skip(f"a {name} event has no recipient")
    delivery = _mapping(event.get("delivery-status"))
    diagnostic = _text(delivery.get("message")) or _text(delivery.get("description"))
    code = _text(delivery.get("code"), 10)
    headers = _mapping(_mapping(event.get("message")).get("headers"))
    message_id = _header(headers, "message-id")
    batch.events.append(
        RelayEvent(
            provider="mailgun",
            provider_kind=kind,
            recipient=recipient,
            description=f"Mailgun {name}"
            + (f" ({event.get('reason')})" if _text(event.get("reason"), 40) else ""),
            status=_text(delivery.get("enhanced-code"), 20) or status_in(diagnostic),
            diagnostic=" ".join(part for part in (code, diagnostic) if part) or None,
            message_id=f"<{message_id.strip('<>')}>" if message_id else None,
            event_id=_text(event.get("id"), 200),
        )
    )


# ------------------------------------------------------------------ Postmark


_POSTMARK_PERMANENT = frozenset({"HardBounce", "BadEmailAddress"})
_POSTMARK_IGNORED = frozenset(
    {"Unsubscribe", "Subscribe", "ManuallyDeactivated", "OpenRelayTest", "Unknown"}
)


def postmark_events(payload: object) -> RelayBatch:
    """One Postmark bounce or spam-complaint webhook record."""
    return _collect([payload], _read_postmark)


def _read_postmark(record: Mapping[str, object], batch: RelayBatch) -> None:
    record_type = _text(record.get("RecordType"), 40)
    bounce_type = _text(record.get("Type"), 40) or ""
    if record_type == "SpamComplaint" or bounce_type in {"SpamComplaint"}:
        kind = ProviderKind.COMPLAINT
    elif record_type != "Bounce" or bounce_type in _POSTMARK_IGNORED:
        batch.ignored += 1
        return
    elif bounce_type == "AutoResponder":
        kind = ProviderKind.AUTOREPLY
    elif bounce_type in _POSTMARK_PERMANENT:
        kind = ProviderKind.PERMANENT
    else:
        kind = ProviderKind.TEMPORARY
    recipient = _address(record.get("Email"))
    if recipient is None:
        raise _Skip(f"a {record_type} record has no Email")
    details = _text(record.get("Details"))
    metadata = record.get("Metadata")
    batch.events.append(
        RelayEvent(
            provider="postmark",
            provider_kind=kind,
            recipient=recipient,
            description=f"Postmark {record_type}" + (f" {bounce_type}" if bounce_type else ""),
            status=status_in(details),
            diagnostic=details or _text(record.get("Description")),
            address_invalid=kind is ProviderKind.PERMANENT,
            queue_item_header=_header(metadata, "sluice-queue-item"),
            event_id=_text(record.get("ID"), 200),
        )
    )


# ------------------------------------------------------------------ to a report


def relay_report(event: RelayEvent, queue_item_id: int) -> BounceReport:
    """The report ``bounces.apply_report`` applies for ``event``.

    The status and diagnostic go through the same rule table as returned
    mail (``bounce.classify``); the relay's verdict then bounds it: a
    temporary failure is never hard, a permanent one is hard when the table
    says so or when the relay says the address itself is bad, and soft
    otherwise (a content or policy rejection is permanent for that message,
    not for the address)."""
    if event.provider_kind is ProviderKind.COMPLAINT:
        kind, reason = ReportKind.COMPLAINT, "feedback"
    elif event.provider_kind is ProviderKind.AUTOREPLY:
        kind, reason = ReportKind.AUTOREPLY, "vacation"
    else:
        kind, reason = _bounce_kind(event)
    recipient = RecipientReport(
        recipient=event.recipient,
        action="failed" if kind in (ReportKind.HARD, ReportKind.SOFT) else None,
        status=event.status,
        diagnostic=event.diagnostic or event.description,
        kind=kind,
        reason=reason,
    )
    return BounceReport(
        is_bounce=kind in (ReportKind.HARD, ReportKind.SOFT),
        kind=kind,
        reason=reason,
        recipient=event.recipient,
        status=event.status,
        diagnostic=recipient.diagnostic,
        recipients=(recipient,),
        message_id=event.event_id,
        queue_item_id=queue_item_id,
    )


def _bounce_kind(event: RelayEvent) -> tuple[ReportKind, str]:
    failed = RecipientReport(
        recipient=event.recipient,
        action="failed",
        status=event.status,
        diagnostic=event.diagnostic,
    )
    table = classify(BounceReport(is_bounce=True, recipients=(failed,), recipient=event.recipient))
    reason = table.reason or "undefined"
    if event.provider_kind is ProviderKind.PERMANENT:
        if table.kind is ReportKind.HARD:
            return ReportKind.HARD, reason
        if event.address_invalid:
            return ReportKind.HARD, "userunknown"
    if table.kind is ReportKind.HARD:  # the text says hard, the relay says temporary
        reason = "undefined"
    return ReportKind.SOFT, reason
