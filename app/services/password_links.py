"""Password links: an invitation to a new user, or a reset, mailed as a
single-use, expiring link to a page where the user sets their password.

Rules:

- **The token is 256 random bits** (``secrets.token_urlsafe(32)``) and only
  its SHA-256 is stored (``password_links.token_hash``). A plain hash is
  enough for a random token of that size (there is no dictionary to try),
  and it lets the page find the link by an indexed equality.
- **A link works once, for ``LINK_LIFETIME`` (72 hours)**, and only while
  its user is active. Using it sets the password and marks it used; a
  newer link for the same user replaces the older ones still pending (the
  latest email is the one that works). Each failure is its own
  ``LinkRefused`` reason, so the page can say what happened and what to do.
- **An invited user exists from the start**, active, with a random
  password nobody knows: the invitation is how they get in. If the mail
  cannot be sent, the administrator sends the link again or falls back to
  a generated password (``users.reset_password``).
- **A reset link does not end the current password**: it works until the
  new one is set (a user who remembers it again loses nothing). To lock
  someone out at once, an administrator deactivates them or resets to a
  generated password.
- **The mail** is plain text, built here and sent over the caller's
  ``Transport`` (the relay Send Test uses); the relay's answer comes back
  as the ``SendResult``, accepted or not.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from app.clock import Clock
from app.models import PasswordLink, PasswordLinkKind, Role, User
from app.services.time_zones import format_in_zone
from app.services.transport import SendResult, Transport
from app.services.users import UserError, check_new_password, create_user, get_user

LINK_LIFETIME = timedelta(hours=72)
# token_urlsafe(32) gives 43 characters; anything much longer is not ours.
MAX_TOKEN_LENGTH = 128


class LinkProblem(enum.StrEnum):
    UNKNOWN = "unknown"
    USED = "used"
    REPLACED = "replaced"
    EXPIRED = "expired"
    INACTIVE = "inactive"


class LinkRefused(Exception):
    """A link that cannot set a password, and why."""

    def __init__(self, problem: LinkProblem, link: PasswordLink | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.link = link


@dataclass(frozen=True)
class IssuedLink:
    """A new link: the row, and the token (only here, never stored) for the URL."""

    link: PasswordLink
    token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue_link(session: Session, clock: Clock, user: User, kind: PasswordLinkKind) -> IssuedLink:
    """A new link for ``user``, replacing any still pending. Flushes."""
    now = clock.now()
    session.execute(
        update(PasswordLink)
        .where(
            PasswordLink.user_id == user.id,
            PasswordLink.used_at.is_(None),
            PasswordLink.replaced_at.is_(None),
        )
        .values(replaced_at=now)
        .execution_options(synchronize_session=False)
    )
    token = secrets.token_urlsafe(32)
    link = PasswordLink(
        user_id=user.id,
        token_hash=hash_token(token),
        kind=kind,
        created_at=now,
        expires_at=now + LINK_LIFETIME,
    )
    session.add(link)
    session.flush()
    return IssuedLink(link, token)


def usable_link(session: Session, clock: Clock, token: str) -> tuple[PasswordLink, User]:
    """The link of ``token`` and its user when it can set a password; raises
    ``LinkRefused`` saying why not."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise LinkRefused(LinkProblem.UNKNOWN)
    link = session.scalar(select(PasswordLink).where(PasswordLink.token_hash == hash_token(token)))
    if link is None:
        raise LinkRefused(LinkProblem.UNKNOWN)
    if link.used_at is not None:
        raise LinkRefused(LinkProblem.USED, link)
    if link.replaced_at is not None:
        raise LinkRefused(LinkProblem.REPLACED, link)
    if clock.now() >= link.expires_at:
        raise LinkRefused(LinkProblem.EXPIRED, link)
    user = session.get(User, link.user_id)
    if user is None or not user.active:
        raise LinkRefused(LinkProblem.INACTIVE, link)
    return link, user


def set_password_with_link(session: Session, clock: Clock, token: str, password: str) -> User:
    """Set the password of the link's user and use the link up. Raises
    ``LinkRefused`` for a link that cannot, ``UserError`` (field
    ``password``) for a password that does not qualify. Flushes."""
    link, user = usable_link(session, clock, token)
    check_new_password(password, "password")
    # Lock the row and mark it used only if nobody else did in the meantime:
    # two submissions of one link cannot both set a password.
    used = session.execute(
        update(PasswordLink)
        .where(PasswordLink.id == link.id, PasswordLink.used_at.is_(None))
        .values(used_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    if getattr(used, "rowcount", 0) != 1:
        raise LinkRefused(LinkProblem.USED, link)
    user.password_hash = generate_password_hash(password)
    session.flush()
    return user


def pending_links(session: Session, clock: Clock) -> dict[int, PasswordLink]:
    """Each user's latest link not used nor replaced, by user id (expired ones
    too: the users page says so)."""
    links = session.scalars(
        select(PasswordLink)
        .where(PasswordLink.used_at.is_(None), PasswordLink.replaced_at.is_(None))
        .order_by(PasswordLink.id)
    )
    return {link.user_id: link for link in links}


def invite_user(session: Session, clock: Clock, email: str, role: Role) -> IssuedLink:
    """Create an active user and their invitation link. Their generated
    password is dropped unseen: the link is how they get in. Raises
    ``UserError`` for a malformed or taken address. Flushes."""
    created = create_user(session, clock, email, role)
    return issue_link(session, clock, created.user, PasswordLinkKind.INVITATION)


# ----------------------------------------------------------------- the mail

SUBJECTS = {
    PasswordLinkKind.INVITATION: "You are invited to Sluice",
    PasswordLinkKind.RESET: "Set a new password for Sluice",
}


@dataclass(frozen=True)
class LinkMail:
    """What the mail says beyond the link: who sends it, from where."""

    from_address: str
    reply_to: str
    sent_by: str
    site_url: str
    zone: ZoneInfo  # the expiry is shown in the user's zone


def link_message(
    user: User,
    kind: PasswordLinkKind,
    url: str,
    mail: LinkMail,
    *,
    now: datetime,
    expires: datetime,
) -> bytes:
    """The plain-text mail carrying ``url`` to ``user``."""
    message = EmailMessage()
    message["Subject"] = SUBJECTS[kind]
    message["From"] = mail.from_address
    message["To"] = user.email
    if mail.reply_to and mail.reply_to != mail.from_address:
        message["Reply-To"] = mail.reply_to
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=mail.from_address.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    opening = (
        f"{mail.sent_by} has invited you to Sluice, the mass email tool at {mail.site_url}."
        if kind is PasswordLinkKind.INVITATION
        else f"{mail.sent_by} has sent you a link to set a new password for Sluice "
        f"at {mail.site_url}."
    )
    expiry = format_in_zone(expires, mail.zone)
    message.set_content(
        f"Hello,\n\n{opening}\n\nSet your password here (the link works once, until "
        f"{expiry}):\n\n{url}\n\nThen log in with {user.email} and that password.\n\n"
        "If you did not expect this email, ignore it: nothing changes until the link is used.\n"
    )
    return message.as_bytes(policy=SMTP)  # CRLF line ends (RFC 5321 §2.3.8)


def send_link_mail(
    transport: Transport,
    user: User,
    issued: IssuedLink,
    url: str,
    mail: LinkMail,
    *,
    clock: Clock,
) -> SendResult:
    """Send the link's mail over ``transport``; the relay's answer, accepted or not."""
    data = link_message(
        user, issued.link.kind, url, mail, now=clock.now(), expires=issued.link.expires_at
    )
    return transport.send(data, mail.from_address, user.email)


def link_for_user(
    session: Session, clock: Clock, user_id: int, kind: PasswordLinkKind
) -> IssuedLink:
    """A new link for an existing user (sent again, or a reset by link).
    Raises ``UserError`` for an unknown or deactivated user. Flushes."""
    user = get_user(session, user_id)
    if not user.active:
        raise UserError(f"{user.email} is deactivated: activate them first")
    return issue_link(session, clock, user, kind)
