"""Target lists, their members, and saved contact filters.

Rules:
- a target list has a unique, non-empty name of at most 200 characters
  (whitespace runs collapse to one space) and a free-text description;
- members are added and removed set-based: one ``INSERT … SELECT`` or one
  ``DELETE`` per call (per chunk of 10,000 ids when a Python collection is
  given), never a Python loop over members; adding a contact that is already
  a member, or an id no contact has, changes nothing; both return how many
  memberships changed;
- a ``ContactFilter`` combines its criteria with AND; an empty filter matches
  every contact;
- ``populate_from_filter`` applies a filter once, like EspoCRM's
  populate-from-report: contacts that match it later are not added by
  themselves;
- ``list_from_campaign_log`` makes a new list of the contacts with chosen
  events in one mass email's campaign log ("everyone who clicked"), one
  ``INSERT … SELECT`` over ``ix_campaign_log_mass_email_id_event``;
  contacts deleted since are left out;
- a list that a campaign (not deleted) sends to or excludes cannot be
  deleted: its audience would change without anyone noticing;
- member pages are keyset pages, newest member id first.
- ``target_list_from_results`` makes a new list of a mass email's
  recipients of one status (or everyone who opened or clicked), once, in
  one ``INSERT … SELECT``; the list is not created when the name is bad.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from itertools import islice
from typing import Any
from typing import cast as cast_type

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    func,
    literal,
    select,
    true,
    union_all,
)
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import (
    Campaign,
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    EmailStatus,
    MassEmail,
    QueueItem,
    SavedFilter,
    TargetList,
    TargetListMember,
    campaign_excluding_lists,
    campaign_target_lists,
)
from app.models.base import UTCDateTime
from app.models.contacts import AUDIENCE_TYPE_MAX_LENGTH
from app.services.bulk_sql import insert_ignoring_conflicts
from app.services.results import RecipientFilter, get_results_mass_email, recipient_condition

NAME_MAX_LENGTH = 200
CUSTOM_FIELD_KEY_MAX_LENGTH = 100
# Keeps each statement's bound parameters far below SQLite's 32,766 limit.
ID_CHUNK_SIZE = 10_000

ContactIds = Select[int] | Collection[int]


class TargetListError(ValueError):
    """A target list or a saved filter cannot be saved; the message says why."""


class ContactFilterError(TargetListError):
    """A contact filter is malformed; the message names the field."""


@dataclass(frozen=True)
class TargetListSummary:
    name: str
    description: str
    member_count: int
    id: int = 0


def clean_list_name(raw: str, what: str = "list name") -> str:
    """Trim and collapse whitespace; refuse empty, overlong and NUL names."""
    name = " ".join(raw.split())
    if not name:
        raise TargetListError(f"{what}: must not be empty")
    if len(name) > NAME_MAX_LENGTH:
        raise TargetListError(f"{what}: at most {NAME_MAX_LENGTH} characters (got {len(name)})")
    if "\x00" in name:
        raise TargetListError(f"{what}: contains a NUL character")
    return name


def create_target_list(session: Session, name: str, description: str, clock: Clock) -> TargetList:
    """Create an empty target list; raise ``TargetListError`` when the name is
    empty, too long or already taken."""
    name = clean_list_name(name)
    if "\x00" in description:
        raise TargetListError("description: contains a NUL character")
    if session.scalar(select(TargetList.id).where(TargetList.name == name)) is not None:
        raise TargetListError(f"a target list named {name!r} already exists")
    now = clock.now()
    target_list = TargetList(
        name=name, description=description.strip(), created_at=now, updated_at=now
    )
    session.add(target_list)
    session.flush()
    return target_list


def get_target_list(session: Session, name: str) -> TargetList:
    """The list called ``name``; ``LookupError`` naming it when there is none."""
    cleaned = " ".join(name.split())
    target_list = session.scalar(select(TargetList).where(TargetList.name == cleaned))
    if target_list is None:
        raise LookupError(f"no target list named {cleaned!r}")
    return target_list


def _chunks(ids: Collection[int]) -> Iterator[list[int]]:
    iterator = iter(ids)
    while chunk := list(islice(iterator, ID_CHUNK_SIZE)):
        yield chunk


def _id_selects(contact_ids: ContactIds) -> Iterator[Select[int] | list[int]]:
    if isinstance(contact_ids, Select):
        yield contact_ids
    else:
        yield from _chunks(contact_ids)


def add_members(
    session: Session, target_list: TargetList, contact_ids: ContactIds, clock: Clock
) -> int:
    """Add the contacts to the list; return how many were not members yet.

    ``contact_ids`` is a one-column ``Select`` of contact ids (run inside the
    database) or a collection of ids. Ids of no contact are ignored.
    """
    now = clock.now()
    added = 0
    for ids in _id_selects(contact_ids):
        # Selecting from contacts drops unknown ids and duplicates in ``ids``;
        # ON CONFLICT DO NOTHING skips existing members even when another
        # session adds the same contact concurrently.
        rows = select(literal(target_list.id), Contact.id, literal(now, UTCDateTime())).where(
            Contact.id.in_(ids)
        )
        statement = (
            insert_ignoring_conflicts(session, TargetListMember)
            .from_select(["target_list_id", "contact_id", "added_at"], rows)
            # rowcount of an INSERT is only kept on request (psycopg resets it).
            .execution_options(preserve_rowcount=True)
        )
        added += _changed_rows(session.execute(statement))
    _touch(target_list, added, now)
    return added


def remove_members(
    session: Session, target_list: TargetList, contact_ids: ContactIds, clock: Clock
) -> int:
    """Remove the contacts from the list; return how many were members."""
    removed = 0
    for ids in _id_selects(contact_ids):
        statement = delete(TargetListMember).where(
            TargetListMember.target_list_id == target_list.id,
            TargetListMember.contact_id.in_(ids),
        )
        removed += _changed_rows(session.execute(statement))
    _touch(target_list, removed, clock.now())
    return removed


def _changed_rows(result: Result[Any]) -> int:
    # A DML statement always yields a CursorResult; this narrows the type.
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected a CursorResult, got {type(result).__name__}")
    return result.rowcount


def _touch(target_list: TargetList, changed: int, now: datetime) -> None:
    if changed:
        target_list.updated_at = now


# The lists page counts each list's members up to this many; a bigger list
# shows as "more than" (counting is reading every membership: 1,600,000 of
# them took 250 ms on PostgreSQL; 5 lists capped at 100,000 still 85 ms).
# A list's own page counts exactly.
COUNT_CAP = 10_000


def list_overview(session: Session, count_cap: int = COUNT_CAP) -> list[TargetListSummary]:
    """Every list with its member count up to ``count_cap + 1`` (more means
    "more than ``count_cap``"), by name, in one statement whose cost is
    bounded by the cap whatever the lists' sizes."""
    capped = (
        select(TargetListMember.contact_id)
        .where(TargetListMember.target_list_id == TargetList.id)
        .limit(count_cap + 1)
        .correlate(TargetList)
        .subquery("capped")
    )
    count = select(func.count()).select_from(capped).scalar_subquery()
    statement = select(TargetList.name, TargetList.description, count, TargetList.id).order_by(
        TargetList.name
    )
    return [TargetListSummary(*row) for row in session.execute(statement)]


def list_summaries(session: Session) -> Sequence[TargetListSummary]:
    """Every list with its member count, by name (one ``GROUP BY`` query)."""
    statement = (
        select(
            TargetList.name,
            TargetList.description,
            func.count(TargetListMember.contact_id),
            TargetList.id,
        )
        .outerjoin(TargetListMember, TargetListMember.target_list_id == TargetList.id)
        .group_by(TargetList.id, TargetList.name, TargetList.description)
        .order_by(TargetList.name)
    )
    return [TargetListSummary(*row) for row in session.execute(statement)]


@dataclass(frozen=True)
class ContactFilter:
    """Criteria for choosing contacts, all combined with AND.

    - ``audience_types``: the contact's type is one of these, ignoring case
      (empty: any);
    - ``company``: equal, ignoring case (on SQLite only ASCII letters fold);
    - ``created_from`` (inclusive) / ``created_to`` (exclusive): aware datetimes;
    - ``opted_out``: the mass-email opt-out flag (None: either);
    - ``custom_field``: ``(key, value)``: the custom field ``key`` equals
      ``value`` as text. String and integer values compare the same on both
      databases; JSON booleans read as ``1``/``0`` on SQLite but
      ``true``/``false`` on PostgreSQL, so keep flags you filter on as text.
    """

    audience_types: tuple[str, ...] = ()
    company: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    opted_out: bool | None = None
    custom_field: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        for type_name in self.audience_types:
            _check_audience_type(type_name)
        # Types are stored lower-case (``clean_audience_type``); "Lead" means "lead".
        normalised_types = tuple(type_name.strip().lower() for type_name in self.audience_types)
        object.__setattr__(self, "audience_types", normalised_types)
        for field_name in ("created_from", "created_to"):
            value = getattr(self, field_name)
            if value is not None and value.tzinfo is None:
                raise ContactFilterError(f"{field_name}: give a timezone-aware datetime")
        if self.created_from and self.created_to and self.created_from >= self.created_to:
            raise ContactFilterError("created_from: must be before created_to")
        if self.custom_field is not None:
            _check_custom_field_key(self.custom_field[0])

    def where_clause(self) -> ColumnElement[bool]:
        """The SQL condition on ``Contact``; every value is a bound parameter."""
        return and_(true(), *self._conditions())

    def _conditions(self) -> Iterator[ColumnElement[bool]]:
        if self.audience_types:
            yield Contact.audience_type.in_(self.audience_types)
        if self.company is not None:
            # lower() on both sides: the same folding whatever the database.
            yield func.lower(Contact.company) == func.lower(self.company)
        if self.created_from is not None:
            yield Contact.created_at >= self.created_from
        if self.created_to is not None:
            yield Contact.created_at < self.created_to
        if self.opted_out is not None:
            yield Contact.opted_out == self.opted_out
        if self.custom_field is not None:
            key, value = self.custom_field
            # The JSON index keeps the key a bound parameter on both dialects
            # (SQLite: JSON_EXTRACT(col, '$."key"'); PostgreSQL: col ->> key).
            yield Contact.custom_fields[key].as_string() == value

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``saved_filters.criteria`` column)."""
        return {
            "audience_types": list(self.audience_types),
            "company": self.company,
            "created_from": _iso(self.created_from),
            "created_to": _iso(self.created_to),
            "opted_out": self.opted_out,
            "custom_field": list(self.custom_field) if self.custom_field else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContactFilter:
        """Validate and build; ``ContactFilterError`` names the bad field."""
        unknown = sorted(set(data) - _FILTER_FIELDS)
        if unknown:
            raise ContactFilterError(f"unknown filter field(s): {', '.join(unknown)}")
        return cls(
            audience_types=tuple(_string_list(data.get("audience_types"), "audience_types")),
            company=_optional_string(data.get("company"), "company"),
            created_from=_optional_datetime(data.get("created_from"), "created_from"),
            created_to=_optional_datetime(data.get("created_to"), "created_to"),
            opted_out=_optional_bool(data.get("opted_out"), "opted_out"),
            custom_field=_optional_pair(data.get("custom_field"), "custom_field"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ContactFilter:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ContactFilterError(f"the filter is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise ContactFilterError("the filter must be a JSON object")
        return cls.from_dict(data)


_FILTER_FIELDS = frozenset(field.name for field in fields(ContactFilter))


def _check_audience_type(value: object) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > AUDIENCE_TYPE_MAX_LENGTH:
        raise ContactFilterError(
            f"audience_types: each must be a name of 1 to {AUDIENCE_TYPE_MAX_LENGTH} characters"
        )


def _check_custom_field_key(key: object) -> None:
    if not isinstance(key, str) or not key or len(key) > CUSTOM_FIELD_KEY_MAX_LENGTH:
        raise ContactFilterError(
            f"custom_field: the key must be 1 to {CUSTOM_FIELD_KEY_MAX_LENGTH} characters"
        )
    # SQLite's JSON path quotes the key in double quotes; one inside would
    # break the path.
    if '"' in key or "\\" in key:
        raise ContactFilterError('custom_field: the key must not contain " or \\')


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _string_list(value: object, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ContactFilterError(f"{field}: must be a list of strings")
    return value


def _optional_string(value: object, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ContactFilterError(f"{field}: must be a string or null")
    return value


def _optional_bool(value: object, field: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ContactFilterError(f"{field}: must be true, false or null")
    return value


def _optional_datetime(value: object, field: str) -> datetime | None:
    text = _optional_string(value, field)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ContactFilterError(f"{field}: {text!r} is not an ISO 8601 date and time") from None


def _optional_pair(value: object, field: str) -> tuple[str, str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(item, str) for item in value)
    ):
        raise ContactFilterError(f'{field}: must be ["key", "value"] or null')
    return (value[0], value[1])


def save_filter(
    session: Session, name: str, contact_filter: ContactFilter, clock: Clock
) -> SavedFilter:
    """Keep ``contact_filter`` under a unique ``name``."""
    name = clean_list_name(name, "filter name")
    if session.scalar(select(SavedFilter.id).where(SavedFilter.name == name)) is not None:
        raise TargetListError(f"a saved filter named {name!r} already exists")
    saved = SavedFilter(name=name, criteria=contact_filter.to_dict(), created_at=clock.now())
    session.add(saved)
    session.flush()
    return saved


def get_saved_filter(session: Session, name: str) -> ContactFilter:
    """The filter saved as ``name``; ``LookupError`` naming it when there is none."""
    cleaned = " ".join(name.split())
    criteria = session.scalar(select(SavedFilter.criteria).where(SavedFilter.name == cleaned))
    if criteria is None:
        raise LookupError(f"no saved filter named {cleaned!r}")
    return ContactFilter.from_dict(criteria)


def populate_from_filter(
    session: Session, target_list: TargetList, contact_filter: ContactFilter, clock: Clock
) -> int:
    """Add every contact matching the filter now (one ``INSERT … SELECT``);
    return how many were not members yet."""
    matching = select(Contact.id).where(contact_filter.where_clause())
    return add_members(session, target_list, matching, clock)


# ---------------------------------------------------------------- the web pages


def target_list_by_id(session: Session, list_id: int) -> TargetList:
    """The list with ``list_id``; ``LookupError`` when there is none."""
    target_list = session.get(TargetList, list_id)
    if target_list is None:
        raise LookupError(f"no target list with id {list_id}")
    return target_list


def member_count(session: Session, target_list: TargetList, cap: int | None = None) -> int:
    """How many contacts are on the list, counted up to ``cap + 1`` when a
    cap is given (more means "more than ``cap``"): an index-only range of
    the primary key, bounded by the cap."""
    members = select(TargetListMember.contact_id).where(
        TargetListMember.target_list_id == target_list.id
    )
    if cap is not None:
        members = members.limit(cap + 1)
    count = session.scalar(select(func.count()).select_from(members.subquery()))
    return int(count or 0)


@dataclass(frozen=True)
class MemberRow:
    contact_id: int
    email: str | None
    first_name: str
    last_name: str
    company: str
    email_status: EmailStatus
    opted_out: bool
    added_at: datetime

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)


@dataclass(frozen=True)
class MemberPage:
    """Members, newest contact id first; ``older`` is the next page's
    cursor (a contact id), None on the last page."""

    members: list[MemberRow]
    older: int | None


MEMBER_PAGE_MAX = 500


def members_page(
    session: Session, target_list: TargetList, *, before: int | None = None, limit: int = 50
) -> MemberPage:
    """One page of the list's members: those with a contact id below
    ``before`` (all when None), ``limit`` at most, over the primary key."""
    if not 1 <= limit <= MEMBER_PAGE_MAX:
        raise TargetListError(f"page size: between 1 and {MEMBER_PAGE_MAX}")
    # The page of memberships first (a range of the primary key, read
    # backwards), then their contacts: joined before the LIMIT, PostgreSQL
    # may merge-join the whole contacts table from its highest id down.
    memberships = select(TargetListMember.contact_id, TargetListMember.added_at).where(
        TargetListMember.target_list_id == target_list.id
    )
    if before is not None:
        memberships = memberships.where(TargetListMember.contact_id < before)
    page = (
        memberships.order_by(TargetListMember.contact_id.desc()).limit(limit + 1).subquery("page")
    )
    query = (
        select(
            Contact.id,
            Contact.email,
            Contact.first_name,
            Contact.last_name,
            Contact.company,
            Contact.email_status,
            Contact.opted_out,
            page.c.added_at,
        )
        .join(page, page.c.contact_id == Contact.id)
        .order_by(Contact.id.desc())
    )
    rows = [MemberRow(*row) for row in session.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return MemberPage(rows, rows[-1].contact_id if more else None)


def campaigns_using(session: Session, target_list: TargetList) -> list[str]:
    """Names of the campaigns (not deleted) that send to or exclude the list."""
    uses = union_all(
        select(campaign_target_lists.c.campaign_id).where(
            campaign_target_lists.c.target_list_id == target_list.id
        ),
        select(campaign_excluding_lists.c.campaign_id).where(
            campaign_excluding_lists.c.target_list_id == target_list.id
        ),
    ).subquery()
    query = (
        select(Campaign.name)
        .where(Campaign.id.in_(select(uses.c.campaign_id)), Campaign.deleted_at.is_(None))
        .order_by(Campaign.name)
    )
    return list(session.scalars(query))


def delete_target_list(session: Session, target_list: TargetList) -> None:
    """Delete the list and its memberships (the contacts stay). Raises
    ``TargetListError`` naming the campaigns that still use it."""
    using = campaigns_using(session, target_list)
    if using:
        names = ", ".join(repr(name) for name in using)
        raise TargetListError(f"the list is used by campaign(s) {names}: remove it from them first")
    session.delete(target_list)
    session.flush()


# Events a list can be made from, in the order the form offers them.
LOG_EVENTS_FOR_LISTS: tuple[CampaignLogEvent, ...] = (
    CampaignLogEvent.SENT,
    CampaignLogEvent.OPENED,
    CampaignLogEvent.CLICKED,
    CampaignLogEvent.BOUNCED_HARD,
    CampaignLogEvent.BOUNCED_SOFT,
    CampaignLogEvent.OPTED_OUT,
    CampaignLogEvent.COMPLAINT,
    CampaignLogEvent.AUTOREPLY,
    CampaignLogEvent.DROPPED,
    CampaignLogEvent.FAILED,
)


@dataclass(frozen=True)
class LogSource:
    """A mass email whose campaign log a list can be made from."""

    mass_email_id: int
    name: str
    campaign_name: str

    @property
    def label(self) -> str:
        return f"{self.campaign_name}: {self.name}"


def log_sources(session: Session, limit: int = 500) -> list[LogSource]:
    """The mass emails that have left draft (they may have a log), newest
    first, deleted ones included (their log stays)."""
    query = (
        select(MassEmail.id, MassEmail.name, Campaign.name)
        .join(Campaign, Campaign.id == MassEmail.campaign_id)
        .where(MassEmail.queue_built_at.is_not(None))
        .order_by(MassEmail.id.desc())
        .limit(limit)
    )
    return [LogSource(*row) for row in session.execute(query)]


def list_from_campaign_log(
    session: Session,
    name: str,
    *,
    mass_email_id: int,
    events: Collection[CampaignLogEvent],
    clock: Clock,
    description: str = "",
) -> tuple[TargetList, int]:
    """A new list of every contact with one of ``events`` in the campaign
    log of mass email ``mass_email_id`` (one ``INSERT … SELECT``); returns
    the list and its member count. ``TargetListError`` for a bad name, no
    event, or an unknown mass email; nothing is created then."""
    if not events:
        raise TargetListError("events: choose at least one")
    if session.get(MassEmail, mass_email_id) is None:
        raise TargetListError(f"mass email: there is no mass email {mass_email_id}")
    target_list = create_target_list(session, name, description, clock)
    # contact_id IS NOT NULL below; the cast only tells the type checker.
    logged = cast_type(Select[int], select(CampaignLogEntry.contact_id)).where(
        CampaignLogEntry.mass_email_id == mass_email_id,
        CampaignLogEntry.event.in_([CampaignLogEvent(event) for event in events]),
        CampaignLogEntry.contact_id.is_not(None),
    )
    added = add_members(session, target_list, logged, clock)
    return target_list, added


def list_choices(session: Session) -> list[tuple[int, str]]:
    """Every list as (id, name), by name, for a form's choice (no counts)."""
    query = select(TargetList.id, TargetList.name).order_by(TargetList.name)
    return [(list_id, name) for list_id, name in session.execute(query)]


def target_list_from_results(
    session: Session,
    mass_email_id: int,
    chosen: RecipientFilter,
    *,
    name: str,
    description: str,
    clock: Clock,
) -> tuple[TargetList, int]:
    """A new target list of the mass email's recipients that match
    ``chosen`` (say, everyone who clicked), set-based: one ``INSERT …
    SELECT`` of their contact ids. Recipients whose contact was deleted
    are left out. Returns the list and how many contacts it got; raises
    ``TargetListError`` for a bad or taken name (nothing created) and
    ``ResultsError`` for a mass email without results."""
    get_results_mass_email(session, mass_email_id)
    target_list = create_target_list(session, name, description, clock)
    contact_ids = select(QueueItem.contact_id).where(
        QueueItem.mass_email_id == mass_email_id,
        QueueItem.contact_id.is_not(None),
        recipient_condition(chosen),
    )
    # add_members selects from contacts WHERE id IN (this subquery).
    added = add_members(session, target_list, contact_ids, clock)  # type: ignore[arg-type]
    return target_list, added
