"""The suppression list (SPEC §5): addresses no mass email may reach.

Rules:

- **One row per address**, compared case-insensitively: the key is the
  normalised address lower-cased (``addresses.normalise_address``, as a
  contact's ``email_lower``), unique in the database. Bad input (empty,
  oversized, not an address) is an ``InvalidAddress`` naming the problem;
  nothing is written.
- **Reasons:** ``hard_bounce`` (a hard bounce, or a 5xx to RCPT at send
  time), ``complaint`` (an ARF spam report), ``soft_threshold`` (N soft
  bounces within D days), ``manual`` (a person). An opt-out is not a
  suppression: it is the contact's own choice, kept on the contact (SPEC
  §5 lists the reasons; the opt-out link and its undo stay the contact's).
- **Adding is idempotent:** an address already suppressed keeps its first
  reason, source and time (the first cause is the one that explains it);
  ``add`` says whether it added a row.
- **Removing** (after the recipient fixed their mailbox) needs who and why;
  the row moves to ``suppression_removals`` with both and the time, so the
  history stays. Removing an address that is not suppressed is refused
  (``NotSuppressed``). The address may be suppressed again later.
- **Search** is by prefix of the address (an index range, fast on any list
  size), by domain (``@example.com``, its own index) or by substring (a
  scan, with the page limit); pages are keyset pages ordered by address,
  so the next page costs what the first did.
- Consulted set-based: the queue build drops suppressed recipients with one
  correlated ``EXISTS`` (``suppressed_contact``); the dispatcher asks for a
  slice of addresses at once (``suppressed_among``).

Functions flush; the caller commits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, exists, func, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import Contact, Suppression, SuppressionReason, SuppressionRemoval
from app.models.bounces import SUPPRESSION_SOURCE_MAX_LENGTH, USER_NAME_MAX_LENGTH
from app.services.addresses import InvalidAddress, normalise_address
from app.services.bulk_sql import insert_ignoring_conflicts

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_QUERY_LENGTH = 320
WHY_MAX_LENGTH = 2000
# The highest code point: a prefix's range ends just before prefix + this.
_AFTER_ALL = "\U0010ffff"


class NotSuppressed(LookupError):
    """``remove`` of an address that is not on the list."""


class SuppressionError(ValueError):
    """A bad argument (who, why, a search query); the text says which."""


@dataclass(frozen=True)
class SuppressionEntry:
    address: str
    reason: SuppressionReason
    source: str
    created_at: datetime


@dataclass(frozen=True)
class SuppressionPage:
    """One page of a listing; ``next_after`` is the ``after`` of the next
    page, None on the last one."""

    entries: list[SuppressionEntry]
    next_after: str | None


def address_key(address: str) -> tuple[str, str]:
    """``(normalised address, key)``; raises ``InvalidAddress`` with the reason."""
    return normalise_address(address)


def _clean(field: str, value: str, max_length: int) -> str:
    text = " ".join(value.split())
    if not text:
        raise SuppressionError(f"{field}: must not be empty")
    if len(text) > max_length:
        raise SuppressionError(f"{field}: at most {max_length} characters")
    if "\x00" in text:
        raise SuppressionError(f"{field}: contains a NUL character")
    return text


def add(
    session: Session, address: str, reason: SuppressionReason, source: str, clock: Clock
) -> bool:
    """Suppress ``address`` (see the module's rules); returns whether a row
    was added (False: it was suppressed already). One ``INSERT … ON
    CONFLICT DO NOTHING``, so two writers at once add it once."""
    stored, key = address_key(address)
    source_text = " ".join(source.split())[:SUPPRESSION_SOURCE_MAX_LENGTH] or reason.value
    statement = (
        insert_ignoring_conflicts(session, Suppression)
        .values(
            address=stored,
            address_lower=key,
            domain=key.rpartition("@")[2],
            reason=reason,
            source=source_text,
            created_at=clock.now(),
        )
        .returning(Suppression.id)
    )
    added = session.execute(statement).first() is not None
    session.flush()
    return added


def remove(session: Session, address: str, *, by: str, why: str, clock: Clock) -> SuppressionEntry:
    """Lift the suppression of ``address``, recording who and why; returns
    what was lifted. Raises ``NotSuppressed``, ``InvalidAddress`` or
    ``SuppressionError`` (an empty who or why)."""
    _, key = address_key(address)
    removed_by = _clean("who", by, USER_NAME_MAX_LENGTH)
    reason_text = _clean("why", why, WHY_MAX_LENGTH)
    row = session.scalar(
        select(Suppression).where(Suppression.address_lower == key).with_for_update()
    )
    if row is None:
        raise NotSuppressed(f"{address.strip()} is not suppressed")
    entry = _entry(row)
    session.add(
        SuppressionRemoval(
            address=row.address,
            address_lower=row.address_lower,
            reason=row.reason,
            source=row.source,
            suppressed_at=row.created_at,
            removed_at=clock.now(),
            removed_by=removed_by,
            why=reason_text,
        )
    )
    session.delete(row)
    session.flush()
    return entry


def find(session: Session, address: str) -> SuppressionEntry | None:
    """The suppression of ``address``, or None. Raises ``InvalidAddress``."""
    _, key = address_key(address)
    row = session.scalar(select(Suppression).where(Suppression.address_lower == key))
    return None if row is None else _entry(row)


def is_suppressed(session: Session, address: str) -> bool:
    """Whether ``address`` must not be mass-mailed (never, for text that is
    not an address: nothing of the kind is on the list)."""
    return bool(suppressed_among(session, [address]))


def suppressed_among(session: Session, addresses: Iterable[str]) -> set[str]:
    """Those of ``addresses`` that are suppressed, lower-cased, in one query."""
    by_key: dict[str, set[str]] = {}
    for address in addresses:
        key = _lookup_key(address)
        if key:
            by_key.setdefault(key, set()).add(address.lower())
    if not by_key:
        return set()
    found = session.scalars(
        select(Suppression.address_lower).where(Suppression.address_lower.in_(list(by_key)))
    )
    return {address for key in found for address in by_key[key]}


# An unquoted ASCII address: its key is its lower-cased form whether or not
# it is valid (an invalid one is on no list), so the lookup needs no
# validation, which costs ~15 µs an address and the dispatcher checks
# every recipient at send time.
_PLAIN_ASCII_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


def _lookup_key(address: str) -> str:
    """The key to look ``address`` up by; "" for one that is not an address
    (``add`` refuses those, so none is on the list)."""
    if _PLAIN_ASCII_ADDRESS.fullmatch(address):
        return address.lower()
    try:
        return address_key(address)[1]
    except InvalidAddress:
        return ""


def suppressed_contact(contact_id: ColumnElement[int]) -> ColumnElement[bool]:
    """SQL: the contact ``contact_id``'s address is suppressed (a correlated
    ``EXISTS`` over the two unique indexes, by the case-folded key)."""
    return exists(
        select(Suppression.id)
        .join(Contact, Contact.email_lower == Suppression.address_lower)
        .where(Contact.id == contact_id)
    )


def listing(
    session: Session,
    *,
    after: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    reason: SuppressionReason | None = None,
) -> SuppressionPage:
    """Every suppression, by address, one page at a time."""
    query = select(Suppression)
    if reason is not None:
        query = query.where(Suppression.reason == reason)
    return _page(session, query, after, limit)


def search(
    session: Session,
    query: str,
    *,
    contains: bool = False,
    after: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> SuppressionPage:
    """Suppressions whose address starts with ``query`` (case-insensitive),
    or, for ``@domain``, every address at that domain, or with
    ``contains``, every address holding ``query``. Raises
    ``SuppressionError`` for an empty or oversized query."""
    text = query.strip().lower()
    if not text:
        raise SuppressionError("search: the query is empty")
    if len(text) > MAX_QUERY_LENGTH or "\x00" in text:
        raise SuppressionError(f"search: at most {MAX_QUERY_LENGTH} characters, no NUL")
    column = Suppression.address_lower
    if contains:
        condition = func.instr(column, text) > 0 if _is_sqlite(session) else column.contains(text)
        selected = select(Suppression).where(condition)
    elif text.startswith("@") and "@" not in text[1:]:
        selected = select(Suppression).where(Suppression.domain == text[1:])
    else:
        # A range over the unique index: LIKE 'prefix%' would need a
        # special operator class on PostgreSQL and escaping of % and _.
        selected = select(Suppression).where(column >= text, column < text + _AFTER_ALL)
    return _page(session, selected, after, limit)


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _page(
    session: Session, query: Select[Suppression], after: str | None, limit: int
) -> SuppressionPage:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise SuppressionError(f"page size: between 1 and {MAX_PAGE_SIZE}")
    if after is not None:
        query = query.where(Suppression.address_lower > after.strip().lower())
    rows: Sequence[Suppression] = session.scalars(
        query.order_by(Suppression.address_lower).limit(limit + 1)
    ).all()
    entries = [_entry(row) for row in rows[:limit]]
    next_after = rows[limit - 1].address_lower if len(rows) > limit else None
    return SuppressionPage(entries, next_after)


def removals(session: Session, address: str) -> list[SuppressionRemoval]:
    """The removal history of ``address``, oldest first."""
    _, key = address_key(address)
    return list(
        session.scalars(
            select(SuppressionRemoval)
            .where(SuppressionRemoval.address_lower == key)
            .order_by(SuppressionRemoval.id)
        )
    )


def _entry(row: Suppression) -> SuppressionEntry:
    return SuppressionEntry(row.address, SuppressionReason(row.reason), row.source, row.created_at)


def recent_removals(session: Session, limit: int = 20) -> list[SuppressionRemoval]:
    """The latest removals of any address, newest first (the page's
    history; ``removals`` gives one address's whole history)."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise SuppressionError(f"page size: between 1 and {MAX_PAGE_SIZE}")
    return list(
        session.scalars(
            select(SuppressionRemoval).order_by(SuppressionRemoval.id.desc()).limit(limit)
        )
    )
