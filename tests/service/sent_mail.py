"""A mass email whose messages went out, built through the services (no SMTP
server: the items are moved queued → sending → sent as the dispatcher
would), for the tests of what happens after sending."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.models import MassEmail, QueueItem, QueueItemStatus, SenderProfile, TargetListMember
from app.services import queue_status
from app.services.campaigns import (
    TemplateInput,
    add_mass_email,
    create_campaign,
    create_sender_profile,
    save_template,
    schedule_mass_email,
)
from app.services.queue_build import build_queue
from app.services.runtime_settings import (
    get_runtime_settings,
    seed_runtime_settings,
    update_runtime_settings,
)
from app.services.target_lists import create_target_list
from tests.conftest import TEST_SECRET_KEY, add_contact


def prepare(session: Session, app: Flask, clock: FixedClock) -> SenderProfile:
    """Runtime settings seeded, a sender profile; committed."""
    seed_runtime_settings(session, app_settings(app), clock)
    update_runtime_settings(session, {"site_url": "https://sluice.example.com"}, clock)
    profile = create_sender_profile(
        session, "News", "Example News", "news@example.com", "team@example.com"
    )
    session.commit()
    return profile


def start_mass_email(
    session: Session, app: Flask, clock: FixedClock, name: str, addresses: list[str]
) -> MassEmail:
    """A mass email to ``addresses`` (contacts created when new), its queue
    built; committed."""
    profile = session.scalar(select(SenderProfile).limit(1)) or prepare(session, app, clock)
    targets = create_target_list(session, f"{name} list", "", clock)
    for address in addresses:
        contact = add_contact(session, clock, address, first_name=address.split("@")[0])
        session.add(
            TargetListMember(target_list_id=targets.id, contact_id=contact.id, added_at=clock.now())
        )
    template = save_template(
        session,
        TemplateInput(name=f"{name} template", subject="News", body_html="<p>Hi!</p>"),
        clock,
    )
    campaign = create_campaign(
        session,
        name=name,
        type="newsletter",
        target_list_ids=[targets.id],
        excluding_list_ids=[],
        sender_profile_id=profile.id,
        clock=clock,
    )
    mass_email = add_mass_email(session, campaign, template_id=template.id, name=name, clock=clock)
    schedule_mass_email(
        session,
        mass_email,
        start_at=None,
        can_spam_confirmed=True,
        runtime=get_runtime_settings(session),
        settings=app_settings(app),
        secret_key=TEST_SECRET_KEY,
        clock=clock,
    )
    build_queue(session, mass_email, clock)
    session.commit()
    return mass_email


def send_all(session: Session, mass_email: MassEmail, clock: FixedClock) -> list[QueueItem]:
    """Every queued item of ``mass_email`` marked sent, as the dispatcher
    does; committed. Returns the mass email's items by id."""
    items = list(
        session.scalars(
            select(QueueItem).where(QueueItem.mass_email_id == mass_email.id).order_by(QueueItem.id)
        )
    )
    for item in items:
        if item.status == QueueItemStatus.QUEUED:
            queue_status.transition(item, QueueItemStatus.SENDING, clock)
            queue_status.transition(item, QueueItemStatus.SENT, clock)
    session.commit()
    return items


def sent_items(
    session: Session, app: Flask, clock: FixedClock, name: str, addresses: list[str]
) -> list[QueueItem]:
    """A mass email to ``addresses``, all of it sent."""
    return send_all(session, start_mass_email(session, app, clock, name, addresses), clock)
