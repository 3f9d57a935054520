"""Per-domain pacing: each recipient domain group (``gmail``, ``yahoo``,
``outlook``, ``other``; ``app.services.domain_groups``) has an hourly cap
and a connection cap under the global quota, and a rate-limit reply slows
its group down while the others go on (SPEC §4).

Rules:

- **Hourly cap.** ``pace_<group>_per_hour`` (0: only the global quota
  applies) bounds the group's ledger rows (``send_attempts.domain_group``)
  in **any** 60-minute window. A claim reads ``group_allowances`` under the
  claim's lock, after the global quota, and takes at most that many of each
  group, so the argument of ``app.services.quota`` holds per group: claims
  are serialised and each takes only what is left at its own time. Like the
  global quota, a released claim keeps its row and still counts.
- **Connection cap.** ``pace_<group>_connections`` (0: all of the runner's
  ``smtp_connections``) bounds the group's simultaneous SMTP conversations
  within one runner; ``app.services.dispatch_schedule`` hands the tick's
  claims to the connections accordingly.
- **Whose reply is it** (``reply_scope``). Sluice talks to one relay, so a
  reply may be about the message, about the recipient's provider, or about
  us at the relay:

  - ``domain``: a 4xx reply to RCPT or DATA whose enhanced status code
    (RFC 3463 §3.8, ``4.7.x``: security or policy) is 4.7.x — what Gmail
    (``421 4.7.28``, ``421 4.7.0 Try again later``), Yahoo
    (``421 4.7.0 [TSS04]``) and Outlook.com (``451 4.7.500 Server busy``)
    answer when they rate-limit a sender — or a 421 to RCPT or DATA with no
    enhanced code at all (Outlook.com's ``421 RP-001 … limits for how many
    messages can be sent per hour``). The recipient's group is throttled.
  - ``relay``: any other 421: one before a recipient was named (greeting,
    EHLO, MAIL FROM — the relay refuses *us*), or one whose enhanced
    code is not 4.7.x (``421 4.3.2 System not accepting network messages``:
    the relay itself is going away); and any 4xx while connecting (to
    STARTTLS or AUTH, e.g. RFC 4954's ``454 4.7.0 Temporary authentication
    failure``), which no other message would get past either. The tick
    ends for every group.
  - ``message``: everything else, under the usual retry rules.
- **Throttle.** A ``domain`` reply records the message as an ordinary
  temporary failure (retried after its back-off) and throttles the group
  in the database (``domain_throttles``), so every runner honours it: no
  claim takes the group's items before ``throttled_until``, and the tick
  that saw it releases the group's claims not yet handed to SMTP, uncharged,
  while the other groups go on. The throttle lasts ``throttle_seconds``,
  doubling with each throttle in a row (one that starts within
  ``STRIKES_FORGOTTEN_AFTER`` of the previous one's end), at most
  ``MAX_THROTTLE``. A rate-limit reply while the group is already throttled
  (a conversation that began before) changes nothing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import DomainGroup, DomainThrottle, SendAttempt
from app.services.bulk_sql import insert_ignoring_conflicts
from app.services.quota import QUOTA_WINDOW
from app.services.runtime_settings import RuntimeSettings
from app.services.transport import SendResult, SmtpStage

MAX_THROTTLE = timedelta(hours=4)
STRIKES_FORGOTTEN_AFTER = timedelta(hours=24)

# RFC 3463 §2: class.subject.detail, at the start of the reply text (RFC 2034
# puts it right after the reply code, which smtplib strips).
_ENHANCED_STATUS = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\S)")


# ----------------------------------------------------------------- caps


def group_claims_since(
    session: Session, since: datetime, groups: Collection[DomainGroup]
) -> dict[DomainGroup, int]:
    """Ledger rows of each of ``groups`` claimed strictly after ``since``
    (one query over ``ix_send_attempts_domain_group_claimed_at``)."""
    if not groups:
        return {}
    rows = session.execute(
        select(SendAttempt.domain_group, func.count())
        .where(SendAttempt.domain_group.in_(list(groups)), SendAttempt.claimed_at > since)
        .group_by(SendAttempt.domain_group)
    )
    return {DomainGroup(group): count for group, count in rows}


def group_allowances(
    session: Session, now: datetime, runtime: RuntimeSettings
) -> dict[DomainGroup, int | None]:
    """How many items of each group a claim may take now: 0 while the group
    is throttled; its hourly cap minus its rows of the last 60 minutes when
    it has one; None when only the global quota bounds it."""
    throttled = throttled_groups(session, now)
    capped = [
        group
        for group in DomainGroup
        if group not in throttled and runtime.group_hourly_cap(group) > 0
    ]
    used = group_claims_since(session, now - QUOTA_WINDOW, capped)
    allowances: dict[DomainGroup, int | None] = {}
    for group in DomainGroup:
        if group in throttled:
            allowances[group] = 0
        elif group in capped:
            allowances[group] = max(0, runtime.group_hourly_cap(group) - used.get(group, 0))
        else:
            allowances[group] = None
    return allowances


def connection_caps(runtime: RuntimeSettings) -> dict[DomainGroup, int]:
    """Each group's cap on simultaneous conversations in one runner: its
    setting, or all the runner's connections when the setting is 0."""
    return {
        group: min(
            runtime.group_connection_cap(group) or runtime.smtp_connections,
            runtime.smtp_connections,
        )
        for group in DomainGroup
    }


# ----------------------------------------------------------------- replies


class ReplyScope(enum.StrEnum):
    """Whom a temporary reply is about (see the module's rules)."""

    MESSAGE = "message"
    DOMAIN = "domain"
    RELAY = "relay"


def enhanced_status(reply: str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code a reply text starts with, if any."""
    match = _ENHANCED_STATUS.match(reply)
    if match is None:
        return None
    klass, subject, detail = (int(part) for part in match.groups())
    return klass, subject, detail


def reply_scope(result: SendResult) -> ReplyScope:
    """Whether a reply is about the message, the recipient's domain group
    or the relay (see the module's rules)."""
    code = result.code
    if code is None or not 400 <= code < 500:
        return ReplyScope.MESSAGE
    status = enhanced_status(result.reply)
    if result.stage in (SmtpStage.RCPT, SmtpStage.DATA):
        if status is not None and status[:2] == (4, 7):
            return ReplyScope.DOMAIN
        if code == 421 and status is None:
            return ReplyScope.DOMAIN
    if code == 421 or result.stage is SmtpStage.CONNECT:
        return ReplyScope.RELAY
    return ReplyScope.MESSAGE


# ----------------------------------------------------------------- throttles


def throttled_groups(session: Session, now: datetime) -> set[DomainGroup]:
    """The groups no claim may take items of now."""
    return {
        DomainGroup(group)
        for group in session.scalars(
            select(DomainThrottle.domain_group).where(DomainThrottle.throttled_until > now)
        )
    }


def throttle_duration(strikes: int, throttle_seconds: int) -> timedelta:
    """``throttle_seconds`` for the first throttle in a row, doubling after
    each further one, at most ``MAX_THROTTLE``."""
    exponent = min(max(strikes - 1, 0), 16)  # 2**16 minutes is past any cap
    return min(timedelta(seconds=throttle_seconds * 2**exponent), MAX_THROTTLE)


def throttle_group(
    session: Session,
    group: DomainGroup,
    result: SendResult,
    clock: Clock,
    runtime: RuntimeSettings,
) -> DomainThrottle | None:
    """Throttle ``group`` after the rate-limit ``result`` (see the module's
    rules); returns the throttle, or None when the group was throttled
    already. The row is locked while it changes, so two runners seeing a
    rate limit at once throttle once. Flushes; the caller commits."""
    now = clock.now()
    # The group's row exists from its first throttle on; make sure it does.
    session.execute(
        insert_ignoring_conflicts(session, DomainThrottle).values(
            domain_group=group,
            throttled_at=now,
            throttled_until=now,
            strikes=0,
            code=None,
            reply="",
        )
    )
    throttle = session.get(DomainThrottle, group, with_for_update=True, populate_existing=True)
    if throttle is None:  # rows are never deleted
        raise LookupError(f"domain throttle of {group} vanished")
    if throttle.throttled_until > now:
        return None
    in_a_row = throttle.strikes > 0 and now - throttle.throttled_until < STRIKES_FORGOTTEN_AFTER
    throttle.strikes = throttle.strikes + 1 if in_a_row else 1
    throttle.throttled_at = now
    throttle.throttled_until = now + throttle_duration(throttle.strikes, runtime.throttle_seconds)
    throttle.code = result.code
    throttle.reply = result.reply[:1000]
    session.flush()
    return throttle


# ----------------------------------------------------------------- status


@dataclass(frozen=True)
class GroupPace:
    """A domain group's pacing right now, for people."""

    group: DomainGroup
    used: int  # ledger rows of the last 60 minutes
    hourly_cap: int  # 0: the global quota only
    connection_cap: int  # 0: all the runner's connections
    throttled_until: datetime | None
    throttle_reply: str


def group_paces(session: Session, clock: Clock, runtime: RuntimeSettings) -> list[GroupPace]:
    """Every group's use of the last 60 minutes, caps and throttle."""
    now = clock.now()
    used = group_claims_since(session, now - QUOTA_WINDOW, list(DomainGroup))
    throttles = {
        DomainGroup(throttle.domain_group): throttle
        for throttle in session.scalars(
            select(DomainThrottle).where(DomainThrottle.throttled_until > now)
        )
    }
    paces = []
    for group in DomainGroup:
        throttle = throttles.get(group)
        paces.append(
            GroupPace(
                group=group,
                used=used.get(group, 0),
                hourly_cap=runtime.group_hourly_cap(group),
                connection_cap=runtime.group_connection_cap(group),
                throttled_until=throttle.throttled_until if throttle else None,
                throttle_reply=(
                    f"{throttle.code or ''} {throttle.reply}".strip() if throttle else ""
                ),
            )
        )
    return paces
