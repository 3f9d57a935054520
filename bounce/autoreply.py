"""Auto-replies and out-of-office messages (RFC 3834): not bounces.

RFC 3834 §5 asks automatic responders to send ``Auto-Submitted:
auto-replied``; older responders use ``X-Autoreply``, ``X-Autorespond`` or
``Precedence: auto_reply``, and many only say so in the subject
("Automatic reply:", "Out of Office", "Abwesenheitsnotiz"). Mail systems
also mark their own bounces ``auto-replied`` (Exim does), so a message that
looks like a delivery failure is never taken for an auto-reply.
"""

from __future__ import annotations

import re

from bounce import addresses
from bounce.mime import Headers

_SUBJECT = re.compile(
    r"^\s*(?:"
    r"auto(?:matic)?[ -]?(?:reply|response|answer|antwort|respons)"
    r"|autoreply|autorespon"
    r"|out of (?:the )?office|ooo\b|away from (?:the )?office|away until"
    r"|on vacation|vacation (?:reply|notice|message)|i am away|i'm away"
    r"|abwesenheit|r[ée]ponse automatique|absence|risposta automatica"
    r"|respuesta autom[aá]tica|automatisch antwoord|自動応答|自動返信"
    r")",
    re.I,
)
_SUBJECT_ANYWHERE = re.compile(
    r"\b(?:auto(?:matic)?[ -]?reply|out of (?:the )?office|autorespons)", re.I
)


def is_autoreply(headers: Headers, subject: str, looks_like_bounce: bool) -> bool:
    """True for an RFC 3834 automatic response that is not a bounce."""
    if looks_like_bounce:
        return False
    auto_submitted = (headers.get("auto-submitted") or "").strip().lower()
    if auto_submitted.startswith("auto-replied"):
        return True
    if headers.get("x-autoreply") or headers.get("x-autorespond"):
        return True
    precedence = (headers.get("precedence") or "").strip().lower()
    if precedence == "auto_reply":
        return True
    return bool(_SUBJECT.search(subject) or _SUBJECT_ANYWHERE.search(subject))


def responder(headers: Headers) -> str | None:
    """Who replied: the recipient of the campaign message."""
    for name in ("from", "reply-to", "sender", "return-path"):
        found = addresses.normalise(headers.get(name))
        if found and not addresses.is_system_address(found):
            return found
    return None
