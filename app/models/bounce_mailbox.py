"""How far the bounce mailbox was read: one row per mailbox (its IMAP URL
without the password), written only by ``app.services.bounce_poll``.

``uidvalidity`` and ``last_uid`` are the checkpoint of ``bounce.mailbox``:
each message's result and the checkpoint past it are committed in one
transaction. ``locked_by``/``locked_until`` is a lease: one runner polls a
mailbox at a time, renewed with every message and released at the end.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime
from app.models.queue import RUNNER_ID_MAX_LENGTH

MAILBOX_KEY_MAX_LENGTH = 500


class BounceMailboxCheckpoint(Base):
    __tablename__ = "bounce_mailbox_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # imaps://user@host:993/INBOX: the URL without its password.
    mailbox: Mapped[str] = mapped_column(String(MAILBOX_KEY_MAX_LENGTH), unique=True)
    # RFC 3501 §2.3.1.1: UIDs are unsigned 32-bit numbers (BigInteger: the
    # top half does not fit a signed INTEGER).
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    last_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why the last poll ended early, or the last message that failed ("" when fine).
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(RUNNER_ID_MAX_LENGTH))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
