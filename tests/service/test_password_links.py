"""Password links (app.services.password_links) on SQLite and PostgreSQL:
only the token's hash is stored, a link works once, until it expires (the
injected clock moves), while its user is active, and only the latest one
of a user; the invitation mail carries the link."""

from __future__ import annotations

import email
import hashlib
from datetime import timedelta
from email.message import Message
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from app.clock import FixedClock
from app.models import PasswordLink, PasswordLinkKind, Role, User
from app.services.password_links import (
    LINK_LIFETIME,
    LinkMail,
    LinkProblem,
    LinkRefused,
    invite_user,
    link_for_user,
    link_message,
    pending_links,
    set_password_with_link,
    usable_link,
)
from app.services.users import UserError, set_active

NEW_PASSWORD = "a long enough new password"


def invited(
    session: Session, clock: FixedClock, address: str = "new@example.com"
) -> tuple[User, str]:
    issued = invite_user(session, clock, address, Role.MARKETER)
    session.commit()
    user = session.get(User, issued.link.user_id)
    assert user is not None
    return user, issued.token


def refusal(session: Session, clock: FixedClock, token: str) -> LinkProblem:
    with pytest.raises(LinkRefused) as caught:
        usable_link(session, clock, token)
    return caught.value.problem


def test_only_the_hash_of_the_token_is_stored(session: Session, clock: FixedClock) -> None:
    user, token = invited(session, clock)

    row = session.scalars(select(PasswordLink)).one()
    assert len(token) >= 43  # 256 random bits
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {row.token_hash, user.password_hash}
    assert row.kind == PasswordLinkKind.INVITATION
    assert row.expires_at == clock.now() + LINK_LIFETIME == clock.now() + timedelta(hours=72)
    assert user.active and user.role == Role.MARKETER
    assert usable_link(session, clock, token) == (row, user)


def test_a_link_sets_the_password_once(session: Session, clock: FixedClock) -> None:
    user, token = invited(session, clock)

    set_password_with_link(session, clock, token, NEW_PASSWORD)
    session.commit()

    assert check_password_hash(user.password_hash, NEW_PASSWORD)
    assert refusal(session, clock, token) == LinkProblem.USED
    with pytest.raises(LinkRefused):
        set_password_with_link(session, clock, token, "another long password")
    session.rollback()
    session.expire_all()
    assert check_password_hash(session.get(User, user.id).password_hash, NEW_PASSWORD)  # type: ignore[union-attr]
    assert pending_links(session, clock) == {}


def test_a_link_expires_after_72_hours(session: Session, clock: FixedClock) -> None:
    _, token = invited(session, clock)

    clock.advance(LINK_LIFETIME - timedelta(seconds=1))
    usable_link(session, clock, token)
    clock.advance(timedelta(seconds=1))

    assert refusal(session, clock, token) == LinkProblem.EXPIRED
    with pytest.raises(LinkRefused):
        set_password_with_link(session, clock, token, NEW_PASSWORD)


def test_a_short_password_is_refused_and_keeps_the_link(
    session: Session, clock: FixedClock
) -> None:
    _, token = invited(session, clock)

    with pytest.raises(UserError, match="at least 12 characters") as caught:
        set_password_with_link(session, clock, token, "short")
    session.rollback()

    assert caught.value.field == "password"
    set_password_with_link(session, clock, token, NEW_PASSWORD)


def test_a_deactivated_user_cannot_use_their_link(session: Session, clock: FixedClock) -> None:
    admin, _ = invited(session, clock, "boss@example.com")
    admin.role = Role.ADMIN
    user, token = invited(session, clock)

    set_active(session, admin.id, user.id, False)
    session.commit()

    assert refusal(session, clock, token) == LinkProblem.INACTIVE
    with pytest.raises(UserError, match="deactivated"):
        link_for_user(session, clock, user.id, PasswordLinkKind.RESET)


def test_a_new_link_replaces_the_pending_one(session: Session, clock: FixedClock) -> None:
    user, first = invited(session, clock)
    clock.advance(timedelta(hours=1))

    second = link_for_user(session, clock, user.id, PasswordLinkKind.RESET)
    session.commit()

    assert refusal(session, clock, first) == LinkProblem.REPLACED
    assert pending_links(session, clock) == {user.id: second.link}
    set_password_with_link(session, clock, second.token, NEW_PASSWORD)


@pytest.mark.parametrize("token", ["", "x", "A" * 43, "A" * 10_000, "\udcff"])
def test_unknown_tokens_match_nothing(session: Session, clock: FixedClock, token: str) -> None:
    invited(session, clock)
    assert refusal(session, clock, token) == LinkProblem.UNKNOWN


def test_an_invited_address_must_be_new_and_valid(session: Session, clock: FixedClock) -> None:
    invited(session, clock)
    with pytest.raises(UserError, match="already exists"):
        invite_user(session, clock, "NEW@example.com", Role.ADMIN)
    with pytest.raises(UserError, match="@-sign"):
        invite_user(session, clock, "<script>alert(1)</script>", Role.ADMIN)


def test_the_mail_carries_the_link_and_its_expiry(session: Session, clock: FixedClock) -> None:
    user, _ = invited(session, clock)
    mail = LinkMail(
        from_address="sluice@example.com",
        reply_to="boss@example.com",
        sent_by="boss@example.com",
        site_url="https://mail.example.com",
        zone=ZoneInfo("America/New_York"),
    )
    url = "https://mail.example.com/password/abc"

    raw = link_message(
        user,
        PasswordLinkKind.INVITATION,
        url,
        mail,
        now=clock.now(),
        expires=clock.now() + LINK_LIFETIME,
    )

    message: Message = email.message_from_bytes(raw)
    assert message["Subject"] == "You are invited to Sluice"
    assert (message["From"], message["To"], message["Reply-To"]) == (
        "sluice@example.com",
        "new@example.com",
        "boss@example.com",
    )
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert url in body
    assert "boss@example.com has invited you" in body
    assert "until 2026-03-05 04:00:00 EST" in body  # 2026-03-02 09:00 UTC + 72 h, New York
    # SMTP needs CRLF line ends (RFC 5321 §2.3.8); relays such as Postfix
    # refuse bare LF, and the transport sends the bytes as they are.
    assert b"\n" not in raw.replace(b"\r\n", b"")
