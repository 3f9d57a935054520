"""Contacts: create and update through ``save_contact``, uniqueness enforced
by the database, cleaning of names and types, and the mass-email opt-out."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import Contact
from app.services.addresses import InvalidAddress
from app.services.contacts import (
    ContactError,
    ContactInput,
    find_contact,
    save_contact,
    set_opt_out,
)


def contact_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Contact)) or 0


def test_save_creates_a_normalised_contact(session: Session, clock: FixedClock) -> None:
    saved = save_contact(
        session,
        ContactInput(
            email="  Ann.Lee@Example.COM ",
            first_name="Ann",
            last_name="Lee",
            company="Mile High Realty",
            audience_type="Agent",
            custom_fields={"city": "Denver"},
        ),
        clock,
    )
    session.commit()
    contact = session.get(Contact, saved.contact.id)
    assert saved.created
    assert contact is not None
    assert (contact.email, contact.email_lower) == ("Ann.Lee@example.com", "ann.lee@example.com")
    assert contact.audience_type == "agent"
    assert contact.custom_fields == {"city": "Denver"}
    assert contact.created_at == clock.now() == contact.updated_at
    assert not contact.opted_out


def test_save_with_another_case_updates_the_same_contact(
    session: Session, clock: FixedClock
) -> None:
    first = save_contact(
        session, ContactInput(email="ann@example.com", custom_fields={"city": "Denver"}), clock
    )
    clock.advance(timedelta(hours=1))
    second = save_contact(
        session,
        ContactInput(email="ANN@EXAMPLE.COM", first_name="Ann", custom_fields={"plan": "pro"}),
        clock,
    )
    session.commit()
    assert not second.created
    assert second.contact.id == first.contact.id
    assert contact_count(session) == 1
    assert second.contact.first_name == "Ann"
    assert second.contact.custom_fields == {"city": "Denver", "plan": "pro"}
    assert second.contact.updated_at == clock.now() > second.contact.created_at
    assert second.contact.email == "ann@example.com"  # the stored address is not retyped


def test_save_without_update_leaves_an_existing_contact_alone(
    session: Session, clock: FixedClock
) -> None:
    save_contact(session, ContactInput(email="ann@example.com", first_name="Ann"), clock)
    saved = save_contact(
        session, ContactInput(email="Ann@example.com", first_name="Changed"), clock, update=False
    )
    assert not saved.created
    assert saved.contact.first_name == "Ann"


def test_database_refuses_a_second_contact_with_the_same_key(
    session: Session, clock: FixedClock
) -> None:
    save_contact(session, ContactInput(email="ann@example.com"), clock)
    session.commit()

    # Bypass the service: the unique index itself must say no.
    def raw_insert(address: str) -> None:
        now = clock.now()
        values = {"email": address, "email_lower": address.lower()}
        session.execute(insert(Contact).values(**values, created_at=now, updated_at=now))

    raw_insert("bob@example.com")  # the same statement succeeds for a new key
    session.commit()
    with pytest.raises(IntegrityError):
        raw_insert("ANN@example.com")
    session.rollback()
    assert contact_count(session) == 2


def test_names_are_cleaned(session: Session, clock: FixedClock) -> None:
    saved = save_contact(
        session,
        ContactInput(
            email="bob@example.org",
            first_name="  Bob \r\n",
            last_name="van\tder   Berg",
            company=" Front\nRange  Homes ",
        ),
        clock,
    )
    assert saved.contact.first_name == "Bob"
    assert saved.contact.last_name == "van der Berg"
    assert saved.contact.company == "Front Range Homes"


# (input, field the error must name)
BAD_INPUTS = [
    (ContactInput(email="a@example.com", first_name="x" * 201), "first name"),
    (ContactInput(email="a@example.com", last_name="Nul\x00Byte"), "last name"),
    (ContactInput(email="a@example.com", company="c" * 500), "company"),
    (ContactInput(email="a@example.com", audience_type="<script>"), "type"),
    (ContactInput(email="a@example.com", audience_type="t" * 41), "type"),
    (ContactInput(email="a@example.com", audience_type="lead;drop"), "type"),
]


def test_bad_names_and_types_are_rejected_naming_the_field(
    session: Session, clock: FixedClock
) -> None:
    for data, field in BAD_INPUTS:
        with pytest.raises(ContactError, match=field):
            save_contact(session, data, clock)
    assert contact_count(session) == 0


def test_custom_and_empty_audience_types(session: Session, clock: FixedClock) -> None:
    partner = save_contact(
        session, ContactInput(email="p@example.com", audience_type=" Partner "), clock
    )
    default = save_contact(session, ContactInput(email="d@example.com", audience_type=""), clock)
    assert partner.contact.audience_type == "partner"
    assert default.contact.audience_type == "contact"


def test_invalid_address_is_refused(session: Session, clock: FixedClock) -> None:
    with pytest.raises(InvalidAddress):
        save_contact(session, ContactInput(email="Bob <bob@example.com>"), clock)
    assert contact_count(session) == 0


def test_own_address_is_saved_with_a_warning(session: Session, clock: FixedClock) -> None:
    saved = save_contact(
        session,
        ContactInput(email="News.Desk@example.com"),
        clock,
        frozenset({"news.desk@example.com"}),
    )
    assert saved.created
    assert saved.warnings


def test_opt_out_records_time_and_source_and_opt_in_clears_them(
    session: Session, clock: FixedClock
) -> None:
    save_contact(session, ContactInput(email="ann@example.com"), clock)
    clock.advance(timedelta(days=1))
    opted_out_at = clock.now()
    contact = set_opt_out(session, "ANN@example.com", True, "unsubscribe link", clock)
    session.commit()
    assert (contact.opted_out, contact.opted_out_at, contact.opt_out_source) == (
        True,
        opted_out_at,
        "unsubscribe link",
    )

    # Opting out again keeps the first time and source.
    clock.advance(timedelta(days=1))
    set_opt_out(session, "ann@example.com", True, "csv import", clock)
    assert (contact.opted_out_at, contact.opt_out_source) == (opted_out_at, "unsubscribe link")

    set_opt_out(session, "ann@example.com", False, "admin", clock)
    session.commit()
    reread = find_contact(session, "ann@example.com")
    assert reread is not None
    assert (reread.opted_out, reread.opted_out_at, reread.opt_out_source) == (False, None, "")


def test_opt_out_of_unknown_address_raises_lookup_error(
    session: Session, clock: FixedClock
) -> None:
    save_contact(session, ContactInput(email="ann@example.com"), clock)
    with pytest.raises(LookupError, match=re.escape("nobody@example.com")):
        set_opt_out(session, "nobody@example.com", True, "unsubscribe link", clock)
