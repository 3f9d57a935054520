"""A mass email's results (SPEC §6): counts and rates per recipient status,
the recipients page by page, one recipient's message as sent, opens and
clicks over time, and the campaign log as CSV.

Rules:

- **Counts are one aggregate query.** ``results_summary`` reads the mass
  email's queue items once, grouped by status and bounce kind (the
  ``(mass_email_id, status)`` index), whatever their number. A bounced
  item is counted as hard or soft by its ``bounce_kind``.
- **Two kinds of rate.** Each status's rate is its share of all the mass
  email's recipients (they add up to 100 %). The reach is what became of
  the messages *sent*: accepted by the relay (``sent_at`` set) or refused
  at send time with a bounce. *Delivered* is sent minus bounced. The bounce
  rate is per message sent; opens, clicks, opt-outs (after acceptance) and
  spam reports are per message delivered. Opens and clicks are unique
  (the first-time columns: a recipient who opened twice counts once, and
  one whose status moved on to clicked or bounced still counts as having
  opened); click-to-open is unique clicks per unique open.
- **Recipients page by page with a keyset** (``after``/``before`` a queue
  item id, in id order), never an OFFSET: a deep page costs what the first
  does. Filters: a status, a bounce kind, or "ever opened" / "ever
  clicked".
- **A message as sent** is re-rendered from the mass email's snapshot for
  the item's contact and address, as ``view_online`` does, but with the
  links of the test item 0 and no open pixel: a person looking at a
  recipient's copy (or clicking in it) must never count as that
  recipient's open or click.
- **Opens and clicks over time**: every ``opened`` and ``clicked`` event of
  the campaign log (repeated ones too: the chart shows activity), counted
  per time bucket in SQL (one ``GROUP BY``); the bucket width is the
  smallest of ``BUCKET_WIDTHS`` that keeps at most ``MAX_BUCKETS`` buckets
  between the first and the last event.
- **The campaign log as CSV** is streamed in batches (memory stays flat
  for any number of rows), every cell guarded against formula injection
  (``contact_export.escape_formula``).
"""

from __future__ import annotations

import csv
import enum
import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, Integer, and_, case, cast, func, select
from sqlalchemy.orm import Session, joinedload

from app.models import (
    BounceKind,
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    MassEmail,
    MassEmailStatus,
    QueueItem,
    QueueItemStatus,
)
from app.services.contact_export import escape_formula
from app.services.engagement import TEST_QUEUE_ITEM_ID
from app.services.messages import MessageError, MessageFactory
from app.services.public_links import PublicLinks
from app.services.runtime_settings import get_runtime_settings

log = logging.getLogger(__name__)

S = QueueItemStatus
PAGE_SIZE = 50
ITEM_EVENTS_SHOWN = 200
MAX_BUCKETS = 48
BUCKET_WIDTHS = tuple(
    timedelta(minutes=minutes) for minutes in (1, 5, 15, 30, 60, 180, 360, 720, 1440, 10080, 43200)
)
CSV_BATCH_SIZE = 1000


class ResultsError(LookupError):
    """No such mass email (or one still a draft, which has no results)."""


class RecipientFilter(enum.StrEnum):
    """What the recipient table and "make a target list" can choose by."""

    ALL = "all"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    OPENED = "opened"
    CLICKED = "clicked"
    BOUNCED_HARD = "bounced_hard"
    BOUNCED_SOFT = "bounced_soft"
    UNSUBSCRIBED = "unsubscribed"
    SPAM_REPORT = "spam_report"
    DROPPED = "dropped"
    ERROR = "error"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    EVER_OPENED = "ever_opened"
    EVER_CLICKED = "ever_clicked"

    @property
    def label(self) -> str:
        return FILTER_LABELS[self]


FILTER_LABELS: dict[RecipientFilter, str] = {
    RecipientFilter.ALL: "All recipients",
    RecipientFilter.QUEUED: "Queued",
    RecipientFilter.SENDING: "Sending",
    RecipientFilter.SENT: "Sent",
    RecipientFilter.OPENED: "Opened",
    RecipientFilter.CLICKED: "Clicked",
    RecipientFilter.BOUNCED_HARD: "Bounced (hard)",
    RecipientFilter.BOUNCED_SOFT: "Bounced (soft)",
    RecipientFilter.UNSUBSCRIBED: "Unsubscribed",
    RecipientFilter.SPAM_REPORT: "Spam report",
    RecipientFilter.DROPPED: "Dropped",
    RecipientFilter.ERROR: "Error",
    RecipientFilter.FAILED: "Failed",
    RecipientFilter.INTERRUPTED: "Interrupted",
    RecipientFilter.EVER_OPENED: "Everyone who opened",
    RecipientFilter.EVER_CLICKED: "Everyone who clicked",
}

# The status table's rows, in SPEC §6's order (a bounce split by kind).
STATUS_ROWS: tuple[RecipientFilter, ...] = (
    RecipientFilter.QUEUED,
    RecipientFilter.SENDING,
    RecipientFilter.SENT,
    RecipientFilter.OPENED,
    RecipientFilter.CLICKED,
    RecipientFilter.BOUNCED_HARD,
    RecipientFilter.BOUNCED_SOFT,
    RecipientFilter.UNSUBSCRIBED,
    RecipientFilter.SPAM_REPORT,
    RecipientFilter.DROPPED,
    RecipientFilter.ERROR,
    RecipientFilter.FAILED,
    RecipientFilter.INTERRUPTED,
)


def parse_filter(raw: str | None) -> RecipientFilter:
    """The filter named ``raw`` (empty: all); ``ValueError`` naming the
    choices for anything else."""
    if not raw:
        return RecipientFilter.ALL
    try:
        return RecipientFilter(raw)
    except ValueError:
        choices = ", ".join(member.value for member in RecipientFilter)
        raise ValueError(f"status: {raw[:40]!r} is not one of {choices}") from None


def recipient_condition(chosen: RecipientFilter) -> ColumnElement[bool]:
    """The SQL condition on ``QueueItem`` for a filter (besides the mass email)."""
    if chosen is RecipientFilter.ALL:
        return QueueItem.id.is_not(None)
    if chosen is RecipientFilter.EVER_OPENED:
        return QueueItem.opened_at.is_not(None)
    if chosen is RecipientFilter.EVER_CLICKED:
        return QueueItem.clicked_at.is_not(None)
    if chosen is RecipientFilter.BOUNCED_HARD:
        return and_(QueueItem.status == S.BOUNCED, QueueItem.bounce_kind == BounceKind.HARD)
    if chosen is RecipientFilter.BOUNCED_SOFT:
        # A bounce of no recorded kind counts as soft: it suppressed nothing.
        return and_(
            QueueItem.status == S.BOUNCED,
            (QueueItem.bounce_kind == BounceKind.SOFT) | QueueItem.bounce_kind.is_(None),
        )
    return QueueItem.status == QueueItemStatus(chosen.value)


# ------------------------------------------------------------------ summary


@dataclass(frozen=True)
class StatusCount:
    key: RecipientFilter
    count: int
    rate: float  # of all recipients, 0..1


@dataclass(frozen=True)
class Reach:
    """What became of the messages sent (see the module's rules)."""

    sent: int  # accepted by the relay, or refused with a bounce
    bounced: int
    opened: int
    clicked: int
    unsubscribed: int  # opted out after the message was accepted
    spam_reports: int

    @property
    def delivered(self) -> int:
        return max(0, self.sent - self.bounced)

    def rate(self, count: int) -> float:
        """``count`` per delivered message."""
        return count / self.delivered if self.delivered else 0.0

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0

    @property
    def click_to_open(self) -> float:
        return self.clicked / self.opened if self.opened else 0.0


@dataclass(frozen=True)
class ResultsSummary:
    mass_email_id: int
    name: str
    campaign_name: str
    status: MassEmailStatus
    start_at: datetime | None
    total: int
    statuses: list[StatusCount]
    reach: Reach

    def count(self, key: RecipientFilter) -> int:
        if key is RecipientFilter.ALL:
            return self.total
        if key is RecipientFilter.EVER_OPENED:
            return self.reach.opened
        if key is RecipientFilter.EVER_CLICKED:
            return self.reach.clicked
        return next(row.count for row in self.statuses if row.key is key)


def get_results_mass_email(session: Session, mass_email_id: int) -> MassEmail:
    """The mass email whose results are asked for; ``ResultsError`` when
    there is none, it is deleted, or it is still a draft."""
    mass_email = session.get(MassEmail, mass_email_id)
    if (
        mass_email is None
        or mass_email.deleted_at is not None
        or mass_email.status == MassEmailStatus.DRAFT
    ):
        raise ResultsError(f"no mass email with results has id {mass_email_id}")
    return mass_email


def _status_key(status: str, kind: str | None) -> RecipientFilter:
    if status == S.BOUNCED:
        return (
            RecipientFilter.BOUNCED_HARD
            if kind == BounceKind.HARD
            else RecipientFilter.BOUNCED_SOFT
        )
    return RecipientFilter(status)


def results_summary(session: Session, mass_email_id: int) -> ResultsSummary:
    """Counts and rates of the mass email (see the module's rules); one
    ``GROUP BY`` over its queue items."""
    mass_email = get_results_mass_email(session, mass_email_id)
    rows = session.execute(
        select(
            QueueItem.status,
            QueueItem.bounce_kind,
            func.count(),
            func.count(QueueItem.sent_at),
            func.count(QueueItem.opened_at),
            func.count(QueueItem.clicked_at),
        )
        .where(QueueItem.mass_email_id == mass_email_id)
        .group_by(QueueItem.status, QueueItem.bounce_kind)
    ).all()
    counts = dict.fromkeys(STATUS_ROWS, 0)
    sent = opened = clicked = unsubscribed = spam = 0
    for status, kind, count, accepted, opens, clicks in rows:
        counts[_status_key(status, kind)] += count
        # A bounce refused at send time was sent too, though not accepted.
        sent += count if status == S.BOUNCED else accepted
        opened += opens
        clicked += clicks
        unsubscribed += accepted if status == S.UNSUBSCRIBED else 0
        spam += count if status == S.SPAM_REPORT else 0
    bounced = counts[RecipientFilter.BOUNCED_HARD] + counts[RecipientFilter.BOUNCED_SOFT]
    total = sum(counts.values())
    return ResultsSummary(
        mass_email_id=mass_email.id,
        name=mass_email.name,
        campaign_name=mass_email.campaign.name,
        status=MassEmailStatus(mass_email.status),
        start_at=mass_email.start_at,
        total=total,
        statuses=[
            StatusCount(key, counts[key], counts[key] / total if total else 0.0)
            for key in STATUS_ROWS
        ],
        reach=Reach(sent, bounced, opened, clicked, unsubscribed, spam),
    )


# --------------------------------------------------------------- recipients


@dataclass(frozen=True)
class RecipientRow:
    id: int
    email: str
    contact_id: int | None
    name: str
    status: QueueItemStatus
    bounce_kind: BounceKind | None
    sent_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    open_count: int
    click_count: int
    last_code: int | None
    last_reply: str

    @property
    def relay_answer(self) -> str:
        """The relay's last answer: code and text."""
        return " ".join(part for part in (str(self.last_code or ""), self.last_reply) if part)

    @property
    def status_label(self) -> str:
        return FILTER_LABELS[_status_key(self.status, self.bounce_kind)]


@dataclass(frozen=True)
class RecipientPage:
    rows: list[RecipientRow]
    chosen: RecipientFilter
    # Keyset links: the id to continue after (next page) or before
    # (previous page); None when there is no such page.
    next_after: int | None
    previous_before: int | None


def _recipient_columns() -> tuple[Any, ...]:
    return (
        QueueItem.id,
        QueueItem.email,
        QueueItem.contact_id,
        func.trim(
            func.coalesce(Contact.first_name, "") + " " + func.coalesce(Contact.last_name, "")
        ),
        QueueItem.status,
        QueueItem.bounce_kind,
        QueueItem.sent_at,
        QueueItem.opened_at,
        QueueItem.clicked_at,
        QueueItem.open_count,
        QueueItem.click_count,
        QueueItem.last_code,
        QueueItem.last_reply,
    )


def recipient_page(
    session: Session,
    mass_email_id: int,
    chosen: RecipientFilter = RecipientFilter.ALL,
    *,
    after: int | None = None,
    before: int | None = None,
    size: int = PAGE_SIZE,
) -> RecipientPage:
    """One page of the mass email's recipients matching ``chosen``, in queue
    item id order: the first page, the page after item ``after``, or the
    page before item ``before`` (a keyset: every page costs the same)."""
    get_results_mass_email(session, mass_email_id)
    statement = (
        select(*_recipient_columns())
        .outerjoin(Contact, Contact.id == QueueItem.contact_id)
        .where(QueueItem.mass_email_id == mass_email_id, recipient_condition(chosen))
    )
    backwards = before is not None and after is None
    if backwards:
        statement = statement.where(QueueItem.id < before).order_by(QueueItem.id.desc())
    else:
        if after is not None:
            statement = statement.where(QueueItem.id > after)
        statement = statement.order_by(QueueItem.id)
    fetched = [RecipientRow(*row) for row in session.execute(statement.limit(size + 1))]
    more = len(fetched) > size
    rows = fetched[:size]
    if backwards:
        rows.reverse()
        has_next, has_previous = True, more
    else:
        has_next, has_previous = more, after is not None
    return RecipientPage(
        rows=rows,
        chosen=chosen,
        next_after=rows[-1].id if rows and has_next else None,
        previous_before=rows[0].id if rows and has_previous else None,
    )


@dataclass(frozen=True)
class ItemEvent:
    occurred_at: datetime
    event: CampaignLogEvent
    detail: dict[str, Any]


@dataclass(frozen=True)
class RecipientDetail:
    row: RecipientRow
    skip_reason: str
    attempts: int
    events: list[ItemEvent]


def recipient_detail(session: Session, mass_email_id: int, item_id: int) -> RecipientDetail:
    """One recipient of the mass email with its campaign-log events (the
    first ``ITEM_EVENTS_SHOWN``); ``ResultsError`` when the item is not
    one of the mass email's."""
    get_results_mass_email(session, mass_email_id)
    found = session.execute(
        select(*_recipient_columns(), QueueItem.skip_reason, QueueItem.attempts)
        .outerjoin(Contact, Contact.id == QueueItem.contact_id)
        .where(QueueItem.id == item_id, QueueItem.mass_email_id == mass_email_id)
    ).one_or_none()
    if found is None:
        raise ResultsError(f"mass email {mass_email_id} has no recipient {item_id}")
    *columns, skip_reason, attempts = found
    events = [
        ItemEvent(occurred_at, CampaignLogEvent(event), dict(detail or {}))
        for occurred_at, event, detail in session.execute(
            select(CampaignLogEntry.occurred_at, CampaignLogEntry.event, CampaignLogEntry.detail)
            .where(CampaignLogEntry.queue_item_id == item_id)
            .order_by(CampaignLogEntry.id)
            .limit(ITEM_EVENTS_SHOWN)
        )
    ]
    return RecipientDetail(RecipientRow(*columns), skip_reason, attempts, events)


def message_copy(
    session: Session, mass_email_id: int, item_id: int, links: PublicLinks
) -> str | None:
    """The HTML of the recipient's message as sent (see the module's rules),
    or None when it cannot be shown (the item was never rendered, or its
    content no longer compiles). ``ResultsError`` for an unknown item."""
    get_results_mass_email(session, mass_email_id)
    item = session.get(QueueItem, item_id)
    if item is None or item.mass_email_id != mass_email_id:
        raise ResultsError(f"mass email {mass_email_id} has no recipient {item_id}")
    mass_email = session.get(MassEmail, mass_email_id)
    assert mass_email is not None
    runtime = get_runtime_settings(session)
    contact = None if item.contact_id is None else session.get(Contact, item.contact_id)
    try:
        factory = MessageFactory.for_rendering(
            mass_email, runtime=runtime, links=links, open_pixel=False
        )
        rendered = factory.render_for(
            queue_item_id=TEST_QUEUE_ITEM_ID, contact=contact, address=item.email
        )
    except MessageError as error:
        log.warning("results: queue item %s cannot be rendered: %s", item.id, error)
        return None
    return rendered.html


# --------------------------------------------------------------- the chart


@dataclass(frozen=True)
class Bucket:
    start: datetime
    opens: int
    clicks: int


@dataclass(frozen=True)
class Timeline:
    width: timedelta
    buckets: list[Bucket]

    @property
    def opens(self) -> int:
        return sum(bucket.opens for bucket in self.buckets)

    @property
    def clicks(self) -> int:
        return sum(bucket.clicks for bucket in self.buckets)


_CHART_EVENTS = (CampaignLogEvent.OPENED, CampaignLogEvent.CLICKED)


def bucket_width(first: datetime, last: datetime) -> timedelta:
    """The smallest of ``BUCKET_WIDTHS`` that keeps the span in at most
    ``MAX_BUCKETS`` buckets (the widest beyond that)."""
    span = last - first
    for width in BUCKET_WIDTHS:
        if span < width * MAX_BUCKETS:
            return width
    return BUCKET_WIDTHS[-1] * (span // (BUCKET_WIDTHS[-1] * MAX_BUCKETS) + 1)


def _epoch_seconds(session: Session, column: Any) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", column), Float)
    # SQLite keeps UTC times as text; strftime('%s') reads them as UTC.
    return cast(func.strftime("%s", column), Float)


def opens_and_clicks(session: Session, mass_email_id: int) -> Timeline:
    """Opens and clicks per time bucket (see the module's rules); no
    buckets when nothing was opened or clicked."""
    get_results_mass_email(session, mass_email_id)
    of_mass_email = (
        CampaignLogEntry.mass_email_id == mass_email_id,
        CampaignLogEntry.event.in_(_CHART_EVENTS),
    )
    first, last = session.execute(
        select(
            func.min(CampaignLogEntry.occurred_at), func.max(CampaignLogEntry.occurred_at)
        ).where(*of_mass_email)
    ).one()
    if first is None or last is None:
        return Timeline(BUCKET_WIDTHS[0], [])
    first, last = _aware(first), _aware(last)
    width = bucket_width(first, last)
    seconds = int(width.total_seconds())
    origin = int(first.timestamp()) // seconds * seconds
    index = cast(
        func.floor((_epoch_seconds(session, CampaignLogEntry.occurred_at) - origin) / seconds),
        Integer,
    )
    counted = session.execute(
        select(
            index,
            func.sum(case((CampaignLogEntry.event == CampaignLogEvent.OPENED, 1), else_=0)),
            func.sum(case((CampaignLogEntry.event == CampaignLogEvent.CLICKED, 1), else_=0)),
        )
        .where(*of_mass_email)
        .group_by(index)
    ).all()
    per_bucket = {int(number): (int(opens), int(clicks)) for number, opens, clicks in counted}
    start = datetime.fromtimestamp(origin, UTC)
    size = int((last - start) // width) + 1
    return Timeline(
        width,
        [Bucket(start + width * number, *per_bucket.get(number, (0, 0))) for number in range(size)],
    )


def _aware(value: datetime) -> datetime:
    # min()/max() come back as the column's type on PostgreSQL, but as text
    # turned into a naive datetime on SQLite (stored in UTC).
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --------------------------------------------------------------- CSV export

LOG_CSV_COLUMNS = (
    "occurred_at",
    "event",
    "email",
    "contact_id",
    "queue_item_id",
    "url",
    "link_name",
    "kind",
    "reason",
    "status",
    "diagnostic",
    "source",
    "user_agent",
    "other",
)
# detail key → column; the rest go to "other" as JSON.
_DETAIL_COLUMNS = {
    "url": "url",
    "name": "link_name",
    "kind": "kind",
    "reason": "reason",
    "status": "status",
    "diagnostic": "diagnostic",
    "source": "source",
    "user_agent": "user_agent",
}


def _log_csv_cells(row: Sequence[Any]) -> list[str]:
    occurred_at, event, email, contact_id, item_id, detail = row
    detail = dict(detail or {})
    by_column = {column: str(detail.pop(key, "")) for key, column in _DETAIL_COLUMNS.items()}
    other = json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else ""
    cells = [
        _aware(occurred_at).isoformat(),
        str(event),
        email or "",
        "" if contact_id is None else str(contact_id),
        "" if item_id is None else str(item_id),
        *(by_column[column] for column in LOG_CSV_COLUMNS[5:-1]),
        other,
    ]
    return [escape_formula(cell) for cell in cells]


def campaign_log_csv(session: Session, mass_email_id: int) -> Iterator[str]:
    """The mass email's campaign log as CSV text, in chunks of
    ``CSV_BATCH_SIZE`` rows, in the order the events happened (see the
    module's rules). Check the mass email with ``get_results_mass_email``
    first: this generator runs only as the response is sent."""
    statement = (
        select(
            CampaignLogEntry.occurred_at,
            CampaignLogEntry.event,
            QueueItem.email,
            CampaignLogEntry.contact_id,
            CampaignLogEntry.queue_item_id,
            CampaignLogEntry.detail,
        )
        .outerjoin(QueueItem, QueueItem.id == CampaignLogEntry.queue_item_id)
        .where(CampaignLogEntry.mass_email_id == mass_email_id)
        .order_by(CampaignLogEntry.id)
        # A server-side cursor on PostgreSQL: rows arrive batch by batch.
        .execution_options(yield_per=CSV_BATCH_SIZE)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180
    writer.writerow(LOG_CSV_COLUMNS)
    yield _drain(buffer)
    for partition in session.execute(statement).partitions():
        writer.writerows(_log_csv_cells(row) for row in partition)
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def mass_emails_with_results(session: Session, after: int | None, size: int) -> Sequence[MassEmail]:
    """Mass emails with results (not drafts, not deleted), newest first,
    a keyset page: those with an id below ``after``."""
    statement = (
        select(MassEmail)
        .options(joinedload(MassEmail.campaign))
        .where(MassEmail.deleted_at.is_(None), MassEmail.status != MassEmailStatus.DRAFT)
    )
    if after is not None:
        statement = statement.where(MassEmail.id < after)
    return session.scalars(statement.order_by(MassEmail.id.desc()).limit(size)).all()
