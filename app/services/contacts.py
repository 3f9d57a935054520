"""Contacts: create, update, find, correct an address, and the mass-email
opt-out flag.

Every address goes through ``app.services.addresses.check_address``; the
database's unique index on ``email_lower`` is the final word on duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import Contact, EmailStatus
from app.models.contacts import AUDIENCE_TYPE_MAX_LENGTH
from app.services.addresses import check_address, normalise_address

NAME_MAX_LENGTH = 200


class ContactError(ValueError):
    """A contact cannot be saved; the message names the field."""


@dataclass
class ContactInput:
    """What a user supplies for a contact, before hygiene."""

    email: str
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    audience_type: str = "contact"
    custom_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SavedContact:
    contact: Contact
    created: bool
    warnings: tuple[str, ...]


def clean_audience_type(value: str) -> str:
    """Audience types are short lower-case words; custom ones are allowed."""
    cleaned = value.strip().lower() or "contact"
    if len(cleaned) > AUDIENCE_TYPE_MAX_LENGTH:
        raise ContactError(
            f"type: at most {AUDIENCE_TYPE_MAX_LENGTH} characters (got {len(cleaned)})"
        )
    if not all(ch.isalnum() or ch in "-_ " for ch in cleaned):
        raise ContactError("type: only letters, digits, spaces, '-' and '_' are allowed")
    return cleaned


def clean_name(field_name: str, value: str) -> str:
    cleaned = " ".join(value.split())  # CR/LF/tabs in a name are never intended
    if len(cleaned) > NAME_MAX_LENGTH:
        raise ContactError(f"{field_name}: at most {NAME_MAX_LENGTH} characters")
    if "\x00" in cleaned:
        raise ContactError(f"{field_name}: contains a NUL character")
    return cleaned


def find_contact(session: Session, address: str) -> Contact | None:
    """The contact with ``address``, compared case-insensitively."""
    _, key = normalise_address(address)
    return session.scalar(select(Contact).where(Contact.email_lower == key))


def save_contact(
    session: Session,
    data: ContactInput,
    clock: Clock,
    own_addresses: frozenset[str] = frozenset(),
    update: bool = True,
) -> SavedContact:
    """Create the contact, or update the one with the same address.

    Raises ``InvalidAddress`` or ``ContactError`` with a message for the user.
    """
    check = check_address(data.email, own_addresses)
    values = {
        "first_name": clean_name("first name", data.first_name),
        "last_name": clean_name("last name", data.last_name),
        "company": clean_name("company", data.company),
        "audience_type": clean_audience_type(data.audience_type),
    }
    now = clock.now()
    contact = session.scalar(select(Contact).where(Contact.email_lower == check.key))
    created = contact is None
    if contact is None:
        contact = Contact(
            email=check.address,
            email_lower=check.key,
            custom_fields=dict(data.custom_fields),
            created_at=now,
            updated_at=now,
            **values,
        )
        session.add(contact)
    elif update:
        for name, value in values.items():
            setattr(contact, name, value)
        contact.custom_fields = {**contact.custom_fields, **data.custom_fields}
        contact.updated_at = now
    session.flush()
    return SavedContact(contact, created, check.warnings)


def set_opt_out(
    session: Session, address: str, opted_out: bool, source: str, clock: Clock
) -> Contact:
    """Set the mass-email opt-out flag with its time and source.

    Raises ``LookupError`` when no contact has ``address``.
    """
    contact = find_contact(session, address)
    if contact is None:
        raise LookupError(f"no contact with address {address.strip()!r}")
    change_opt_out(session, contact, opted_out, source, clock)
    return contact


def change_opt_out(
    session: Session, contact: Contact, opted_out: bool, source: str, clock: Clock
) -> bool:
    """Set ``contact``'s mass-email opt-out flag with its time and source;
    opting in clears both. Returns whether anything changed."""
    if contact.opted_out == opted_out:
        return False
    now = clock.now()
    contact.opted_out = opted_out
    contact.opted_out_at = now if opted_out else None
    contact.opt_out_source = source if opted_out else ""
    contact.updated_at = now
    session.flush()
    return True


def change_address(
    session: Session,
    contact: Contact,
    new_address: str,
    clock: Clock,
    own_addresses: frozenset[str] = frozenset(),
) -> SavedContact:
    """Correct ``contact``'s address (a typo, a moved mailbox).

    A different address is a different mailbox, so a mark ``invalid`` (a
    hard bounce of the old address) is lifted; a change of case only keeps
    it. Raises ``InvalidAddress``, or ``ContactError`` when the address is
    unchanged or another contact has it. Flushes; the caller commits.
    """
    check = check_address(new_address, own_addresses)
    if check.address == contact.email:
        raise ContactError(f"email: the contact's address is already {check.address}")
    if check.key != contact.email_lower:
        holder = session.scalar(select(Contact.id).where(Contact.email_lower == check.key))
        if holder is not None:
            raise ContactError(f"email: another contact already has {check.address}")
        contact.email_status = EmailStatus.VALID
        contact.email_status_reason = ""
        contact.email_status_at = clock.now()
    contact.email = check.address
    contact.email_lower = check.key
    contact.updated_at = clock.now()
    session.flush()
    return SavedContact(contact, created=False, warnings=check.warnings)


def contact_by_id(session: Session, contact_id: int) -> Contact:
    """The contact with ``contact_id``; ``LookupError`` when there is none."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise LookupError(f"no contact with id {contact_id}")
    return contact


def edit_contact(
    session: Session,
    contact: Contact,
    *,
    first_name: str,
    last_name: str,
    company: str,
    audience_type: str,
    clock: Clock,
) -> bool:
    """Set the contact's names, company and type (cleaned as on entry);
    returns whether anything changed. Raises ``ContactError`` naming the
    field, before anything is changed. Flushes; the caller commits."""
    values = {
        "first_name": clean_name("first name", first_name),
        "last_name": clean_name("last name", last_name),
        "company": clean_name("company", company),
        "audience_type": clean_audience_type(audience_type),
    }
    changed = {name: value for name, value in values.items() if getattr(contact, name) != value}
    for name, value in changed.items():
        setattr(contact, name, value)
    if changed:
        contact.updated_at = clock.now()
        session.flush()
    return bool(changed)


def delete_contact(session: Session, contact: Contact) -> None:
    """Delete the contact: it leaves every target list (ON DELETE CASCADE);
    its campaign log rows and queue items stay, without the contact
    (ON DELETE SET NULL), so a mass email's figures do not change. The
    suppression list is by address and is not touched. Flushes."""
    session.delete(contact)
    session.flush()
