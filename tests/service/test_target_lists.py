"""Target lists, members, contact filters and the ``sluice lists`` commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.orm import Session

from app.cli.lists import audience_command, lists_group
from app.clock import FixedClock
from app.models import Contact, EmailStatus, SavedFilter, TargetList, TargetListMember
from app.services.contacts import set_opt_out
from app.services.target_lists import (
    ID_CHUNK_SIZE,
    ContactFilter,
    ContactFilterError,
    TargetListError,
    add_members,
    create_target_list,
    get_saved_filter,
    get_target_list,
    list_summaries,
    populate_from_filter,
    remove_members,
    save_filter,
)
from tests.conftest import add_contact


def members_of(session: Session, target_list: TargetList) -> set[str]:
    rows = session.scalars(
        select(Contact.email_lower)
        .join(TargetListMember, TargetListMember.contact_id == Contact.id)
        .where(TargetListMember.target_list_id == target_list.id)
    )
    return {address for address in rows if address is not None}


def matching(session: Session, contact_filter: ContactFilter) -> set[str]:
    rows = session.scalars(select(Contact.email_lower).where(contact_filter.where_clause()))
    return {address for address in rows if address is not None}


# --- target lists -----------------------------------------------------------


def test_create_and_get_target_list(session: Session, clock: FixedClock) -> None:
    created = create_target_list(session, "  Spring \n newsletter ", " Who reads it ", clock)
    assert created.name == "Spring newsletter"
    assert created.description == "Who reads it"
    assert created.created_at == clock.now()
    assert get_target_list(session, "Spring newsletter").id == created.id


def test_duplicate_list_name_is_refused(session: Session, clock: FixedClock) -> None:
    create_target_list(session, "Customers", "", clock)
    with pytest.raises(TargetListError, match="'Customers' already exists"):
        create_target_list(session, " Customers ", "again", clock)


@pytest.mark.parametrize(
    ("name", "message"),
    [("   ", "must not be empty"), ("x" * 201, "at most 200"), ("a\x00b", "NUL")],
)
def test_bad_list_names_are_refused(
    session: Session, clock: FixedClock, name: str, message: str
) -> None:
    with pytest.raises(TargetListError, match=message):
        create_target_list(session, name, "", clock)
    assert session.scalar(select(func.count()).select_from(TargetList)) == 0


def test_missing_list_is_named(session: Session) -> None:
    with pytest.raises(LookupError, match="no target list named 'Ghosts'"):
        get_target_list(session, "Ghosts")


def test_add_members_counts_only_new_members(session: Session, clock: FixedClock) -> None:
    ann = add_contact(session, clock, "ann@example.com")
    bob = add_contact(session, clock, "bob@example.com")
    customers = create_target_list(session, "Customers", "", clock)

    assert add_members(session, customers, [ann.id], clock) == 1
    clock.advance(timedelta(hours=1))
    # ann is already a member, the id repeated and the unknown id change nothing.
    assert add_members(session, customers, [ann.id, bob.id, bob.id, 999_999], clock) == 1
    assert add_members(session, customers, [ann.id, bob.id], clock) == 0

    assert members_of(session, customers) == {"ann@example.com", "bob@example.com"}
    assert customers.updated_at == clock.now()
    added_at = session.scalar(
        select(TargetListMember.added_at).where(TargetListMember.contact_id == bob.id)
    )
    assert added_at == clock.now()


def test_add_members_from_a_select(session: Session, clock: FixedClock) -> None:
    for address in ("ann@acme.example", "bob@acme.example", "cy@other.example"):
        add_contact(session, clock, address)
    acme = create_target_list(session, "Acme people", "", clock)
    at_acme = select(Contact.id).where(Contact.email_lower.like("%@acme.example"))

    assert add_members(session, acme, at_acme, clock) == 2
    assert add_members(session, acme, at_acme, clock) == 0
    assert members_of(session, acme) == {"ann@acme.example", "bob@acme.example"}


def test_membership_is_per_list(session: Session, clock: FixedClock) -> None:
    ann = add_contact(session, clock, "ann@example.com")
    first = create_target_list(session, "First", "", clock)
    second = create_target_list(session, "Second", "", clock)
    assert add_members(session, first, [ann.id], clock) == 1
    assert add_members(session, second, [ann.id], clock) == 1
    assert remove_members(session, first, [ann.id], clock) == 1
    assert members_of(session, first) == set()
    assert members_of(session, second) == {"ann@example.com"}


def test_remove_members_counts_only_members(session: Session, clock: FixedClock) -> None:
    ann = add_contact(session, clock, "ann@example.com")
    bob = add_contact(session, clock, "bob@example.com")
    customers = create_target_list(session, "Customers", "", clock)
    add_members(session, customers, [ann.id, bob.id], clock)
    clock.advance(timedelta(minutes=5))

    assert remove_members(session, customers, [ann.id, 999_999], clock) == 1
    assert remove_members(session, customers, [ann.id], clock) == 0
    assert members_of(session, customers) == {"bob@example.com"}
    assert customers.updated_at == clock.now()
    assert remove_members(session, customers, select(Contact.id), clock) == 1
    assert members_of(session, customers) == set()


def test_more_ids_than_one_chunk(session: Session, clock: FixedClock) -> None:
    count = ID_CHUNK_SIZE + 5
    now = clock.now()
    session.execute(
        insert(Contact),
        [
            {"email": f"p{n}@example.com", "email_lower": f"p{n}@example.com"}
            | {"created_at": now, "updated_at": now}
            for n in range(count)
        ],
    )
    everyone = create_target_list(session, "Everyone", "", clock)
    ids = list(session.scalars(select(Contact.id)))
    assert add_members(session, everyone, ids, clock) == count
    assert add_members(session, everyone, ids, clock) == 0
    assert remove_members(session, everyone, ids, clock) == count


def test_list_summaries(session: Session, clock: FixedClock) -> None:
    ann = add_contact(session, clock, "ann@example.com")
    bob = add_contact(session, clock, "bob@example.com")
    vip = create_target_list(session, "VIP", "the few", clock)
    create_target_list(session, "Empty", "", clock)
    everyone = create_target_list(session, "Everyone", "all of them", clock)
    add_members(session, vip, [ann.id], clock)
    add_members(session, everyone, [ann.id, bob.id], clock)

    summaries = [(s.name, s.description, s.member_count) for s in list_summaries(session)]
    assert summaries == [
        ("Empty", "", 0),
        ("Everyone", "all of them", 2),
        ("VIP", "the few", 1),
    ]


# --- contact filters --------------------------------------------------------


@pytest.fixture
def people(session: Session, clock: FixedClock) -> dict[str, Contact]:
    """Five contacts created an hour apart, from 09:00 to 13:00."""
    specs: dict[str, dict[str, Any]] = {
        "ann": {"audience_type": "lead", "company": "Acme", "custom_fields": {"plan": "gold"}},
        "bob": {"audience_type": "contact", "company": "ACME", "custom_fields": {"seats": 5}},
        "cy": {"audience_type": "account", "company": "Other", "custom_fields": {}},
        "di": {"audience_type": "lead", "company": "", "custom_fields": {"plan": "Gold"}},
        "ed": {"audience_type": "partner", "company": "acme", "custom_fields": {"plan": "free"}},
    }
    contacts = {}
    for name, fields in specs.items():
        contacts[name] = add_contact(session, clock, f"{name}@example.com", **fields)
        clock.advance(timedelta(hours=1))
    set_opt_out(session, "bob@example.com", True, "test", clock)
    set_opt_out(session, "di@example.com", True, "test", clock)
    return contacts


def addresses(*names: str) -> set[str]:
    return {f"{name}@example.com" for name in names}


def at(hour: int) -> datetime:
    return datetime(2026, 3, 2, hour, 0, tzinfo=UTC)


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize(
    ("contact_filter", "expected"),
    [
        (ContactFilter(), addresses("ann", "bob", "cy", "di", "ed")),
        (ContactFilter(audience_types=("lead",)), addresses("ann", "di")),
        (ContactFilter(audience_types=(" Lead ", "PARTNER")), addresses("ann", "di", "ed")),
        (ContactFilter(company="aCmE"), addresses("ann", "bob", "ed")),
        (ContactFilter(company=""), addresses("di")),
        (ContactFilter(created_from=at(10)), addresses("bob", "cy", "di", "ed")),
        (ContactFilter(created_to=at(11)), addresses("ann", "bob")),
        (ContactFilter(created_from=at(10), created_to=at(12)), addresses("bob", "cy")),
        (ContactFilter(opted_out=True), addresses("bob", "di")),
        (ContactFilter(opted_out=False), addresses("ann", "cy", "ed")),
        (ContactFilter(custom_field=("plan", "gold")), addresses("ann")),
        (ContactFilter(custom_field=("plan", "Gold")), addresses("di")),
        (ContactFilter(custom_field=("seats", "5")), addresses("bob")),
        (ContactFilter(custom_field=("missing", "")), set()),
        (ContactFilter(custom_field=("plan') OR 1=1 --", "gold")), set()),
        (
            ContactFilter(audience_types=("lead",), company="acme", opted_out=False),
            addresses("ann"),
        ),
    ],
)
def test_each_filter_criterion(
    session: Session, contact_filter: ContactFilter, expected: set[str]
) -> None:
    assert matching(session, contact_filter) == expected


@pytest.mark.parametrize("url", ["postgresql+psycopg://", "sqlite://"])
def test_custom_field_key_and_value_are_bound_parameters(url: str) -> None:
    dialect = create_engine(url).dialect  # no connection is made
    key, value = "plan'; DROP TABLE contacts; --", "gold"
    compiled = ContactFilter(custom_field=(key, value)).where_clause().compile(dialect=dialect)
    assert "DROP TABLE" not in str(compiled)
    assert "gold" not in str(compiled)
    assert key in compiled.params.values()
    assert value in compiled.params.values()


def test_filter_json_round_trip() -> None:
    contact_filter = ContactFilter(
        audience_types=("lead", "client"),
        company="Acme",
        created_from=at(9),
        created_to=at(17),
        opted_out=False,
        custom_field=("plan", "gold"),
    )
    assert ContactFilter.from_json(contact_filter.to_json()) == contact_filter
    assert ContactFilter.from_dict(contact_filter.to_dict()) == contact_filter
    assert ContactFilter.from_json("{}") == ContactFilter()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"colour": "red"}', "unknown filter field.*colour"),
        ('{"audience_types": "lead"}', "audience_types: must be a list"),
        ('{"audience_types": [" "]}', "audience_types: each must be a name"),
        ('{"company": 3}', "company: must be a string"),
        ('{"opted_out": "yes"}', "opted_out: must be true, false or null"),
        ('{"created_from": "last week"}', "created_from: 'last week' is not"),
        ('{"created_from": "2026-01-01T00:00:00"}', "created_from: give a timezone-aware"),
        (
            '{"created_from": "2026-02-01T00:00:00+00:00", "created_to": "2026-01-01T00:00:00Z"}',
            "created_from: must be before created_to",
        ),
        ('{"custom_field": ["plan"]}', "custom_field: must be"),
        ('{"custom_field": ["", "x"]}', "custom_field: the key"),
        ('{"custom_field": ["a\\"b", "x"]}', "custom_field: the key must not contain"),
    ],
)
def test_bad_filter_json_is_refused(text: str, message: str) -> None:
    with pytest.raises(ContactFilterError, match=message):
        ContactFilter.from_json(text)


def test_saved_filter(session: Session, clock: FixedClock) -> None:
    leads = ContactFilter(audience_types=("lead",), opted_out=False)
    saved = save_filter(session, "Active leads", leads, clock)
    assert session.get(SavedFilter, saved.id) is saved
    assert get_saved_filter(session, "Active leads") == leads
    with pytest.raises(TargetListError, match="already exists"):
        save_filter(session, "Active leads", ContactFilter(), clock)
    with pytest.raises(LookupError, match="no saved filter named 'Nope'"):
        get_saved_filter(session, "Nope")


def test_populate_applies_the_filter_once(session: Session, clock: FixedClock) -> None:
    add_contact(session, clock, "ann@example.com", audience_type="lead")
    add_contact(session, clock, "bob@example.com", audience_type="contact")
    leads = create_target_list(session, "Leads", "", clock)
    lead_filter = ContactFilter(audience_types=("lead",))

    assert populate_from_filter(session, leads, lead_filter, clock) == 1
    # A lead created later is not added by itself (EspoCRM's populate-from-report)…
    add_contact(session, clock, "cy@example.com", audience_type="lead")
    assert members_of(session, leads) == {"ann@example.com"}
    # …only by populating again, which adds just the new one.
    assert populate_from_filter(session, leads, lead_filter, clock) == 1
    assert members_of(session, leads) == {"ann@example.com", "cy@example.com"}


# --- command line -----------------------------------------------------------


def test_cli_lists_create_add_remove_list(app: Flask, session: Session, clock: FixedClock) -> None:
    add_contact(session, clock, "ann@example.com")
    add_contact(session, clock, "bob@example.com")
    session.commit()
    runner = app.test_cli_runner()

    result = runner.invoke(lists_group, ["create", "Friends", "--description", "close ones"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(lists_group, ["create", "Friends"])
    assert result.exit_code != 0
    assert "already exists" in result.output

    result = runner.invoke(lists_group, ["add", "Friends", "ANN@example.com", "bob@example.com"])
    assert result.exit_code == 0, result.output
    assert "Added 2 contact(s)" in result.output

    result = runner.invoke(lists_group, ["add", "Friends", "bob@example.com", "zed@example.com"])
    assert result.exit_code != 0
    assert "Added 0 contact(s)" in result.output
    assert "no contact with address: zed@example.com" in result.output

    result = runner.invoke(lists_group, ["remove", "Friends", "ann@example.com", "not an address"])
    assert result.exit_code != 0
    assert "Removed 1 contact(s)" in result.output
    assert "not an address" in result.output

    result = runner.invoke(lists_group, ["list"])
    assert result.exit_code == 0, result.output
    assert "Friends" in result.output
    assert "close ones" in result.output
    session.expire_all()
    assert members_of(session, get_target_list(session, "Friends")) == {"bob@example.com"}

    result = runner.invoke(lists_group, ["add", "Nobody", "ann@example.com"])
    assert result.exit_code != 0
    assert "no target list named 'Nobody'" in result.output


def test_cli_populate_and_audience(app: Flask, session: Session, clock: FixedClock) -> None:
    add_contact(session, clock, "ann@example.com", audience_type="lead", company="Acme")
    add_contact(session, clock, "bob@example.com", audience_type="lead", company="Other")
    cy = add_contact(session, clock, "cy@example.com", audience_type="lead", company="acme")
    cy.email_status = EmailStatus.INVALID
    create_target_list(session, "Acme leads", "", clock)
    create_target_list(session, "Blocked", "", clock)
    session.commit()
    runner = app.test_cli_runner()

    result = runner.invoke(
        lists_group,
        ["populate", "Acme leads", "--type", "Lead", "--company", "ACME", "--save-as", "acme"],
    )
    assert result.exit_code == 0, result.output
    assert "Added 2 contact(s)" in result.output
    result = runner.invoke(lists_group, ["populate", "Blocked", "--filter", "acme"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(lists_group, ["populate", "Blocked", "--filter", "acme", "--type", "x"])
    assert result.exit_code != 0
    result = runner.invoke(lists_group, ["populate", "Blocked", "--field", "novalue"])
    assert result.exit_code != 0
    assert "KEY=VALUE" in result.output
    result = runner.invoke(lists_group, ["populate", "Blocked", "--filter", "missing"])
    assert result.exit_code != 0
    assert "no saved filter named 'missing'" in result.output
    result = runner.invoke(
        lists_group,
        ["populate", "Blocked", "--created-from", "2030-01-01", "--created-to", "2029-01-01"],
    )
    assert result.exit_code != 0
    assert "created_from: must be before created_to" in result.output

    result = runner.invoke(audience_command, ["--list", "Acme leads"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split() for line in result.output.splitlines())
    assert lines == {
        "recipient": "1",
        "opted_out": "0",
        "invalid_address": "1",
        "no_address": "0",
        "excluded": "0",
    }
    result = runner.invoke(audience_command, ["--list", "Acme leads", "--exclude", "Blocked"])
    assert result.exit_code == 0, result.output
    assert dict(line.split() for line in result.output.splitlines())["excluded"] == "2"
    result = runner.invoke(audience_command, ["--list", "Nope"])
    assert result.exit_code != 0
    assert "no target list named 'Nope'" in result.output
