"""``parse(raw) -> BounceReport``: what a returned message says, never an
exception.

The detectors are tried in this order, the first that recognises the
message wins:

1. complaints (``bounce.arf``: RFC 5965 and providers' variants);
2. RFC 3464 delivery status notifications (``bounce.dsn``), completed by
   the prose part for recipients whose ``Diagnostic-Code`` is empty;
3. auto-replies (``bounce.autoreply``, RFC 3834), unless the message looks
   like a delivery failure;
4. bounces written as prose (``bounce.plaintext``).

A message none of them recognises is reported as not a bounce, unless its
sender and subject are a mail system's (then a bounce with no recipient
found, so a person can look at it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from bounce import addresses, smtp, vendors
from bounce.arf import read_feedback
from bounce.autoreply import is_autoreply, responder
from bounce.dsn import DsnRecipient, has_dsn_fields, parse_dsn
from bounce.mime import (
    Headers,
    Mail,
    Part,
    decode_words,
    looks_like_headers,
    parse_headers,
    part_text,
    read_mail,
    split_head_body,
)
from bounce.plaintext import TextRecipient, TextReport, block_for, read_report
from bounce.report import BounceReport, RecipientReport, ReportKind

QUEUE_ITEM_HEADER = "x-sluice-queue-item"
RETURNED_TYPES = frozenset(
    {
        "message/rfc822",
        "message/global",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/global-headers",
        "message/partial",
    }
)
DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
NOT_FAILED = frozenset({"delivered", "relayed", "expanded"})
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery status notification|delivery (?:has )?fail|"
    r"failure notice|failed delivery|mail delivery|non[- ]?deliver|not delivered|"
    r"could not be delivered|delivery failure|delivery problem|mail system error|"
    r"returned to sender|rejected|bounce|warning: could not|delivery report|"
    r"error sending|unzustellbar|nicht zugestellt",
    re.I,
)
_TAGS = re.compile(r"<[^>]*>")


@dataclass
class View:
    """The parts of a bounce each detector reads."""

    mail: Mail
    subject: str
    report_texts: list[str]
    dsn_texts: list[str]
    returned: Headers | None
    problems: list[str] = field(default_factory=list)


def parse(raw: bytes) -> BounceReport:
    """Read a returned message. Never raises: whatever goes wrong is noted
    in ``problems`` and the rest of the report is kept."""
    try:
        return _parse(raw if isinstance(raw, bytes) else bytes(raw))
    except Exception as error:  # the promise of this function: never raise
        return BounceReport(problems=(f"parser failed: {type(error).__name__}: {error}",))


def _parse(raw: bytes, wrapped: bool = False) -> BounceReport:
    mail = read_mail(raw)
    inner = None if wrapped else _wrapped_bounce(mail)
    if inner is not None:
        # An appliance wrapped the real bounce in a message/rfc822 part.
        return _parse(inner, wrapped=True)
    view = _view(mail)
    headers = view.mail.headers
    base = _identifiers(headers, view.returned, view.problems)
    feedback = read_feedback(view.mail, view.report_texts, view.returned)
    if feedback is not None:
        return replace(
            base,
            kind=ReportKind.COMPLAINT,
            reason="feedback",
            recipient=feedback.recipient,
            diagnostic=feedback.diagnostic,
            recipients=(
                RecipientReport(
                    recipient=feedback.recipient,
                    kind=ReportKind.COMPLAINT,
                    reason="feedback",
                    diagnostic=feedback.diagnostic,
                ),
            ),
        )
    senders = _senders(headers, view.returned)
    text = "\n".join(view.report_texts)
    prose = read_report(text, senders, _addressed_to(view.returned))
    returned = view.returned or _inline_returned(prose)
    if returned is not None and returned is not view.returned:
        # The returned message was pasted inline: its sender is known only now.
        prose = read_report(text, _senders(headers, returned), _addressed_to(returned))
    if returned is not view.returned:
        base = _identifiers(headers, returned, view.problems)
    dsn_reports = [parse_dsn(text) for text in view.dsn_texts]
    records = [record for dsn in dsn_reports for record in dsn.recipients]
    reporting_mta = next(
        (dsn.reporting_mta for dsn in dsn_reports if dsn.reporting_mta), None
    ) or _handed_over_by(headers)
    reporter = vendors.reporter_of(headers, text)
    base = replace(base, reporter=reporter, reporting_mta=reporting_mta)
    bouncy = _looks_like_bounce(view, records)
    if not records and is_autoreply(headers, view.subject, bouncy or bool(prose.reply_lines)):
        who = responder(headers)
        return replace(
            base,
            kind=ReportKind.AUTOREPLY,
            reason="vacation",
            recipient=who,
            diagnostic=view.subject or None,
            recipients=(
                RecipientReport(recipient=who, kind=ReportKind.AUTOREPLY, reason="vacation"),
            ),
        )
    if records:
        recipients = [_from_dsn(record, prose) for record in records]
    else:
        recipients = [_from_prose(item, prose) for item in prose.recipients]
    recipients = [item for item in recipients if item.recipient or item.status]
    sentence = vendors.notice_sentence(reporter, prose.report)
    if sentence:
        recipients = [_with_notice(item, sentence) for item in recipients]
    if not recipients and bouncy:
        fallback = addresses.normalise(_header(returned, "to"))
        recipients = [_fallback_recipient(fallback, prose)]
    failed = [item for item in recipients if item.action not in NOT_FAILED]
    chosen = failed or recipients
    first = chosen[0] if chosen else RecipientReport(recipient=None)
    return replace(
        base,
        is_bounce=bool(failed),
        recipient=first.recipient,
        status=first.status,
        diagnostic=first.diagnostic,
        recipients=tuple(recipients),
    )


def _identifiers(headers: Headers, returned: Headers | None, problems: list[str]) -> BounceReport:
    """A report holding only what identifies the message and its original."""
    return BounceReport(
        message_id=_message_id(headers.get("message-id")),
        return_addresses=_return_addresses(headers, returned),
        returned_queue_item_header=_header(returned, QUEUE_ITEM_HEADER),
        returned_message_id=_message_id(_header(returned, "message-id")),
        problems=tuple(problems),
    )


def _wrapped_bounce(mail: Mail) -> bytes | None:
    """The bytes of a delivery report forwarded as the only content of a
    message whose own report parts say nothing (Trend Micro, some list
    servers): the outer message has no DSN and the attached one has."""
    has_dsn = any(part.content_type in DSN_TYPES for part in mail.parts)
    if has_dsn:
        return None
    for part in mail.parts:
        if (
            part.content_type == "message/rfc822"
            and b"message/delivery-status" in part.body[:65536]
        ):
            outer_text = "\n".join(
                part_text(other) for other in mail.parts if other.content_type == "text/plain"
            )
            if not addresses.find_all(outer_text):
                return part.body.lstrip(b"\n")
    return None


def _view(mail: Mail) -> View:
    problems = list(mail.problems)
    report_texts: list[str] = []
    html_texts: list[str] = []
    dsn_texts: list[str] = []
    returned: Headers | None = None
    seen_returned = False
    for part in mail.parts:
        media = part.content_type
        if media in RETURNED_TYPES:
            if returned is None:
                returned = _returned_headers(part, problems)
            seen_returned = True
            continue
        if media in DSN_TYPES:
            dsn_texts.append(part_text(part))
            continue
        if media == "message/feedback-report":
            continue
        if seen_returned and media.startswith("text/") and report_texts:
            continue
        if media == "text/plain" or (media.startswith("text/") and media != "text/html"):
            text = part_text(part)
            if has_dsn_fields(text):
                dsn_texts.append(text)
            report_texts.append(text)
        elif media == "text/html":
            html_texts.append(_TAGS.sub(" ", part_text(part)))
    if not report_texts and html_texts:
        report_texts = html_texts
    subject = decode_words(mail.headers.get("subject"))
    return View(mail, subject, report_texts, dsn_texts, returned, problems)


def _returned_headers(part: Part, problems: list[str]) -> Headers:
    body = part.body
    if part.headers.get("content-transfer-encoding"):
        body = part_text(part).encode("utf-8", "replace")
    body = body.lstrip(b"\n")
    head, _ = split_head_body(body)
    return parse_headers(head, problems)


def _inline_returned(prose: TextReport) -> Headers | None:
    """Headers of a returned message pasted after the report's marker."""
    if not prose.returned:
        return None
    block = prose.returned.lstrip("\n").encode("utf-8", "replace")
    if not looks_like_headers(block):
        return None
    head, _ = split_head_body(block)
    return parse_headers(head)


def _from_dsn(record: DsnRecipient, prose: TextReport) -> RecipientReport:
    address = record.address
    block = _prose_block(prose, address)
    diagnostic = record.diagnostic or block or None
    command = smtp.find_command(record.diagnostic or "") or smtp.find_command(block or "")
    in_text = smtp.reply_status(diagnostic or "") or smtp.first_status(
        diagnostic or "", exclude=record.status
    )
    status = smtp.prefer(record.status, in_text, smtp.reply_code(diagnostic or ""))
    return RecipientReport(
        recipient=address,
        action=record.action or ("failed" if (status or "5")[0] in "45" else None),
        status=status,
        diagnostic=_tidy(diagnostic),
        remote_mta=record.remote_mta,
        command=command,
    )


def _prose_block(prose: TextReport, address: str | None) -> str:
    for item in prose.recipients:
        if addresses.same(item.address, address):
            return item.diagnostic
    if address:
        block = block_for(prose.report, address)
        if block:
            return block
    if len(prose.recipients) == 1:
        return prose.recipients[0].diagnostic
    return ""


def _from_prose(item: TextRecipient, prose: TextReport) -> RecipientReport:
    diagnostic = item.diagnostic
    if not (smtp.first_status(diagnostic) or smtp.reply_code(diagnostic)) and prose.reply_lines:
        diagnostic = "\n".join([diagnostic, *prose.reply_lines]).strip()
    first = smtp.first_status(diagnostic)
    # A relay's summary code first, the remote server's reply after it
    # (Amazon SES: "5.1.0 - Unknown address error 550-'5.7.1 ...'").
    quoted = smtp.reply_status(diagnostic) or smtp.first_status(diagnostic, exclude=first)
    status = smtp.prefer(first, quoted, smtp.reply_code(diagnostic))
    return RecipientReport(
        recipient=addresses.normalise(item.address),
        action="failed",
        status=status,
        diagnostic=_tidy(diagnostic) or None,
        command=smtp.find_command(diagnostic),
    )


def _fallback_recipient(address: str | None, prose: TextReport) -> RecipientReport:
    diagnostic = "\n".join(prose.reply_lines) or prose.report.strip()[:2000]
    return RecipientReport(
        recipient=address,
        action="failed",
        status=smtp.first_status(diagnostic),
        diagnostic=_tidy(diagnostic) or None,
        command=smtp.find_command(prose.report),
    )


def _with_notice(item: RecipientReport, sentence: str) -> RecipientReport:
    """The recipient with the reporter's statement of the reason in front of
    its diagnostic (EZweb states it once, above the recipients)."""
    diagnostic = item.diagnostic or ""
    if sentence in diagnostic:
        return item
    return replace(item, diagnostic=_tidy(f"{sentence} {diagnostic}"))


# "from <host> (...)" of a Received field: the host that handed it over.
_RECEIVED_FROM = re.compile(r"^\s*from\s+([a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)+)", re.I)


def _handed_over_by(headers: Headers) -> str | None:
    """The host that handed the bounce to us, from the newest Received field
    naming a host (Sisimai's fallback for the reporting host)."""
    for value in headers.get_all("received")[:8]:
        match = _RECEIVED_FROM.match(value)
        if match and match.group(1).lower() not in ("localhost", "localhost.localdomain"):
            return match.group(1).lower()
    return None


def _tidy(text: str | None) -> str | None:
    if not text:
        return None
    return " ".join(text.split())[:4000] or None


def _looks_like_bounce(view: View, records: list[DsnRecipient]) -> bool:
    if records:
        return True
    headers = view.mail.headers
    if "delivery-status" in (headers.get("content-type") or "").lower():
        return True
    sender = addresses.normalise(headers.get("from")) or ""
    from_system = (
        addresses.is_system_address(sender)
        or "mail delivery" in (headers.get("from") or "").lower()
    )
    return from_system or bool(_BOUNCE_SUBJECT.search(view.subject))


def _senders(headers: Headers, returned: Headers | None) -> set[str]:
    """Addresses that belong to the sender side, never the failed recipient."""
    found: set[str] = set()
    for source, names in (
        (headers, ("to", "from")),
        (returned, ("from", "sender", "return-path", "reply-to")),
    ):
        if source is None:
            continue
        for name in names:
            for value in source.get_all(name):
                for _, address in addresses.find_all(value):
                    found.add(address.lower())
    return found


def _addressed_to(returned: Headers | None) -> frozenset[str]:
    if returned is None:
        return frozenset()
    values = returned.get_all("to") + returned.get_all("cc")
    return frozenset(
        address.lower() for value in values for _, address in addresses.find_all(value)
    )


def _return_addresses(headers: Headers, returned: Headers | None) -> tuple[str, ...]:
    """VERP candidates, most trustworthy first (see ``BounceReport``)."""
    found: list[str] = []
    for name in ("to", "delivered-to", "x-original-to", "envelope-to"):
        for value in headers.get_all(name):
            for _, address in addresses.find_all(value):
                if address not in found:
                    found.append(address)
    if returned is not None:
        for value in returned.get_all("return-path"):
            for _, address in addresses.find_all(value):
                if address not in found:
                    found.append(address)
    return tuple(found)


def _header(headers: Headers | None, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    return value.strip() if value and value.strip() else None


def _message_id(value: str | None) -> str | None:
    if not value:
        return None
    match = re.search(r"<[^<>\s]+>", value)
    return match.group(0) if match else value.strip()[:998] or None
