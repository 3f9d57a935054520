"""Fixtures shared by the service tests."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import QueueItem
from tests.service.test_messages import make_campaign


@pytest.fixture
def item(session: Session, clock: FixedClock) -> QueueItem:
    """One queued item of a fresh campaign's mass email (flushed)."""
    setup = make_campaign(session, clock)
    queued = QueueItem(
        mass_email_id=setup.mass_email.id,
        contact_id=setup.contact.id,
        email=setup.contact.email,
        created_at=clock.now(),
    )
    session.add(queued)
    session.flush()
    return queued
