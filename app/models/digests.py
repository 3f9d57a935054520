"""How far each sender profile's bounce digest has got (SPEC §5: the point
of contact receives a digest, at most daily, of new hard bounces, drops and
complaints). ``app.services.bounce_digest`` holds the rules."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime


class BounceDigestState(Base):
    __tablename__ = "bounce_digest_states"

    sender_profile_id: Mapped[int] = mapped_column(
        ForeignKey("sender_profiles.id", ondelete="CASCADE"), primary_key=True
    )
    # The last digest the relay accepted, and the end of the period it
    # covered: the next digest starts there, so nothing is told twice.
    last_sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    covered_until: Mapped[datetime] = mapped_column(UTCDateTime)
