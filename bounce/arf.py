"""Complaints: RFC 5965 Abuse Reporting Format feedback reports, and the
unsubscribe requests mailbox providers send in their place.

A feedback report is ``multipart/report; report-type=feedback-report`` with
a ``message/feedback-report`` part (RFC 5965 §2). The complaining recipient
is its ``Original-Rcpt-To`` field (§3.2), else the ``To`` of the returned
message. Providers that predate ARF or bend it are recognised by their own
marks: Microsoft's "complaint about message from" reports carry the
recipient in ``X-HmXmrOriginalRecipient``; Apple Mail's unsubscribe button
sends ``X-Apple-Unsubscribe: true`` from the recipient's own address.
"""

from __future__ import annotations

from dataclasses import dataclass

from bounce import addresses
from bounce.dsn import read_fields
from bounce.mime import Headers, Mail

FEEDBACK_TYPES = frozenset(
    {"abuse", "fraud", "virus", "other", "not-spam", "auth-failure", "opt-out", "dmarc"}
)


@dataclass
class Feedback:
    feedback_type: str | None
    recipient: str | None
    diagnostic: str


def read_feedback(mail: Mail, report_texts: list[str], returned: Headers | None) -> Feedback | None:
    """The complaint in ``mail``, or None when it is not one."""
    top_type = (mail.headers.get("content-type") or "").lower()
    feedback_text = "\n".join(
        _text(part.body) for part in mail.parts if part.content_type == "message/feedback-report"
    )
    if not feedback_text and "feedback-report" in top_type:
        feedback_text = "\n".join(text for text in report_texts if "feedback-type:" in text.lower())
    if feedback_text:
        fields = _fields(feedback_text)
        recipient = addresses.normalise(
            fields.get("original-rcpt-to") or fields.get("removal-recipient")
        ) or _returned_recipient(returned)
        feedback_type = fields.get("feedback-type", "abuse").split()[0].lower() if fields else None
        return Feedback(feedback_type, recipient, f"Feedback-Type: {feedback_type}")
    if returned is not None and returned.get("x-hmxmroriginalrecipient"):
        # Microsoft's pre-ARF junk-mail reports (Outlook.com, Hotmail).
        recipient = addresses.normalise(returned.get("x-hmxmroriginalrecipient"))
        return Feedback("abuse", recipient or _returned_recipient(returned), "complaint")
    if (mail.headers.get("x-apple-unsubscribe") or "").strip().lower() == "true":
        recipient = addresses.normalise(mail.headers.get("from"))
        return Feedback("opt-out", recipient, "unsubscribe request (X-Apple-Unsubscribe)")
    return None


def _fields(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.split("\n"):
        name, colon, value = line.partition(":")
        if colon and name and not name[0].isspace():
            found.setdefault(name.strip().lower(), value.strip())
    return found


def _returned_recipient(returned: Headers | None) -> str | None:
    if returned is None:
        return None
    return addresses.normalise(returned.get("to"))


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


__all__ = ["FEEDBACK_TYPES", "Feedback", "read_feedback", "read_fields"]
