"""Engagement: opens, clicks, opt-outs and opt-ins on both databases.

``make_sent_message`` builds a campaign, a mass email (with its content
snapshot), a contact, a queue item in ``sent`` and tracked links straight
from the models; the public-endpoint tests use it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import (
    Campaign,
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    MassEmail,
    MassEmailStatus,
    QueueItem,
    QueueItemStatus,
    TrackedLink,
)
from app.services.contacts import set_opt_out
from app.services.engagement import (
    TEST_QUEUE_ITEM_ID,
    USER_AGENT_MAX_LENGTH,
    OptInResult,
    OptOutSource,
    mask_address,
    opt_in,
    opt_out,
    record_click,
    record_open,
)
from tests.conftest import add_contact

LINKS = ("https://example.com/spring?utm_source=mail", "https://shop.example.org/sale")
BODY_HTML = (
    "<p>Hello {{ first_name }},</p>"
    f'<p><a href="{LINKS[0]}">Spring news</a> and <a href="{LINKS[1]}">our sale</a>.</p>'
)
AGENT = "Mozilla/5.0 (Test) Mail/1.0"


@dataclass
class SentMessage:
    campaign: Campaign
    mass_email: MassEmail
    contact: Contact
    item: QueueItem


def make_sent_message(
    session: Session,
    clock: FixedClock,
    email: str = "ann.smith@example.com",
    links: tuple[str, ...] = LINKS,
    status: QueueItemStatus = QueueItemStatus.SENT,
) -> SentMessage:
    """A message sent to one contact, committed."""
    now = clock.now()
    contact = add_contact(session, clock, email, first_name="Ann", last_name="Smith")
    campaign = Campaign(name="Spring", created_at=now)
    mass_email = MassEmail(
        campaign=campaign,
        name="Spring 1",
        status=MassEmailStatus.IN_PROGRESS,
        created_at=now,
        subject="Spring news for {{ first_name }}",
        body_html=BODY_HTML,
    )
    session.add(mass_email)
    session.flush()
    item = QueueItem(
        mass_email_id=mass_email.id,
        contact_id=contact.id,
        email=email,
        status=status,
        created_at=now,
        sent_at=now,
    )
    session.add(item)
    session.add_all(
        TrackedLink(mass_email_id=mass_email.id, link_id=link_id, url=url)
        for link_id, url in enumerate(links)
    )
    session.commit()
    return SentMessage(campaign, mass_email, contact, item)


def log_entries(session: Session, **where: Any) -> list[CampaignLogEntry]:
    query = select(CampaignLogEntry).filter_by(**where).order_by(CampaignLogEntry.id)
    return list(session.scalars(query))


def fresh(session: Session, item: QueueItem) -> QueueItem:
    session.commit()
    session.expire_all()
    reloaded = session.get(QueueItem, item.id)
    assert reloaded is not None
    return reloaded


# ------------------------------------------------------------------------ opens


def test_an_open_is_recorded_once_as_first_time_with_raw_counts(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock)
    first = clock.now()

    assert record_open(session, sent.item.id, clock, AGENT)
    clock.advance(timedelta(hours=2))
    assert record_open(session, sent.item.id, clock, "x" * 1000)

    item = fresh(session, sent.item)
    assert (item.status, item.opened_at, item.open_count) == (QueueItemStatus.OPENED, first, 2)
    entries = log_entries(session, event=CampaignLogEvent.OPENED)
    assert [(e.queue_item_id, e.contact_id, e.mass_email_id) for e in entries] == [
        (item.id, sent.contact.id, sent.mass_email.id)
    ] * 2
    assert [e.occurred_at for e in entries] == [first, clock.now()]
    assert entries[0].detail == {"user_agent": AGENT}
    assert entries[1].detail == {"user_agent": "x" * USER_AGENT_MAX_LENGTH}


def test_an_open_on_a_bounced_item_is_counted_but_the_status_stays(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock, status=QueueItemStatus.BOUNCED)
    assert record_open(session, sent.item.id, clock, AGENT)
    item = fresh(session, sent.item)
    assert (item.status, item.open_count, item.opened_at) == (
        QueueItemStatus.BOUNCED,
        1,
        clock.now(),
    )
    assert len(log_entries(session, event=CampaignLogEvent.OPENED)) == 1


# ----------------------------------------------------------------------- clicks


def test_a_click_returns_the_stored_url_and_implies_an_open(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock)

    assert record_click(session, sent.item.id, 1, clock, AGENT) == LINKS[1]

    item = fresh(session, sent.item)
    assert item.status == QueueItemStatus.CLICKED
    assert (item.opened_at, item.open_count) == (clock.now(), 1)
    assert (item.clicked_at, item.click_count) == (clock.now(), 1)
    opened, clicked = log_entries(session)
    assert opened.event == CampaignLogEvent.OPENED
    assert opened.detail == {"user_agent": AGENT, "implied_by_click": True}
    assert clicked.event == CampaignLogEvent.CLICKED
    assert clicked.detail == {"link_id": 1, "url": LINKS[1]}
    assert clicked.contact_id == sent.contact.id


def test_a_click_on_a_named_tracking_url_logs_its_name(session: Session, clock: FixedClock) -> None:
    sent = make_sent_message(session, clock)
    promo = "https://shop.example.org/promo?src=mail"
    session.add(TrackedLink(mass_email_id=sent.mass_email.id, link_id=2, url=promo, name="promo"))
    session.commit()

    assert record_click(session, sent.item.id, 2, clock, AGENT) == promo

    assert fresh(session, sent.item).click_count == 1
    clicked = log_entries(session, event=CampaignLogEvent.CLICKED)
    assert [entry.detail for entry in clicked] == [{"link_id": 2, "url": promo, "name": "promo"}]
    # Test mail records nothing, named link or not.
    assert record_click(session, TEST_QUEUE_ITEM_ID, 2, clock, AGENT) is None


def test_clicks_keep_the_first_time_and_count_every_one(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock)
    first = clock.now()
    record_open(session, sent.item.id, clock, AGENT)
    clock.advance(timedelta(minutes=5))
    record_click(session, sent.item.id, 0, clock, AGENT)
    clicked_at = clock.now()
    clock.advance(timedelta(minutes=5))
    record_click(session, sent.item.id, 1, clock, AGENT)
    record_open(session, sent.item.id, clock, AGENT)  # an open after a click keeps "clicked"

    item = fresh(session, sent.item)
    assert item.status == QueueItemStatus.CLICKED
    assert (item.opened_at, item.open_count) == (first, 2)  # no implied opens once opened
    assert (item.clicked_at, item.click_count) == (clicked_at, 2)
    assert [e.event for e in log_entries(session)] == [
        CampaignLogEvent.OPENED,
        CampaignLogEvent.CLICKED,
        CampaignLogEvent.CLICKED,
        CampaignLogEvent.OPENED,
    ]


def test_an_unknown_link_id_records_nothing(session: Session, clock: FixedClock) -> None:
    sent = make_sent_message(session, clock)
    assert record_click(session, sent.item.id, 2, clock, AGENT) is None
    item = fresh(session, sent.item)
    assert (item.status, item.open_count, item.click_count) == (QueueItemStatus.SENT, 0, 0)
    assert log_entries(session) == []


def test_a_link_of_another_mass_email_is_not_followed(session: Session, clock: FixedClock) -> None:
    sent = make_sent_message(session, clock)
    other = make_sent_message(session, clock, "bob@example.com", links=(*LINKS, "https://x.test/"))
    assert record_click(session, other.item.id, 2, clock, AGENT) == "https://x.test/"
    assert record_click(session, sent.item.id, 2, clock, AGENT) is None


def test_a_stored_url_that_is_not_a_web_address_is_never_returned(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(
        session,
        clock,
        links=("javascript:alert(1)", "//evil.example/", "https://ok.example/\r\nX: y"),
    )
    for link_id in range(3):
        assert record_click(session, sent.item.id, link_id, clock, AGENT) is None
    assert log_entries(session) == []


# --------------------------------------------------------------------- opt-outs


def test_opt_out_sets_the_contact_flag_time_and_source_and_logs_it(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock)
    record_click(session, sent.item.id, 0, clock, AGENT)
    clock.advance(timedelta(minutes=1))

    assert opt_out(session, sent.item.id, OptOutSource.LINK, clock) is True

    item = fresh(session, sent.item)
    contact = session.get(Contact, sent.contact.id)
    assert contact is not None
    assert (contact.opted_out, contact.opted_out_at, contact.opt_out_source) == (
        True,
        clock.now(),
        "link",
    )
    assert (item.status, item.unsubscribed_at) == (QueueItemStatus.UNSUBSCRIBED, clock.now())
    [entry] = log_entries(session, event=CampaignLogEvent.OPTED_OUT)
    assert (entry.contact_id, entry.queue_item_id, entry.detail) == (
        contact.id,
        item.id,
        {"source": "link"},
    )


def test_opting_out_twice_changes_and_logs_nothing_more(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock)
    first = clock.now()
    opt_out(session, sent.item.id, OptOutSource.ONE_CLICK, clock)
    clock.advance(timedelta(minutes=1))
    assert opt_out(session, sent.item.id, OptOutSource.LINK, clock) is False

    item = fresh(session, sent.item)
    contact = session.get(Contact, sent.contact.id)
    assert contact is not None
    assert (contact.opted_out_at, contact.opt_out_source) == (first, "one-click")
    assert item.unsubscribed_at == first
    assert len(log_entries(session, event=CampaignLogEvent.OPTED_OUT)) == 1


def test_opt_out_by_mailto_on_a_bounced_item_keeps_the_bounce(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock, status=QueueItemStatus.BOUNCED)
    assert opt_out(session, sent.item.id, OptOutSource.MAILTO, clock)
    item = fresh(session, sent.item)
    assert (item.status, item.unsubscribed_at) == (QueueItemStatus.BOUNCED, clock.now())
    contact = session.get(Contact, sent.contact.id)
    assert contact is not None and contact.opt_out_source == "mailto"


def test_opt_out_finds_the_contact_by_address_when_the_item_lost_its_contact(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock)
    sent.item.contact_id = None  # as ON DELETE SET NULL leaves it
    session.commit()
    assert opt_out(session, sent.item.id, OptOutSource.LINK, clock)
    contact = session.get(Contact, sent.contact.id)
    assert contact is not None and contact.opted_out
    [entry] = log_entries(session, event=CampaignLogEvent.OPTED_OUT)
    assert entry.contact_id == contact.id


def test_opt_out_without_any_contact_still_marks_the_item(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock)
    session.delete(sent.contact)
    session.commit()
    assert opt_out(session, sent.item.id, OptOutSource.LINK, clock)
    item = fresh(session, sent.item)
    assert (item.contact_id, item.status) == (None, QueueItemStatus.UNSUBSCRIBED)
    [entry] = log_entries(session, event=CampaignLogEvent.OPTED_OUT)
    assert entry.contact_id is None


# ---------------------------------------------------------------------- opt-ins


def test_opt_in_undoes_the_recipients_opt_out_and_logs_it(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock)
    opt_out(session, sent.item.id, OptOutSource.LINK, clock)
    clock.advance(timedelta(minutes=1))

    assert opt_in(session, sent.item.id, clock) == OptInResult.OPTED_IN

    item = fresh(session, sent.item)
    contact = session.get(Contact, sent.contact.id)
    assert contact is not None
    assert (contact.opted_out, contact.opted_out_at, contact.opt_out_source) == (False, None, "")
    assert item.status == QueueItemStatus.UNSUBSCRIBED  # what happened to this message
    [entry] = log_entries(session, event=CampaignLogEvent.OPTED_IN)
    assert (entry.contact_id, entry.occurred_at, entry.detail) == (
        contact.id,
        clock.now(),
        {"source": "link"},
    )
    assert opt_in(session, sent.item.id, clock) == OptInResult.NOT_OPTED_OUT


def test_opt_in_does_not_undo_an_opt_out_made_another_way(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock)
    set_opt_out(session, sent.contact.email or "", True, "cli", clock)
    session.commit()
    assert opt_in(session, sent.item.id, clock) == OptInResult.REFUSED
    contact = session.get(Contact, sent.contact.id)
    assert contact is not None and contact.opted_out
    assert log_entries(session) == []


# ------------------------------------------------------- deleted and test mail


def test_links_of_soft_deleted_mass_emails_and_campaigns_keep_working(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock)
    sent.mass_email.deleted_at = clock.now()
    sent.campaign.deleted_at = clock.now()
    session.commit()

    assert record_open(session, sent.item.id, clock, AGENT)
    assert record_click(session, sent.item.id, 0, clock, AGENT) == LINKS[0]
    assert opt_out(session, sent.item.id, OptOutSource.LINK, clock)
    assert opt_in(session, sent.item.id, clock) == OptInResult.OPTED_IN
    assert len(log_entries(session, mass_email_id=sent.mass_email.id)) == 4


def test_test_messages_and_unknown_items_record_nothing(
    session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock)
    for item_id in (TEST_QUEUE_ITEM_ID, sent.item.id + 1000):
        assert record_open(session, item_id, clock, AGENT) is False
        assert record_click(session, item_id, 0, clock, AGENT) is None
        assert opt_out(session, item_id, OptOutSource.ONE_CLICK, clock) is False
        assert opt_in(session, item_id, clock) == OptInResult.UNKNOWN
    session.commit()
    assert log_entries(session) == []
    item = fresh(session, sent.item)
    assert (item.status, item.open_count, item.click_count) == (QueueItemStatus.SENT, 0, 0)
    contact = session.get(Contact, sent.contact.id)
    assert contact is not None and not contact.opted_out


def test_mask_address_keeps_the_first_letter_and_the_domain() -> None:
    assert mask_address("ann.smith@example.com") == "a***@example.com"
    assert mask_address('"a@b"@example.com') == '"***@example.com'
    assert mask_address("nonsense") == "***"
