"""Audience resolution against a naive set model, on SQLite and PostgreSQL.

The model below implements each rule of ``app.services.audience`` literally,
in plain Python sets; the property tests compare it with the SQL on random
contacts and lists. Two schemas are tried: the real one, where the unique
index on ``email_lower`` makes addresses unique, and one with that index
dropped, where several contacts share an address in different cases — the
only way to see the address-based exclusion rule at work on its own.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Index, delete, insert, inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import Contact, EmailStatus, TargetList, TargetListMember
from app.services.audience import (
    AudienceCategory,
    AudienceSummary,
    audience_select,
    resolve_audience,
)

CREATED = datetime(2026, 1, 1, tzinfo=UTC)
ADDRESS_INDEX = "uq_contacts_email_lower"
C = AudienceCategory


@dataclass(frozen=True)
class Person:
    email: str | None
    invalid: bool = False
    opted_out: bool = False

    @property
    def address_key(self) -> str | None:
        """The case-insensitive address, or None for no address."""
        return self.email.lower() if self.email else None


@dataclass(frozen=True)
class World:
    people: Sequence[Person]  # contact id = index + 1
    lists: Sequence[frozenset[int]]  # members by contact id; list id = index + 1
    targets: frozenset[int]  # list ids
    excluding: frozenset[int]


# --- the naive model ----------------------------------------------------------


def expected_category(person: Person) -> AudienceCategory:
    if person.address_key is None:
        return C.NO_ADDRESS
    if person.invalid:
        return C.INVALID_ADDRESS
    if person.opted_out:
        return C.OPTED_OUT
    return C.RECIPIENT


def expected_audience(world: World) -> tuple[dict[int, AudienceCategory], int]:
    """Contact id → category for the audience, and the number excluded."""

    def on_lists(list_ids: Collection[int]) -> set[int]:
        return {contact for list_id in list_ids for contact in world.lists[list_id - 1]}

    def person(contact_id: int) -> Person:
        return world.people[contact_id - 1]

    members = on_lists(world.targets)
    excluded_contacts = on_lists(world.excluding)
    excluded_addresses = {person(c).address_key for c in excluded_contacts} - {None}
    audience = {
        contact_id: expected_category(person(contact_id))
        for contact_id in members
        if contact_id not in excluded_contacts
        and person(contact_id).address_key not in excluded_addresses
    }
    return audience, len(members) - len(audience)


# --- storing a world ------------------------------------------------------------


def contact_row(contact_id: int, person: Person) -> dict[str, object]:
    return {
        "id": contact_id,
        "email": person.email,
        "email_lower": None if person.email is None else person.email.lower(),
        "email_status": EmailStatus.INVALID if person.invalid else EmailStatus.VALID,
        "opted_out": person.opted_out,
        "created_at": CREATED,
        "updated_at": CREATED,
    }


def address_index() -> Index:
    contacts = Contact.metadata.tables["contacts"]
    return next(index for index in contacts.indexes if index.name == ADDRESS_INDEX)


def reset(session: Session, unique_addresses: bool = True) -> None:
    """Empty the tables (hypothesis reuses the test's database for every
    example) and, for the shared-address schema, drop the unique index inside
    the transaction, which the test never commits."""
    session.rollback()
    for table in (TargetListMember, TargetList, Contact):
        session.execute(delete(table))
    if not unique_addresses:
        with quiet_reflection():
            address_index().drop(session.connection(), checkfirst=True)


@contextmanager
def quiet_reflection() -> Iterator[None]:
    """SQLite's reflection skips (with a warning) the expression indexes of
    migration 0013; these tests only look for the address index."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        yield


@pytest.fixture
def address_index_restored(session: Session) -> Iterator[None]:
    """The PostgreSQL test database is shared by the whole test session: make
    sure a test that dropped the unique address index left it in place."""
    yield
    session.rollback()
    with quiet_reflection():
        indexes = inspect(session.connection()).get_indexes("contacts")
    if ADDRESS_INDEX not in {index["name"] for index in indexes}:
        address_index().create(session.connection())
        session.commit()
        pytest.fail(f"{ADDRESS_INDEX} was dropped for good; it has been created again")


def store(session: Session, world: World) -> None:
    """Bulk-insert the world with its ids."""
    if world.people:
        session.execute(
            insert(Contact),
            [contact_row(n, person) for n, person in enumerate(world.people, start=1)],
        )
    if world.lists:
        session.execute(
            insert(TargetList),
            [
                {"id": n, "name": f"list {n}", "created_at": CREATED, "updated_at": CREATED}
                for n in range(1, len(world.lists) + 1)
            ],
        )
    memberships = [
        {"target_list_id": list_id, "contact_id": contact_id, "added_at": CREATED}
        for list_id, members in enumerate(world.lists, start=1)
        for contact_id in members
    ]
    if memberships:
        session.execute(insert(TargetListMember), memberships)


def assert_matches_model(session: Session, world: World) -> None:
    expected, expected_excluded = expected_audience(world)
    rows = session.execute(audience_select(world.targets, world.excluding)).all()
    contact_ids = [row.contact_id for row in rows]
    assert len(contact_ids) == len(set(contact_ids)), "a contact appears twice"
    assert {row.contact_id: AudienceCategory(row.category) for row in rows} == expected
    for row in rows:
        assert row.email == world.people[row.contact_id - 1].email

    counts = Counter(expected.values())
    assert resolve_audience(session, world.targets, world.excluding) == AudienceSummary(
        recipient=counts[C.RECIPIENT],
        opted_out=counts[C.OPTED_OUT],
        invalid_address=counts[C.INVALID_ADDRESS],
        no_address=counts[C.NO_ADDRESS],
        excluded=expected_excluded,
    )


# --- strategies -----------------------------------------------------------------


@st.composite
def people(draw: st.DrawFn, unique_addresses: bool) -> list[Person]:
    """A few dozen contacts: some without address (NULL or empty), some invalid,
    some opted out; addresses in random letter case."""
    count = draw(st.integers(0, 36))
    result = []
    empty_taken = False
    for n in range(count):
        # Unique mode: one mailbox per contact. Shared mode: a handful of
        # mailboxes, so the same address recurs in different cases.
        mailbox = n if unique_addresses else draw(st.integers(0, 5))
        kind = draw(st.sampled_from(["address"] * 6 + ["none", "empty"]))
        if kind == "empty" and unique_addresses and empty_taken:
            kind = "none"  # the unique index allows one empty address
        empty_taken |= kind == "empty"
        email = {"none": None, "empty": ""}.get(kind, f"user{mailbox}@example.com")
        if email:
            flips = draw(st.lists(st.booleans(), min_size=len(email), max_size=len(email)))
            email = "".join(
                ch.upper() if flip else ch for ch, flip in zip(email, flips, strict=True)
            )
        result.append(Person(email, invalid=draw(st.booleans()), opted_out=draw(st.booleans())))
    return result


@st.composite
def worlds(draw: st.DrawFn, unique_addresses: bool = True) -> World:
    population = draw(people(unique_addresses))
    list_count = draw(st.integers(3, 5))
    members = st.sets(st.integers(1, len(population)), max_size=30) if population else st.just(())
    lists = [frozenset(draw(members)) for _ in range(list_count)]
    list_ids = st.integers(1, list_count)
    return World(
        people=population,
        lists=lists,
        targets=frozenset(draw(st.sets(list_ids, max_size=3))),
        excluding=frozenset(draw(st.sets(list_ids, max_size=2))),
    )


hypothesis_settings = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@hypothesis_settings
@given(world=worlds(unique_addresses=True))
def test_audience_matches_the_set_model(session: Session, world: World) -> None:
    reset(session)
    store(session, world)
    assert_matches_model(session, world)


@pytest.mark.usefixtures("address_index_restored")
@hypothesis_settings
@given(world=worlds(unique_addresses=False))
def test_audience_matches_the_set_model_with_shared_addresses(
    session: Session, world: World
) -> None:
    reset(session, unique_addresses=False)
    store(session, world)
    assert_matches_model(session, world)


# --- one example per rule -----------------------------------------------------------


def example(
    session: Session,
    people: Sequence[Person],
    lists: Sequence[Collection[int]],
    targets: Collection[int],
    excluding: Collection[int] = (),
    unique_addresses: bool = True,
) -> tuple[dict[int, str], AudienceSummary]:
    """Store the example; return the audience (contact id → category) and its
    summary."""
    reset(session, unique_addresses)
    world = World(people, [frozenset(m) for m in lists], frozenset(targets), frozenset(excluding))
    store(session, world)
    rows = session.execute(audience_select(targets, excluding)).all()
    return {row.contact_id: row.category for row in rows}, resolve_audience(
        session, targets, excluding
    )


ANN = Person("ann@example.com")
BOB = Person("bob@example.com")
CY = Person("cy@example.com")


def test_members_of_several_target_lists_appear_once(session: Session) -> None:
    audience, summary = example(session, [ANN, BOB, CY], [{1, 2}, {2, 3}, {3}], targets=[1, 2])
    assert audience == {1: "recipient", 2: "recipient", 3: "recipient"}
    assert summary == AudienceSummary(recipient=3)


def test_no_target_list_means_nobody(session: Session) -> None:
    audience, summary = example(session, [ANN, BOB], [{1, 2}], targets=[], excluding=[1])
    assert audience == {}
    assert summary == AudienceSummary()


def test_exclusion_by_contact(session: Session) -> None:
    audience, summary = example(session, [ANN, BOB, CY], [{1, 2, 3}, {2}], [1], [2])
    assert audience == {1: "recipient", 3: "recipient"}
    assert summary == AudienceSummary(recipient=2, excluded=1)


def test_a_list_both_target_and_excluding_excludes_all_its_members(session: Session) -> None:
    audience, summary = example(session, [ANN, BOB, CY], [{1, 2}, {3}], [1, 2], [1])
    assert audience == {3: "recipient"}
    assert summary == AudienceSummary(recipient=1, excluded=2)


@pytest.mark.usefixtures("address_index_restored")
def test_exclusion_by_address_ignores_case(session: Session) -> None:
    # Two contacts share an address only without the unique index.
    people = [Person("Ann@Example.com"), Person("aNN@example.COM"), BOB]
    audience, summary = example(session, people, [{1, 3}, {2}], [1], [2], unique_addresses=False)
    assert audience == {3: "recipient"}
    assert summary == AudienceSummary(recipient=1, excluded=1)


@pytest.mark.usefixtures("address_index_restored")
def test_contacts_without_address_never_match_by_address(session: Session) -> None:
    # NULL = NULL is unknown and '' is no address: excluding one contact
    # without an address excludes no other one.
    people = [Person(None), Person(""), Person(None), Person(""), ANN]
    audience, summary = example(
        session, people, [{1, 2, 5}, {3, 4}], [1], [2], unique_addresses=False
    )
    assert audience == {1: "no_address", 2: "no_address", 5: "recipient"}
    assert summary == AudienceSummary(recipient=1, no_address=2)


def test_excluding_list_with_a_null_address_does_not_empty_the_audience(
    session: Session,
) -> None:
    # The NOT IN trap: NOT IN (… NULL …) would be unknown for every row.
    audience, _ = example(session, [ANN, BOB, Person(None)], [{1, 2}, {3}], [1], [2])
    assert audience == {1: "recipient", 2: "recipient"}


def test_category_precedence(session: Session) -> None:
    people = [
        Person(None, invalid=True, opted_out=True),
        Person("", invalid=True),
        Person("inv@example.com", invalid=True, opted_out=True),
        Person("out@example.com", opted_out=True),
        Person("ok@example.com"),
    ]
    audience, summary = example(session, people, [{1, 2, 3, 4, 5}], [1])
    assert audience == {
        1: "no_address",
        2: "no_address",
        3: "invalid_address",
        4: "opted_out",
        5: "recipient",
    }
    assert summary == AudienceSummary(recipient=1, opted_out=1, invalid_address=1, no_address=2)
    assert summary.audience == 5
    assert summary.members == 5


def test_skipped_contacts_can_still_be_excluded(session: Session) -> None:
    people = [Person("out@example.com", opted_out=True), Person(None)]
    audience, summary = example(session, people, [{1, 2}, {1, 2}], [1], [2])
    assert audience == {}
    assert summary == AudienceSummary(excluded=2)
    assert summary.members == 2


def test_unique_index_keeps_one_contact_per_address(session: Session) -> None:
    """Rule 6 rests on this index: a second contact with the same address in
    another case cannot exist."""
    reset(session)
    with pytest.raises(IntegrityError):
        store(
            session,
            World(
                [Person("Ann@example.com"), Person("ann@EXAMPLE.com")], [], frozenset(), frozenset()
            ),
        )
    session.rollback()
