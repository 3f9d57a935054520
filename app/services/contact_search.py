"""Finding contacts: the contacts page's search, its pages, and a contact's
activity log.

Rules:

- **Search text** matches the start of the address, of the first name, of
  the last name or of the company, ignoring case; two or more words also
  match a first name starting with the first word and a last name starting
  with the rest ("ann smi" finds Ann Smith). Every test is a range over an
  index (``uq_contacts_email_lower`` and the ``lower(column)`` expression
  indexes of migration 0013), never ``LIKE '%…%'``, so a search costs the
  same at 1,000,000 contacts as at 1,000. Case folding is the database's
  ``lower()``: on SQLite only ASCII letters fold (as everywhere in Sluice).
- **Filters** combine with the text by AND: the address status (valid,
  invalid), the opt-out flag, membership of a target list.
- **Pages** are keyset pages, newest contact first (by id): "older" gives
  the contacts before the last one shown, "newer" the ones after the first;
  a deep page costs what the first does. No page counts all matches.
- The same search, as a ``Select`` of contact ids, populates a target list
  (``matching_ids``), set-based.
- **Activity log**: the contact's campaign log rows (every email, open,
  click, bounce, opt-out, complaint, auto-reply …), newest first, keyset
  pages over ``ix_campaign_log_contact_id_occurred_at``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    SQLColumnExpression,
    and_,
    func,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from app.models import (
    Campaign,
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    EmailStatus,
    MassEmail,
    TargetList,
    TargetListMember,
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_QUERY_LENGTH = 200


class SearchError(ValueError):
    """A search that cannot be run; the message names the field."""


@dataclass(frozen=True)
class ContactSearch:
    """What the contacts page searches for (see the module's rules)."""

    text: str = ""
    status: EmailStatus | None = None
    opted_out: bool | None = None
    list_id: int | None = None

    def __post_init__(self) -> None:
        cleaned = " ".join(self.text.split())
        if len(cleaned) > MAX_QUERY_LENGTH:
            raise SearchError(f"search: at most {MAX_QUERY_LENGTH} characters")
        if "\x00" in cleaned:
            raise SearchError("search: contains a NUL character")
        object.__setattr__(self, "text", cleaned)

    @property
    def is_empty(self) -> bool:
        return (
            not self.text
            and self.status is None
            and self.opted_out is None
            and (self.list_id is None)
        )

    def where_clause(self, session: Session) -> ColumnElement[bool]:
        """The SQL condition on ``Contact`` for ``session``'s database;
        every value a bound parameter."""
        conditions = self._conditions(_is_sqlite(session), _byte_ordered(session))
        return and_(true(), *conditions)

    def _conditions(self, sqlite: bool, byte_ordered: bool) -> Iterator[ColumnElement[bool]]:
        if self.text:
            yield _text_condition(self.text, sqlite, byte_ordered)
        if self.status is not None:
            yield Contact.email_status == self.status
        if self.opted_out is not None:
            yield Contact.opted_out == self.opted_out
        if self.list_id is not None:
            yield (
                select(TargetListMember.contact_id)
                .where(
                    TargetListMember.target_list_id == self.list_id,
                    TargetListMember.contact_id == Contact.id,
                )
                .exists()
            )


def _starts_with(
    column: SQLColumnExpression[Any], prefix: str, byte_ordered: bool
) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``: a range the column's index answers.
    Under a collation that is not byte order, other strings may fall inside
    the range ("company57x" between "company 57" and "company 58" when
    spaces are ignored), so an exact test of the first characters is added;
    it is left out otherwise because the planner cannot estimate it and then
    takes a frequent prefix for a rare one (a 1 % match took 80 ms instead
    of 6 ms at 1,000,000 contacts)."""
    bounds = [column >= prefix]
    last = ord(prefix[-1])
    if last < 0x10FFFF:
        bounds.append(column < prefix[:-1] + chr(last + 1))
    if not byte_ordered:
        bounds.append(func.substr(column, 1, len(prefix)) == prefix)
    return and_(*bounds)


_BYTE_ORDER_COLLATIONS = frozenset({"c", "posix", "c.utf-8", "c.utf8", "ucs_basic"})
_byte_ordered_databases: dict[str, bool] = {}


def _byte_ordered(session: Session) -> bool:
    """Whether text compares in code point order: SQLite's BINARY, or a
    PostgreSQL database created with the C collation (asked once per
    database)."""
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        return True
    key = bind.engine.url.render_as_string(hide_password=True)
    if key not in _byte_ordered_databases:
        collation = session.scalar(
            sql_text("SELECT datcollate FROM pg_database WHERE datname = current_database()")
        )
        _byte_ordered_databases[key] = str(collation).lower() in _BYTE_ORDER_COLLATIONS
    return _byte_ordered_databases[key]


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _name_key(text: str, sqlite: bool) -> str:
    """The text as the database's ``lower()`` of a name would be: SQLite
    folds ASCII letters only."""
    if sqlite:
        return "".join(char.lower() if char.isascii() else char for char in text)
    return text.lower()


def _text_condition(search_text: str, sqlite: bool, byte_ordered: bool) -> ColumnElement[bool]:
    address_key = search_text.lower()  # as addresses.normalise_address made email_lower
    key = _name_key(search_text, sqlite)
    first_name = func.lower(Contact.first_name)
    last_name = func.lower(Contact.last_name)
    company = func.lower(Contact.company)
    conditions = [
        _starts_with(Contact.email_lower, address_key, byte_ordered),
        _starts_with(first_name, key, byte_ordered),
        _starts_with(last_name, key, byte_ordered),
        _starts_with(company, key, byte_ordered),
    ]
    first, _, rest = key.partition(" ")
    if rest:
        conditions.append(
            and_(
                _starts_with(first_name, first, byte_ordered),
                _starts_with(last_name, rest, byte_ordered),
            )
        )
    return or_(*conditions)


def matching_ids(session: Session, search: ContactSearch) -> Select[int]:
    """The ids of every contact the search finds (for ``INSERT … SELECT``)."""
    return select(Contact.id).where(search.where_clause(session))


@dataclass(frozen=True)
class ContactRow:
    id: int
    email: str | None
    first_name: str
    last_name: str
    company: str
    email_status: EmailStatus
    opted_out: bool
    created_at: datetime

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)


@dataclass(frozen=True)
class ContactPage:
    """One page, newest first. ``older``: the cursor of the next (older)
    page, None on the last; ``newer``: the cursor of the previous page,
    None on the first."""

    contacts: list[ContactRow]
    older: int | None
    newer: int | None


def _page_size(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise SearchError(f"page size: between 1 and {MAX_PAGE_SIZE}")
    return limit


def contacts_page(
    session: Session,
    search: ContactSearch,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> ContactPage:
    """The contacts the search finds, ``limit`` at a time, newest first:
    those older than contact ``before``, or newer than ``after``, or the
    newest. One query of ``limit + 1`` rows."""
    limit = _page_size(limit)
    columns = (
        Contact.id,
        Contact.email,
        Contact.first_name,
        Contact.last_name,
        Contact.company,
        Contact.email_status,
        Contact.opted_out,
        Contact.created_at,
    )
    query = select(*columns).where(search.where_clause(session))
    if after is not None:
        query = query.where(Contact.id > after).order_by(Contact.id.asc())
    else:
        if before is not None:
            query = query.where(Contact.id < before)
        query = query.order_by(Contact.id.desc())
    rows = [ContactRow(*row) for row in session.execute(query.limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    if after is not None:
        rows.reverse()
        older = rows[-1].id if rows else None
        newer = rows[0].id if more and rows else None
    else:
        older = rows[-1].id if more else None
        newer = rows[0].id if before is not None and rows else None
    return ContactPage(rows, older, newer)


# ---------------------------------------------------------------- one contact


@dataclass(frozen=True)
class ActivityRow:
    id: int
    event: CampaignLogEvent
    occurred_at: datetime
    detail: dict[str, Any]
    mass_email_id: int | None
    mass_email_name: str | None
    campaign_name: str | None


@dataclass(frozen=True)
class ActivityPage:
    """One page of a contact's activity log, newest first; ``older`` is the
    cursor (a log entry's id) of the next page, None on the last."""

    entries: list[ActivityRow]
    older: int | None


def activity_page(
    session: Session,
    contact_id: int,
    *,
    before: int | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> ActivityPage:
    """The contact's campaign log, newest first (by time, then id), the
    entries after log entry ``before`` in that order."""
    limit = _page_size(limit)
    query = (
        select(
            CampaignLogEntry.id,
            CampaignLogEntry.event,
            CampaignLogEntry.occurred_at,
            CampaignLogEntry.detail,
            CampaignLogEntry.mass_email_id,
            MassEmail.name,
            Campaign.name,
        )
        .outerjoin(MassEmail, MassEmail.id == CampaignLogEntry.mass_email_id)
        .outerjoin(Campaign, Campaign.id == MassEmail.campaign_id)
        .where(CampaignLogEntry.contact_id == contact_id)
    )
    if before is not None:
        cursor = (
            select(CampaignLogEntry.occurred_at)
            .where(CampaignLogEntry.id == before)
            .scalar_subquery()
        )
        query = query.where(
            tuple_(CampaignLogEntry.occurred_at, CampaignLogEntry.id) < tuple_(cursor, before)
        )
    query = query.order_by(CampaignLogEntry.occurred_at.desc(), CampaignLogEntry.id.desc())
    rows = [
        ActivityRow(entry_id, CampaignLogEvent(event), when, dict(detail or {}), *rest)
        for entry_id, event, when, detail, *rest in session.execute(query.limit(limit + 1))
    ]
    more = len(rows) > limit
    rows = rows[:limit]
    return ActivityPage(rows, rows[-1].id if more else None)


def contact_lists(session: Session, contact_id: int) -> Sequence[tuple[int, str]]:
    """The target lists the contact is on, as (id, name), by name."""
    query = (
        select(TargetList.id, TargetList.name)
        .join(TargetListMember, TargetListMember.target_list_id == TargetList.id)
        .where(TargetListMember.contact_id == contact_id)
        .order_by(TargetList.name)
    )
    return [(list_id, name) for list_id, name in session.execute(query)]
