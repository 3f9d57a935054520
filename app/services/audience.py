"""Audience resolution: who a mass email to some target lists would reach.

``audience_select`` is the one definition of the audience; the dispatcher
builds its queue from it with ``INSERT … SELECT``, and ``resolve_audience``
counts it. The rules:

1. Members are the contacts on at least one target list. No target list
   means nobody.
2. Exclusion by contact: a member that is on any excluding list is excluded.
3. Exclusion by address: a member whose address equals, ignoring case (the
   ``email_lower`` key), the address of any contact on an excluding list is
   excluded. A contact without an address never matches by address.
   So a list that is both a target and an excluding list excludes all of its
   members.
4. Excluded contacts do not appear at all; ``resolve_audience`` counts them
   as ``excluded``.
5. Every other member appears exactly once, with the first category that
   applies: ``no_address`` (no address or an empty one), ``invalid_address``
   (``email_status = 'invalid'``), ``opted_out`` (the mass-email opt-out),
   otherwise ``recipient``. Only recipients are mailed; the dispatcher records
   the others as skipped.
6. Deduplication by address: each contact appears once (membership is tested
   with ``EXISTS``, never joined, so being on several lists adds no row), and
   the unique index ``uq_contacts_email_lower`` guarantees that no two
   contacts share an address ignoring case, so each address appears at most
   once. The query adds no ``DISTINCT`` of its own: that would sort the whole
   audience to re-check what the index already enforces.

Everything is set-based SQL: correlated ``EXISTS`` / ``NOT EXISTS`` subqueries,
which PostgreSQL and SQLite run as semi- and anti-joins, and counts by
``GROUP BY``. Never ``NOT IN`` over a nullable column: one NULL in the
subquery makes ``NOT IN`` unknown for every row and silently empties the
audience.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Exists,
    Select,
    SQLColumnExpression,
    String,
    case,
    cast,
    false,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from app.models import Contact, EmailStatus, TargetListMember


class AudienceCategory(enum.StrEnum):
    """Rule 5: what the dispatcher does with an audience row."""

    RECIPIENT = "recipient"
    OPTED_OUT = "opted_out"
    INVALID_ADDRESS = "invalid_address"
    NO_ADDRESS = "no_address"


@dataclass(frozen=True)
class AudienceSummary:
    """How many target-list members fall in each category, and how many the
    exclusion rules removed."""

    recipient: int = 0
    opted_out: int = 0
    invalid_address: int = 0
    no_address: int = 0
    excluded: int = 0

    @property
    def audience(self) -> int:
        """Contacts in the audience: recipients plus those to be skipped."""
        return self.recipient + self.opted_out + self.invalid_address + self.no_address

    @property
    def members(self) -> int:
        """Distinct contacts on the target lists, excluded ones included."""
        return self.audience + self.excluded


def _on_any_list(contact_id: SQLColumnExpression[int], list_ids: tuple[int, ...]) -> Exists:
    membership = aliased(TargetListMember)
    return (
        select(membership.contact_id)
        .where(membership.contact_id == contact_id, membership.target_list_id.in_(list_ids))
        .exists()
    )


def _address_on_any_list(
    email_lower: SQLColumnExpression[str | None], list_ids: tuple[int, ...]
) -> Exists:
    membership = aliased(TargetListMember)
    listed = aliased(Contact)
    return (
        select(listed.id)
        .join(membership, membership.contact_id == listed.id)
        .where(
            membership.target_list_id.in_(list_ids),
            # NULL never equals anything; an empty address is no address either.
            listed.email_lower == email_lower,
            listed.email_lower != "",
        )
        .exists()
    )


def _membership_condition(target_list_ids: tuple[int, ...]) -> ColumnElement[bool]:
    if not target_list_ids:
        return false()
    return _on_any_list(Contact.id, target_list_ids)


def _exclusion_conditions(excluding_list_ids: tuple[int, ...]) -> list[ColumnElement[bool]]:
    if not excluding_list_ids:
        return []
    return [
        ~_on_any_list(Contact.id, excluding_list_ids),
        ~_address_on_any_list(Contact.email_lower, excluding_list_ids),
    ]


def _category() -> ColumnElement[str]:
    # The order of the WHEN clauses is the precedence of rule 5.
    return case(
        (
            or_(Contact.email.is_(None), Contact.email == ""),
            literal(AudienceCategory.NO_ADDRESS.value),
        ),
        (
            Contact.email_status == EmailStatus.INVALID,
            literal(AudienceCategory.INVALID_ADDRESS.value),
        ),
        (Contact.opted_out, literal(AudienceCategory.OPTED_OUT.value)),
        else_=literal(AudienceCategory.RECIPIENT.value),
    )


def audience_select(
    target_list_ids: Iterable[int], excluding_list_ids: Iterable[int]
) -> Select[int, str | None, str]:
    """The audience as rows ``(contact_id, email, category)``; see the module
    docstring for the rules. Excluded contacts are not in it."""
    return select(
        Contact.id.label("contact_id"),
        Contact.email.label("email"),
        _category().label("category"),
    ).where(
        _membership_condition(tuple(target_list_ids)),
        *_exclusion_conditions(tuple(excluding_list_ids)),
    )


def resolve_audience(
    session: Session, target_list_ids: Iterable[int], excluding_list_ids: Iterable[int]
) -> AudienceSummary:
    """Count the audience per category, and the members the exclusion rules
    removed, in one statement (``GROUP BY`` in the database, no rows loaded)."""
    targets = tuple(target_list_ids)
    audience = audience_select(targets, excluding_list_ids).subquery("audience")
    per_category = select(audience.c.category, func.count()).group_by(audience.c.category)
    # The member count shares the statement, hence the snapshot, so
    # ``excluded`` never mixes two states of the lists.
    all_members = (
        select(cast(null(), String), func.count())
        .select_from(Contact)
        .where(_membership_condition(targets))
    )
    rows = session.execute(union_all(per_category, all_members)).all()
    members = sum(count for category, count in rows if category is None)
    per_category_count = {
        AudienceCategory(category).value: count for category, count in rows if category is not None
    }
    return AudienceSummary(
        excluded=members - sum(per_category_count.values()), **per_category_count
    )
