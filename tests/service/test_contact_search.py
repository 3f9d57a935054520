"""The contacts page's services: search, keyset pages, the activity log, a
list from a campaign log, list pages and deletion, contact edit and delete,
recent suppression removals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import (
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    EmailStatus,
    SuppressionReason,
    TargetList,
    TargetListMember,
)
from app.services import suppression
from app.services.contact_search import (
    ContactSearch,
    SearchError,
    activity_page,
    contact_lists,
    contacts_page,
    matching_ids,
)
from app.services.contacts import ContactError, change_opt_out, delete_contact, edit_contact
from app.services.target_lists import (
    TargetListError,
    add_members,
    create_target_list,
    delete_target_list,
    list_from_campaign_log,
    list_overview,
    log_sources,
    member_count,
    members_page,
)
from tests.conftest import add_contact
from tests.service.test_queue_build import make_mass_email, make_scene


@pytest.fixture
def people(session: Session, clock: FixedClock) -> dict[str, Contact]:
    """Six contacts, created in this order (ids ascending)."""
    rows = [
        ("ann.smith@example.com", "Ann", "Smith", "Acme Ltd"),
        ("bob@example.org", "Bob", "Smithers", "acme ltd"),
        ("carla@beispiel.de", "Carla", "Jones", "Beta GmbH"),
        ("dan@example.com", "Dan", "Annan", "Gamma"),
        ("EVE@Example.NET", "Eve", "O'Brien", "100% Pure_Ltd"),
        ("zed@example.com", "", "", ""),
    ]
    people = {}
    for email, first, last, company in rows:
        people[first.lower() or "zed"] = add_contact(
            session, clock, email, first_name=first, last_name=last, company=company
        )
    return people


def found(session: Session, text: str = "", **filters: object) -> list[str]:
    page = contacts_page(session, ContactSearch(text, **filters))  # type: ignore[arg-type]
    return [row.email or "" for row in page.contacts]


def test_search_matches_the_start_of_address_names_and_company_ignoring_case(
    session: Session, people: dict[str, Contact]
) -> None:
    assert found(session, "ANN") == ["dan@example.com", "ann.smith@example.com"]  # Annan, Ann
    assert found(session, "smith") == ["bob@example.org", "ann.smith@example.com"]
    assert found(session, "acme") == ["bob@example.org", "ann.smith@example.com"]
    assert found(session, "eve@example.n") == ["EVE@example.net"]
    assert found(session, "beispiel") == []  # the middle of an address is not a start
    assert found(session, "ann smi") == ["ann.smith@example.com"]
    assert found(session, "  ann   smi ") == ["ann.smith@example.com"]


def test_like_wildcards_and_quotes_are_plain_characters(
    session: Session, people: dict[str, Contact]
) -> None:
    assert found(session, "%") == []
    assert found(session, "_") == []
    assert found(session, "100%") == ["EVE@example.net"]
    assert found(session, "100% pure_") == ["EVE@example.net"]
    assert found(session, "o'b") == ["EVE@example.net"]


def test_filters_combine_with_the_text(
    session: Session, clock: FixedClock, people: dict[str, Contact]
) -> None:
    people["bob"].email_status = EmailStatus.INVALID
    change_opt_out(session, people["ann"], True, "test", clock)
    friends = create_target_list(session, "Friends", "", clock)
    add_members(session, friends, [people["ann"].id, people["carla"].id], clock)

    assert found(session, status=EmailStatus.INVALID) == ["bob@example.org"]
    assert found(session, "smith", status=EmailStatus.VALID) == ["ann.smith@example.com"]
    assert found(session, opted_out=True) == ["ann.smith@example.com"]
    assert found(session, list_id=friends.id) == ["carla@beispiel.de", "ann.smith@example.com"]
    assert found(session, list_id=friends.id, opted_out=False) == ["carla@beispiel.de"]
    assert contact_lists(session, people["ann"].id) == [(friends.id, "Friends")]


def test_pages_go_older_and_newer_by_keyset(session: Session, people: dict[str, Contact]) -> None:
    everyone = ContactSearch()
    first = contacts_page(session, everyone, limit=4)
    assert [row.id for row in first.contacts] == [
        people[n].id for n in ("zed", "eve", "dan", "carla")
    ]
    assert first.newer is None
    assert first.older == people["carla"].id

    second = contacts_page(session, everyone, before=first.older, limit=4)
    assert [row.id for row in second.contacts] == [people["bob"].id, people["ann"].id]
    assert second.older is None
    assert second.newer == people["bob"].id

    back = contacts_page(session, everyone, after=second.newer, limit=4)
    assert [row.id for row in back.contacts] == [row.id for row in first.contacts]
    assert back.newer is None  # nothing newer than the newest page
    middle = contacts_page(session, everyone, after=people["ann"].id, limit=2)
    assert [row.id for row in middle.contacts] == [people["carla"].id, people["bob"].id]
    assert middle.newer == people["carla"].id
    assert middle.older == people["bob"].id


def test_a_bad_search_is_refused(session: Session) -> None:
    with pytest.raises(SearchError, match="at most 200"):
        ContactSearch("x" * 201)
    with pytest.raises(SearchError, match="NUL"):
        ContactSearch("a\x00b")
    with pytest.raises(SearchError, match="page size"):
        contacts_page(session, ContactSearch(), limit=0)


def test_matching_ids_populate_a_list_in_one_statement(
    session: Session, clock: FixedClock, people: dict[str, Contact]
) -> None:
    target = create_target_list(session, "Acme", "", clock)
    added = add_members(session, target, matching_ids(session, ContactSearch("acme")), clock)
    assert added == 2
    assert member_count(session, target) == 2


def log(
    session: Session,
    contact: Contact | None,
    event: CampaignLogEvent,
    when: object,
    mass_email_id: int | None = None,
) -> CampaignLogEntry:
    entry = CampaignLogEntry(
        contact_id=contact.id if contact else None,
        mass_email_id=mass_email_id,
        event=event,
        occurred_at=when,
        detail={"url": "https://example.com/<b>"},
    )
    session.add(entry)
    session.flush()
    return entry


def test_the_activity_log_is_newest_first_in_keyset_pages(
    session: Session, clock: FixedClock, people: dict[str, Contact]
) -> None:
    ann, now = people["ann"], clock.now()
    sent = log(session, ann, CampaignLogEvent.SENT, now)
    opened = log(session, ann, CampaignLogEvent.OPENED, now + timedelta(hours=1))
    clicked = log(session, ann, CampaignLogEvent.CLICKED, now + timedelta(hours=1))  # same time
    bounced = log(session, ann, CampaignLogEvent.BOUNCED_SOFT, now + timedelta(minutes=5))
    log(session, people["bob"], CampaignLogEvent.SENT, now)  # someone else's

    first = activity_page(session, ann.id, limit=2)
    assert [e.id for e in first.entries] == [clicked.id, opened.id]
    assert first.older == opened.id
    second = activity_page(session, ann.id, before=first.older, limit=2)
    assert [e.id for e in second.entries] == [bounced.id, sent.id]
    assert second.older is None
    assert second.entries[0].event == CampaignLogEvent.BOUNCED_SOFT
    assert second.entries[0].detail == {"url": "https://example.com/<b>"}


def test_a_list_from_the_campaign_log_holds_the_contacts_with_the_events(
    session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    mass_email = make_mass_email(session, scene, clock)
    other = make_mass_email(session, scene, clock, "Other")
    ann, bob, cid, dee = (scene.contacts[name] for name in ("ann", "bob", "cid", "dee"))
    now = clock.now()
    for contact, event in [
        (ann, CampaignLogEvent.CLICKED),
        (ann, CampaignLogEvent.CLICKED),  # twice: still one member
        (bob, CampaignLogEvent.OPENED),
        (cid, CampaignLogEvent.BOUNCED_HARD),
        (None, CampaignLogEvent.CLICKED),  # a deleted contact's row
    ]:
        log(session, contact, event, now, mass_email.id)
    log(session, dee, CampaignLogEvent.CLICKED, now, other.id)  # another mass email

    clickers, added = list_from_campaign_log(
        session,
        "Clickers",
        mass_email_id=mass_email.id,
        events=[CampaignLogEvent.CLICKED],
        clock=clock,
    )
    assert added == 1
    assert member_ids(session, clickers) == {ann.id}
    engaged, added = list_from_campaign_log(
        session,
        "Engaged",
        mass_email_id=mass_email.id,
        events=[CampaignLogEvent.CLICKED, CampaignLogEvent.OPENED],
        clock=clock,
    )
    assert (added, member_ids(session, engaged)) == (2, {ann.id, bob.id})


def member_ids(session: Session, target_list: TargetList) -> set[int]:
    return set(
        session.scalars(
            select(TargetListMember.contact_id).where(
                TargetListMember.target_list_id == target_list.id
            )
        )
    )


def test_a_list_from_the_log_refuses_bad_input_and_creates_nothing(
    session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    mass_email = make_mass_email(session, scene, clock)
    lists_before = session.scalar(select(func.count()).select_from(TargetList))
    with pytest.raises(TargetListError, match="events: choose at least one"):
        list_from_campaign_log(session, "X", mass_email_id=mass_email.id, events=[], clock=clock)
    with pytest.raises(TargetListError, match="no mass email 999"):
        list_from_campaign_log(
            session, "X", mass_email_id=999, events=[CampaignLogEvent.SENT], clock=clock
        )
    with pytest.raises(TargetListError, match="already exists"):
        list_from_campaign_log(
            session,
            "Customers",
            mass_email_id=mass_email.id,
            events=[CampaignLogEvent.SENT],
            clock=clock,
        )
    assert session.scalar(select(func.count()).select_from(TargetList)) == lists_before


def test_log_sources_are_the_mass_emails_that_left_draft(
    session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    draft = make_mass_email(session, scene, clock, "Draft")
    built = make_mass_email(session, scene, clock, "Built")
    built.queue_built_at = clock.now()
    session.flush()
    assert [(s.mass_email_id, s.label) for s in log_sources(session)] == [
        (built.id, "Built: Built")
    ]
    assert draft.id not in {s.mass_email_id for s in log_sources(session)}


def test_a_list_a_campaign_uses_cannot_be_deleted(session: Session, clock: FixedClock) -> None:
    scene = make_scene(session, clock)
    make_mass_email(session, scene, clock, "Spring")
    with pytest.raises(TargetListError, match="used by campaign\\(s\\) 'Spring'"):
        delete_target_list(session, scene.customers)
    with pytest.raises(TargetListError, match="Spring"):
        delete_target_list(session, scene.blocked)  # an excluding list too

    spare = create_target_list(session, "Spare", "", clock)
    add_members(session, spare, [scene.contacts["ann"].id], clock)
    delete_target_list(session, spare)
    assert session.get(TargetList, spare.id) is None
    assert session.get(Contact, scene.contacts["ann"].id) is not None


def test_member_pages_go_by_contact_id_newest_first(
    session: Session, clock: FixedClock, people: dict[str, Contact]
) -> None:
    target = create_target_list(session, "All", "", clock)
    add_members(session, target, [c.id for c in people.values()], clock)
    first = members_page(session, target, limit=4)
    second = members_page(session, target, before=first.older, limit=4)
    ids = [m.contact_id for m in first.members + second.members]
    assert ids == sorted((c.id for c in people.values()), reverse=True)
    assert second.older is None
    assert member_count(session, target) == 6
    assert member_count(session, target, cap=4) == 5  # "more than 4"
    assert member_count(session, target, cap=6) == 6


def test_edit_contact_cleans_the_fields_and_changes_nothing_on_error(
    session: Session, clock: FixedClock, people: dict[str, Contact]
) -> None:
    ann = people["ann"]
    changed = edit_contact(
        session,
        ann,
        first_name=" Anna\n",
        last_name="Smith",
        company="Acme",
        audience_type="Lead",
        clock=clock,
    )
    assert changed
    assert (ann.first_name, ann.company, ann.audience_type) == ("Anna", "Acme", "lead")
    with pytest.raises(ContactError, match="last name: at most 200"):
        edit_contact(
            session,
            ann,
            first_name="Changed",
            last_name="x" * 201,
            company="",
            audience_type="",
            clock=clock,
        )
    assert ann.first_name == "Anna"
    assert not edit_contact(
        session,
        ann,
        first_name="Anna",
        last_name="Smith",
        company="Acme",
        audience_type="lead",
        clock=clock,
    )


def test_deleting_a_contact_keeps_its_log_rows_without_it(
    session: Session, clock: FixedClock, people: dict[str, Contact]
) -> None:
    ann = people["ann"]
    target = create_target_list(session, "Friends", "", clock)
    add_members(session, target, [ann.id], clock)
    entry = log(session, ann, CampaignLogEvent.SENT, clock.now())
    session.commit()

    delete_contact(session, ann)
    session.commit()
    session.expire_all()

    assert session.get(Contact, ann.id) is None
    assert member_count(session, target) == 0
    assert session.get(CampaignLogEntry, entry.id).contact_id is None  # type: ignore[union-attr]


def test_recent_removals_are_newest_first(session: Session, clock: FixedClock) -> None:
    for address in ("a@example.com", "b@example.com"):
        suppression.add(session, address, SuppressionReason.MANUAL, "test", clock)
    suppression.remove(session, "a@example.com", by="me", why="fixed", clock=clock)
    suppression.remove(session, "b@example.com", by="you", why="also fixed", clock=clock)
    assert [(r.address, r.removed_by) for r in suppression.recent_removals(session)] == [
        ("b@example.com", "you"),
        ("a@example.com", "me"),
    ]


def test_the_overview_counts_members_up_to_the_cap(
    session: Session, clock: FixedClock, people: dict[str, Contact]
) -> None:
    big = create_target_list(session, "Big", "", clock)
    small = create_target_list(session, "Small", "<b>", clock)
    create_target_list(session, "Empty", "", clock)
    add_members(session, big, [c.id for c in people.values()], clock)
    add_members(session, small, [people["ann"].id, people["bob"].id], clock)

    overview = [(s.name, s.member_count, s.id) for s in list_overview(session, count_cap=3)]
    assert overview == [("Big", 4, big.id), ("Empty", 0, overview[1][2]), ("Small", 2, small.id)]
    assert [s.member_count for s in list_overview(session)] == [6, 0, 2]


def test_under_a_collation_other_than_byte_order_the_search_adds_an_exact_test(
    session: Session, people: dict[str, Contact], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.services import contact_search

    monkeypatch.setattr(contact_search, "_byte_ordered", lambda _session: False)
    condition = str(ContactSearch("acme").where_clause(session))
    assert "substr" in condition
    assert found(session, "acme") == ["bob@example.org", "ann.smith@example.com"]
    assert found(session, "ann smi") == ["ann.smith@example.com"]
    monkeypatch.undo()
    assert "substr" not in str(ContactSearch("acme").where_clause(session))  # SQLite, C.UTF-8
