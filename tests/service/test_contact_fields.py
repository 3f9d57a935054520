"""A contact's custom fields edited one contact at a time
(``app.services.contact_fields``): the import's rules for names and values,
all or nothing, hostile and oversized input, and placeholders that a
template really reads."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import Contact
from app.services.contact_csv import CUSTOM_VALUE_MAX_LENGTH, ContactCsvFile, ImportFileError
from app.services.contact_fields import (
    NEW_NAME,
    NEW_VALUE,
    CustomFieldEdit,
    CustomFieldErrors,
    custom_field_rows,
    edit_custom_fields,
    placeholder_for,
)
from app.services.public_links import PublicLinks
from app.services.rendering import TemplateSource
from app.services.runtime_settings import RuntimeSettings
from app.services.template_editor import preview_source
from app.services.tokens import LinkSigner
from tests.conftest import TEST_SECRET_KEY, add_contact

LINKS = PublicLinks("https://mail.example.com", LinkSigner(TEST_SECRET_KEY), "")
HOSTILE = "<script>alert(1)</script>"


def stored(session: Session, contact: Contact) -> dict[str, object]:
    session.expire(contact)
    return dict(session.get(Contact, contact.id).custom_fields)  # type: ignore[union-attr]


def test_a_value_is_changed_cleared_and_a_field_added(session: Session, clock: FixedClock) -> None:
    contact = add_contact(
        session, clock, "ann@example.com", custom_fields={"plan": "trial", "city": "Denver"}
    )
    session.commit()
    clock.advance(timedelta(minutes=5))

    changes = edit_custom_fields(
        session,
        contact,
        CustomFieldEdit({"plan": "pro", "city": "  "}, new_name="  Start date ", new_value="May"),
        clock,
    )
    session.commit()

    assert (changes.added, changes.changed, changes.removed) == (
        ("Start date",),
        ("plan",),
        ("city",),
    )
    assert stored(session, contact) == {"plan": "pro", "Start date": "May"}
    assert contact.updated_at == clock.now()


def test_nothing_to_change_changes_nothing(session: Session, clock: FixedClock) -> None:
    contact = add_contact(
        session, clock, "ann@example.com", custom_fields={"tags": ["a", "b"], "note": "x\ny"}
    )
    session.commit()
    before = contact.updated_at
    clock.advance(timedelta(minutes=5))

    # As a browser posts them: the list as the page shows it, CR LF breaks.
    changes = edit_custom_fields(
        session, contact, CustomFieldEdit({"tags": "a, b", "note": "x\r\ny"}), clock
    )

    assert not changes
    assert stored(session, contact) == {"tags": ["a", "b"], "note": "x\ny"}
    assert contact.updated_at == before


def test_a_changed_multi_line_value_is_stored_with_lf(session: Session, clock: FixedClock) -> None:
    contact = add_contact(session, clock, "ann@example.com", custom_fields={"note": "x"})
    edit_custom_fields(session, contact, CustomFieldEdit({"note": "\r\nx\r\ny "}), clock)
    assert stored(session, contact) == {"note": "\nx\ny "}  # otherwise as typed


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("   ", "name the field"),
        ("E-mail", "'E-mail' is the contact's email, a field of its own: change it above"),
        ("first_Name", "'first_Name' is the contact's first name, a field of its own"),
        ("Surname", "'Surname' is the contact's last name"),
        ("Organisation", "'Organisation' is the contact's company"),
        ("audience type", "'audience type' is the contact's type"),
        ("sluice_reason", "is a column of Sluice's own files, which an import skips"),
        ("Email_Status", "is a column of Sluice's own files"),
        ("x" * 201, "the name is at most 200 characters (got 201)"),
        ("a\x00b", "the name contains a NUL character"),
        ("PLAN", "the contact has a field 'plan' already: change its value instead"),
    ],
)
def test_a_bad_name_is_refused_and_nothing_is_saved(
    session: Session, clock: FixedClock, name: str, error: str
) -> None:
    contact = add_contact(session, clock, "ann@example.com", custom_fields={"plan": "trial"})

    with pytest.raises(CustomFieldErrors) as refused:
        edit_custom_fields(
            session, contact, CustomFieldEdit({"plan": "pro"}, new_name=name, new_value="v"), clock
        )

    assert refused.value.fields == {}
    assert error in refused.value.new[NEW_NAME]
    assert NEW_VALUE not in refused.value.new
    assert stored(session, contact) == {"plan": "trial"}  # the good change is not made either


def test_a_name_of_200_characters_and_any_text_is_accepted(
    session: Session, clock: FixedClock
) -> None:
    contact = add_contact(session, clock, "ann@example.com")
    for name in ("y" * 200, HOSTILE, "{{ 7*7 }}", 'it\'s "quoted" \\ é', "none"):
        edit_custom_fields(session, contact, CustomFieldEdit(new_name=name, new_value=name), clock)
    assert stored(session, contact) == {
        name: name for name in ("y" * 200, HOSTILE, "{{ 7*7 }}", 'it\'s "quoted" \\ é', "none")
    }


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("v" * (CUSTOM_VALUE_MAX_LENGTH + 1), "at most 10,000 characters (got 10,001)"),
        ("v" * 1_000_000, "at most 10,000 characters (got 1,000,000)"),
        ("a\x00b", "contains a NUL character"),
    ],
)
def test_a_bad_value_is_refused_per_field_and_nothing_is_saved(
    session: Session, clock: FixedClock, value: str, error: str
) -> None:
    contact = add_contact(
        session, clock, "ann@example.com", custom_fields={"plan": "trial", "city": "Denver"}
    )

    with pytest.raises(CustomFieldErrors) as refused:
        edit_custom_fields(
            session,
            contact,
            CustomFieldEdit({"plan": value, "city": ""}, new_name="Tier", new_value=value),
            clock,
        )

    assert refused.value.fields == {"plan": error}
    assert refused.value.new == {NEW_VALUE: error}
    assert stored(session, contact) == {"plan": "trial", "city": "Denver"}


def test_the_longest_value_is_accepted(session: Session, clock: FixedClock) -> None:
    contact = add_contact(session, clock, "ann@example.com")
    value = "v" * CUSTOM_VALUE_MAX_LENGTH
    edit_custom_fields(session, contact, CustomFieldEdit(new_name="Notes", new_value=value), clock)
    assert stored(session, contact) == {"Notes": value}


def test_a_new_field_needs_a_name_and_a_value(session: Session, clock: FixedClock) -> None:
    contact = add_contact(session, clock, "ann@example.com")
    with pytest.raises(CustomFieldErrors) as no_value:
        edit_custom_fields(session, contact, CustomFieldEdit(new_name="Tier"), clock)
    assert no_value.value.new == {NEW_VALUE: "enter a value: a field without one is not kept"}
    with pytest.raises(CustomFieldErrors) as no_name:
        edit_custom_fields(session, contact, CustomFieldEdit(new_value="gold"), clock)
    assert no_name.value.new == {NEW_NAME: "name the field"}
    assert stored(session, contact) == {}


def test_a_field_is_renamed_by_clearing_it_and_adding_the_new_name(
    session: Session, clock: FixedClock
) -> None:
    contact = add_contact(session, clock, "ann@example.com", custom_fields={"Plan": "pro"})
    edit_custom_fields(
        session, contact, CustomFieldEdit({"Plan": ""}, new_name="plan", new_value="pro"), clock
    )
    assert stored(session, contact) == {"plan": "pro"}


def test_a_key_the_contact_does_not_have_is_checked_as_a_new_field(
    session: Session, clock: FixedClock
) -> None:
    """A form older than a change made elsewhere, or a forged one."""
    contact = add_contact(session, clock, "ann@example.com", custom_fields={"plan": "pro"})
    with pytest.raises(CustomFieldErrors) as refused:
        edit_custom_fields(
            session, contact, CustomFieldEdit({"email": "x@example.com", "PLAN": "gold"}), clock
        )
    assert refused.value.fields == {
        "email": "'email' is the contact's email, a field of its own: change it above",
        "PLAN": "the contact has a field 'plan' already: change its value instead",
    }
    edit_custom_fields(session, contact, CustomFieldEdit({"city": "Denver", "gone": ""}), clock)
    assert stored(session, contact) == {"plan": "pro", "city": "Denver"}


def test_the_import_refuses_what_the_page_refuses() -> None:
    """One rule for both: the import's header check is the page's."""
    with pytest.raises(ImportFileError, match="column 2: the custom field's name is at most 200"):
        ContactCsvFile(io.BytesIO(f"email,{'x' * 201}\nann@example.com,1\n".encode()), "utf-8")


@pytest.mark.parametrize(
    ("key", "placeholder"),
    [
        ("plan", "{{ plan }}"),
        ("Plan_B", "{{ Plan_B }}"),
        ("Start date", "{{ custom['Start date'] }}"),
        ("x-y", "{{ custom['x-y'] }}"),
        ("none", "{{ custom['none'] }}"),  # a Jinja constant
        ("loop", "{{ custom['loop'] }}"),  # Jinja's own
        ("opt_out_url", "{{ custom['opt_out_url'] }}"),  # Sluice's own
        ("first_name", "{{ custom['first_name'] }}"),  # the contact field wins
    ],
)
def test_placeholders(key: str, placeholder: str) -> None:
    assert placeholder_for(key) == placeholder


@pytest.mark.parametrize(
    "key",
    [
        "plan",
        "Start date",
        "none",
        "loop",
        "FULL_NAME",  # the contact's own name gives way to it
        HOSTILE,
        "{{ 7*7 }}",
        'it\'s "quoted" \\ \\n é',
        "tab\there",
        "}} {% if 1 %}",
    ],
)
def test_each_placeholder_shown_reads_its_field_in_a_template(
    session: Session, clock: FixedClock, runtime: RuntimeSettings, key: str
) -> None:
    contact = add_contact(session, clock, "ann@example.com", first_name="Ann")
    edit_custom_fields(session, contact, CustomFieldEdit(new_name=key, new_value="VALUE-1"), clock)
    (row,) = custom_field_rows(contact)
    assert (row.key, row.text) == (key, "VALUE-1")

    source = TemplateSource("Hello", "<p>x</p>", f"[{row.placeholder}]")
    preview = preview_source(source, contact, runtime=runtime, links=LINKS)

    assert preview.ok, preview.problems
    assert "[VALUE-1]" in preview.text
