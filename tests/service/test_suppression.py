"""The suppression list: add once, remove with who and why (history kept),
search and list in pages, consulted by the queue build and at send time;
the ``sluice suppression`` commands, bad input included."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.cli import ScriptInfo
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.cli import build_cli
from app.clock import FixedClock
from app.models import (
    QueueItem,
    QueueItemStatus,
    Suppression,
    SuppressionReason,
    SuppressionRemoval,
)
from app.services import suppression
from app.services.addresses import InvalidAddress
from app.services.suppression import NotSuppressed, SuppressionError
from tests.service.sent_mail import start_mass_email

R = SuppressionReason


def test_an_address_is_suppressed_once_case_insensitively(
    session: Session, clock: FixedClock
) -> None:
    assert suppression.add(
        session, "Ann@Example.org", R.HARD_BOUNCE, "bounce of mass email 1", clock
    )
    clock.advance(timedelta(days=1))
    assert not suppression.add(session, " ann@EXAMPLE.org ", R.COMPLAINT, "webhook ses", clock)

    entry = suppression.find(session, "ANN@example.org")
    assert entry is not None
    # The first cause explains the suppression; a second add changes nothing.
    assert (entry.address, entry.reason, entry.source) == (
        "Ann@example.org",
        R.HARD_BOUNCE,
        "bounce of mass email 1",
    )
    assert entry.created_at == clock.now() - timedelta(days=1)
    assert suppression.is_suppressed(session, "ann@example.org")
    assert not suppression.is_suppressed(session, "bob@example.org")
    assert session.scalar(select(func.count()).select_from(Suppression)) == 1


def test_removal_records_who_why_and_when_and_the_address_can_come_back(
    session: Session, clock: FixedClock
) -> None:
    suppression.add(session, "ann@example.org", R.SOFT_THRESHOLD, "3 soft bounces", clock)
    clock.advance(timedelta(days=3))

    lifted = suppression.remove(
        session, "ANN@example.org", by="Maria", why="mailbox fixed, she called", clock=clock
    )
    clock.advance(timedelta(days=3))
    suppression.add(session, "ann@example.org", R.HARD_BOUNCE, "bounce of mass email 7", clock)

    assert lifted.reason == R.SOFT_THRESHOLD
    [removal] = suppression.removals(session, "ann@example.org")
    assert (removal.removed_by, removal.why, removal.reason, removal.source) == (
        "Maria",
        "mailbox fixed, she called",
        R.SOFT_THRESHOLD,
        "3 soft bounces",
    )
    assert removal.removed_at == clock.now() - timedelta(days=3)
    assert removal.suppressed_at == clock.now() - timedelta(days=6)
    entry = suppression.find(session, "ann@example.org")
    assert entry is not None and entry.reason == R.HARD_BOUNCE


def test_removing_an_address_that_is_not_suppressed_is_refused(
    session: Session, clock: FixedClock
) -> None:
    with pytest.raises(NotSuppressed, match=r"bob@example\.org is not suppressed"):
        suppression.remove(session, "bob@example.org", by="Maria", why="test", clock=clock)
    suppression.add(session, "ann@example.org", R.MANUAL, "Maria", clock)
    with pytest.raises(SuppressionError, match="why: must not be empty"):
        suppression.remove(session, "ann@example.org", by="Maria", why="  ", clock=clock)
    with pytest.raises(SuppressionError, match="who: must not be empty"):
        suppression.remove(session, "ann@example.org", by="", why="fixed", clock=clock)
    assert suppression.is_suppressed(session, "ann@example.org")
    assert session.scalar(select(func.count()).select_from(SuppressionRemoval)) == 0


@pytest.mark.parametrize(
    "address",
    ["", "not an address", "a@b@example.org", "x" * 400 + "@example.org", "ann@exa\x00mple.org"],
)
def test_a_bad_address_is_refused_and_nothing_is_written(
    session: Session, clock: FixedClock, address: str
) -> None:
    with pytest.raises(InvalidAddress):
        suppression.add(session, address, R.MANUAL, "Maria", clock)
    assert session.scalar(select(func.count()).select_from(Suppression)) == 0
    assert not suppression.is_suppressed(session, address)


def many(session: Session, clock: FixedClock, count: int) -> None:
    """``count`` suppressions in one INSERT (test set-up)."""
    session.execute(
        insert(Suppression),
        [
            {
                "address": f"user{n:05d}@{'example.org' if n % 2 else 'example.net'}",
                "address_lower": f"user{n:05d}@{'example.org' if n % 2 else 'example.net'}",
                "domain": "example.org" if n % 2 else "example.net",
                "reason": R.HARD_BOUNCE,
                "source": "bulk",
                "created_at": clock.now(),
            }
            for n in range(count)
        ],
    )


def test_search_by_prefix_domain_and_substring_in_keyset_pages(
    session: Session, clock: FixedClock
) -> None:
    many(session, clock, 3000)

    first = suppression.search(session, "USER012", limit=4)
    second = suppression.search(session, "user012", limit=4, after=first.next_after)
    domain = suppression.search(session, "@example.net", limit=1000)
    inside = suppression.search(session, "299@", contains=True)

    assert [e.address for e in first.entries] == [
        "user01200@example.net",
        "user01201@example.org",
        "user01202@example.net",
        "user01203@example.org",
    ]
    assert second.entries[0].address.startswith("user01204@")
    assert len(domain.entries) == 1000 and domain.next_after is not None
    assert all(e.address.endswith("@example.net") for e in domain.entries)
    assert [e.address for e in inside.entries] == [
        "user00299@example.org",
        "user01299@example.org",
        "user02299@example.org",
    ]
    assert inside.next_after is None
    # A prefix with LIKE's wildcards is matched literally.
    assert suppression.search(session, "user%").entries == []
    assert suppression.search(session, "user_").entries == []


def test_listing_pages_through_everything_once(session: Session, clock: FixedClock) -> None:
    many(session, clock, 230)
    suppression.add(session, "ann@example.org", R.COMPLAINT, "webhook ses", clock)

    seen: list[str] = []
    after = None
    while True:
        page = suppression.listing(session, after=after, limit=100)
        seen += [entry.address for entry in page.entries]
        if page.next_after is None:
            break
        after = page.next_after
    complaints = suppression.listing(session, reason=R.COMPLAINT)

    assert len(seen) == len(set(seen)) == 231 and seen == sorted(seen)
    assert [e.address for e in complaints.entries] == ["ann@example.org"]


@pytest.mark.parametrize(
    ("query", "limit", "message"),
    [("", 10, "the query is empty"), ("x" * 321, 10, "at most 320"), ("ann", 0, "page size")],
)
def test_a_bad_search_says_what_is_wrong(
    session: Session, query: str, limit: int, message: str
) -> None:
    with pytest.raises(SuppressionError, match=message):
        suppression.search(session, query, limit=limit)


def test_the_queue_build_drops_suppressed_recipients(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    suppression.add(session, "BOB@example.org", R.COMPLAINT, "webhook ses", clock)
    session.commit()

    mass_email = start_mass_email(
        session, app, clock, "March", ["ann@example.org", "bob@example.org"]
    )

    rows = session.execute(
        select(QueueItem.email, QueueItem.status, QueueItem.skip_reason)
        .where(QueueItem.mass_email_id == mass_email.id)
        .order_by(QueueItem.id)
    ).all()
    assert [tuple(row) for row in rows] == [
        ("ann@example.org", QueueItemStatus.QUEUED, ""),
        ("bob@example.org", QueueItemStatus.DROPPED, "suppressed address"),
    ]


# ----------------------------------------------------------------- the commands


def run(app: Flask, *arguments: str) -> Result:
    return CliRunner().invoke(build_cli(), list(arguments), obj=ScriptInfo(create_app=lambda: app))


def test_the_commands_add_list_search_and_remove(app: Flask, session: Session) -> None:
    added = run(app, "suppression", "add", "Ann@Example.org", "--source", "Maria")
    again = run(app, "suppression", "add", "ann@example.org")
    listed = run(app, "suppression", "list")
    found = run(app, "suppression", "search", "@example.org")
    removed = run(
        app, "suppression", "remove", "ann@example.org", "--by", "Maria", "--why", "fixed"
    )
    after = run(app, "suppression", "list")

    assert added.exit_code == 0, added.output
    assert "Ann@example.org is suppressed (manual, source: Maria)" in added.output
    assert again.exit_code == 0 and "already suppressed" in again.output
    assert "Ann@example.org\tmanual\t" in listed.output and "\tMaria" in listed.output
    assert "Ann@example.org" in found.output
    assert removed.exit_code == 0 and "no longer suppressed (was: manual" in removed.output
    assert "No suppressed addresses." in after.output
    [removal] = session.scalars(select(SuppressionRemoval)).all()
    assert (removal.removed_by, removal.why) == ("Maria", "fixed")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("add", "not an address"), "'not an address' is not a valid address"),
        (("add", "x" * 100_000 + "@example.org"), "is not a valid address: the address is longer"),
        (
            ("remove", "bob@example.org", "--by", "M", "--why", "w"),
            "bob@example.org is not suppressed",
        ),
        (("remove", "bob@example.org", "--by", "M"), "Missing option '--why'"),
        (("remove", "nope", "--by", "M", "--why", "w"), "'nope' is not a valid address"),
        (("search", " "), "the query is empty"),
        (("list", "--limit", "0"), "Invalid value for '--limit'"),
        (("list", "--reason", "opted_out"), "Invalid value for '--reason'"),
    ],
)
def test_the_commands_refuse_bad_input_clearly(
    app: Flask, session: Session, arguments: tuple[str, ...], message: str
) -> None:
    result = run(app, "suppression", *arguments)

    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert session.scalar(select(func.count()).select_from(Suppression)) == 0


@pytest.mark.parametrize(
    "address",
    [
        "Ann.Lee+news@Example.ORG",
        "o'brien@example.co.uk",
        "x_y-z@sub.example.com",
        '"quoted name"@example.org',
        "ÄNN@example.de",
        "ann@BÜCHER.example",
        "not an address",
        "a..b@example.org",
        "ann@localhost",
    ],
)
def test_the_send_time_lookup_matches_whatever_is_on_the_list(
    session: Session, clock: FixedClock, address: str
) -> None:
    """The dispatcher's lookup skips validation for plain ASCII addresses:
    it must still find exactly the addresses ``add`` put on the list."""
    try:
        suppression.add(session, address, SuppressionReason.MANUAL, "test", clock)
        on_list = True
    except InvalidAddress:
        on_list = False
    session.commit()
    for spelling in {address, address.lower(), address.upper()}:
        found = suppression.suppressed_among(session, [spelling])
        assert found == ({spelling.lower()} if on_list else set())
