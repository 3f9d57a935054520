"""The lists the campaign and template pages show, a page at a time.

Rules:

- Keyset pagination on the primary key, newest first: a page is the
  ``limit`` rows with an id below ``after``, read through the primary key's
  index, so page 1,000 costs what page 1 costs; no ``COUNT(*)``. One more
  row than shown is read to know whether a next page exists.
- Deleted campaigns are not listed (their mass emails' links keep working
  all the same: ``app/web/public.py`` never looks at ``deleted_at``).
- A campaign's mass emails are summarised by status in one ``GROUP BY``
  over the campaigns of the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.models import Campaign, EmailTemplate, MassEmail, MassEmailStatus, SenderProfile

PAGE_SIZE = 50
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_after: int | None  # the ``after`` of the next page; None on the last


def _page(
    session: Session, query: Select[Any], id_column: Any, after: int | None, limit: int
) -> Page[Any]:
    if after is not None:
        query = query.where(id_column < after)
    rows = list(session.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)


def templates_page(
    session: Session, after: int | None = None, limit: int = PAGE_SIZE
) -> Page[EmailTemplate]:
    """Templates, newest first (see the module's rules)."""
    return _page(session, select(EmailTemplate), EmailTemplate.id, after, limit)


@dataclass(frozen=True)
class CampaignRow:
    campaign: Campaign
    sender: str  # the sender profile's name, "" without one
    mass_emails: dict[MassEmailStatus, int] = field(default_factory=dict)

    @property
    def mass_email_count(self) -> int:
        return sum(self.mass_emails.values())


def campaigns_page(
    session: Session, after: int | None = None, limit: int = PAGE_SIZE
) -> Page[CampaignRow]:
    """Campaigns not deleted, newest first, each with its mass emails
    counted by status and its sender profile's name."""
    page = _page(
        session, select(Campaign).where(Campaign.deleted_at.is_(None)), Campaign.id, after, limit
    )
    campaigns: list[Campaign] = page.items
    ids = [campaign.id for campaign in campaigns]
    counts: dict[int, dict[MassEmailStatus, int]] = {campaign_id: {} for campaign_id in ids}
    if ids:
        for campaign_id, status, count in session.execute(
            select(MassEmail.campaign_id, MassEmail.status, func.count())
            .where(MassEmail.campaign_id.in_(ids), MassEmail.deleted_at.is_(None))
            .group_by(MassEmail.campaign_id, MassEmail.status)
        ):
            counts[campaign_id][MassEmailStatus(status)] = count
    profile_ids = {c.sender_profile_id for c in campaigns if c.sender_profile_id is not None}
    names: dict[int, str] = {}
    if profile_ids:
        names = {
            profile_id: name
            for profile_id, name in session.execute(
                select(SenderProfile.id, SenderProfile.name).where(
                    SenderProfile.id.in_(profile_ids)
                )
            )
        }
    rows = [
        CampaignRow(
            campaign,
            names.get(campaign.sender_profile_id, "") if campaign.sender_profile_id else "",
            counts[campaign.id],
        )
        for campaign in campaigns
    ]
    return Page(rows, page.next_after)


def live_mass_emails(campaign: Campaign) -> Sequence[MassEmail]:
    """The campaign's mass emails not deleted, oldest first."""
    return sorted(
        (mass_email for mass_email in campaign.mass_emails if mass_email.deleted_at is None),
        key=lambda mass_email: mass_email.id,
    )
