"""RFC 3464 delivery status notifications: the per-recipient fields.

The ``message/delivery-status`` body is a per-message block followed by one
block per recipient (RFC 3464 §2.1). Mail systems get the blank lines wrong
often enough that records are cut by the fields themselves: a second
``Final-Recipient`` (or ``Original-Recipient``) starts the next recipient.
Some relays paste the same fields into a ``text/plain`` part; the same
reader handles both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bounce import addresses, smtp

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
RECIPIENT_FIELDS = ("final-recipient", "original-recipient")
_KNOWN = frozenset(
    {
        "final-recipient",
        "original-recipient",
        "x-actual-recipient",
        "action",
        "status",
        "diagnostic-code",
        "remote-mta",
        "last-attempt-date",
        "will-retry-until",
        "final-log-id",
        "reporting-mta",
        "received-from-mta",
        "arrival-date",
        "x-postfix-sender",
        "x-postfix-queue-id",
    }
)
ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})


@dataclass
class DsnRecipient:
    """The fields of one per-recipient block, as written."""

    final_recipient: str | None = None
    original_recipient: str | None = None
    action: str | None = None
    status: str | None = None
    diagnostic_type: str | None = None
    diagnostic: str | None = None
    remote_mta: str | None = None

    @property
    def address(self) -> str | None:
        final = addresses.normalise(self.final_recipient)
        if final and "@" in final:
            return final
        return addresses.normalise(self.original_recipient) or final


@dataclass
class DsnReport:
    reporting_mta: str | None
    recipients: list[DsnRecipient]


def has_dsn_fields(text: str) -> bool:
    """True when ``text`` holds RFC 3464 per-recipient fields."""
    lowered = text.lower()
    return ("final-recipient:" in lowered or "original-recipient:" in lowered) and (
        "status:" in lowered or "action:" in lowered or "diagnostic-code:" in lowered
    )


def read_fields(text: str) -> list[tuple[str, str]]:
    """Unfolded ``Name: value`` fields of a DSN body, other lines skipped."""
    fields: list[tuple[str, str]] = []
    last_known = False
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped:
            last_known = False
            continue
        if line[0] in " \t" and fields and last_known:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {stripped}")
            continue
        match = _FIELD.match(stripped)
        if match and match.group(1).lower() in _KNOWN:
            fields.append((match.group(1).lower(), match.group(2).strip()))
            last_known = True
        else:
            last_known = False
    return fields


def parse_dsn(text: str) -> DsnReport:
    """The per-recipient records of a delivery-status body."""
    reporting_mta: str | None = None
    records: list[DsnRecipient] = []
    current: DsnRecipient | None = None
    for name, value in read_fields(text):
        if name == "reporting-mta":
            reporting_mta = reporting_mta or _after_type(value)
            continue
        if name in RECIPIENT_FIELDS:
            attribute = name.replace("-", "_")
            if current is None or getattr(current, attribute) is not None:
                current = DsnRecipient()
                records.append(current)
            setattr(current, attribute, value)
            continue
        if current is None:
            if name not in ("action", "status", "diagnostic-code"):
                continue
            current = DsnRecipient()
            records.append(current)
        _apply(current, name, value)
    return DsnReport(reporting_mta, [record for record in records if _useful(record)])


def _apply(record: DsnRecipient, name: str, value: str) -> None:
    if name == "action":
        word = value.split(maxsplit=1)[0].lower().strip(";()") if value.strip() else ""
        record.action = word if word in ACTIONS else (record.action or word or None)
    elif name == "status":
        codes = smtp.status_codes(value)
        record.status = codes[0] if codes else record.status
    elif name == "diagnostic-code":
        kind, _, rest = value.partition(";")
        if rest:
            record.diagnostic_type = kind.strip().upper() or None
            # An SMTP reply is kept as the reply; another type (X-Unix: a
            # local delivery program) keeps its type in front of the text.
            text = (
                rest.strip()
                if record.diagnostic_type == "SMTP"
                else f"{kind.strip()}; {rest.strip()}"
            )
            record.diagnostic = _join(record.diagnostic, text)
        else:
            record.diagnostic = _join(record.diagnostic, value.strip())
    elif name == "remote-mta":
        record.remote_mta = _after_type(value)
    elif name == "x-actual-recipient" and not record.final_recipient:
        record.final_recipient = value


def _after_type(value: str) -> str | None:
    return (value.split(";", 1)[-1].strip() or None) if value else None


def _join(first: str | None, second: str) -> str:
    return f"{first} {second}" if first else second


def _useful(record: DsnRecipient) -> bool:
    return bool(record.final_recipient or record.original_recipient or record.status)
