"""The facts a returned message yields, shared by every part of the bounce
pipeline (DESIGN.md: ``bounce/`` turns bytes into facts, ``app/services/
bounces.py`` applies them).

``bounce.parse`` fills in what the message says (recipients, DSN fields,
the addresses a VERP return path may hide in, the returned message's
identifiers); ``bounce.classify`` adds the kind and reason. Delivery-event
webhooks build the same report from a relay's JSON, so one service applies
both. Frozen dataclasses: a report is a value, never updated in place
(``dataclasses.replace`` makes the classified copy).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ReportKind(enum.StrEnum):
    """What a message is, for the campaign log (SPEC §5).

    ``hard``/``soft`` are bounces; ``complaint`` is an ARF feedback report
    (RFC 5965); ``autoreply`` is an out-of-office or other automatic reply
    (RFC 3834), never a bounce. A message that is none of these (a delivery
    or relay notification, a person's mail) has no kind (``None``)."""

    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    AUTOREPLY = "autoreply"


@dataclass(frozen=True)
class RecipientReport:
    """One recipient of a DSN (RFC 3464 §2.3) or of a non-standard bounce."""

    recipient: str | None
    action: str | None = None  # failed, delayed, delivered, relayed, expanded
    status: str | None = None  # e.g. "5.1.1"
    diagnostic: str | None = None  # Diagnostic-Code or the bounce's own text
    remote_mta: str | None = None
    # The SMTP command the remote reply answered (RCPT, MAIL, DATA, ...),
    # when the bounce says: a "no such user" answer to DATA is a content
    # filter's wording, not proof the mailbox is missing.
    command: str | None = None
    kind: ReportKind | None = None
    reason: str | None = None  # Sisimai-like: userunknown, mailboxfull, ...


@dataclass(frozen=True)
class BounceReport:
    """Everything Sluice needs to know about one returned message.

    The top-level ``kind``, ``reason``, ``recipient``, ``status`` and
    ``diagnostic`` describe the first recipient that failed (the one a
    single-recipient campaign message was sent to); ``recipients`` holds all
    of them. ``queue_item_id`` is set only once the VERP address was verified
    (``bounce.verp``) or, with VERP off, read from the returned message's
    ``X-Sluice-Queue-Item`` header.
    """

    is_bounce: bool = False
    kind: ReportKind | None = None
    reason: str | None = None
    recipient: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    recipients: tuple[RecipientReport, ...] = ()
    # The bounce's own Message-ID: with a content hash, what makes a message
    # seen twice count once.
    message_id: str | None = None
    # Addresses the VERP return path may be found in, most trustworthy
    # first: To, Delivered-To, X-Original-To, Envelope-To of the bounce, then
    # the returned message's Return-Path (SPEC §5 / issue 7, "VERP").
    return_addresses: tuple[str, ...] = ()
    # From the returned message (or its headers), when the bounce includes it.
    returned_queue_item_header: str | None = None
    returned_message_id: str | None = None
    queue_item_id: int | None = None
    # The mail system that wrote the bounce, when the parser recognised it
    # (``bounce.vendors``: "ezweb", "trendmicro", ...), and the host that
    # reported (the DSN's Reporting-MTA, else the host that handed the
    # bounce over): some wording means different things per vendor.
    reporter: str | None = None
    reporting_mta: str | None = None
    # Why the parser gave up on parts of the message (never raised).
    problems: tuple[str, ...] = field(default=())
