"""CSV export of contacts, and the ``sluice contacts export``, ``opt-out``
and ``opt-in`` commands."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cli.contacts import contacts_group
from app.clock import FixedClock
from app.extensions import db
from app.models import Contact, TargetList, TargetListMember
from app.services.contact_export import EXPORT_COLUMNS, export_contacts
from app.services.contact_import import import_contacts
from app.services.contacts import set_opt_out
from tests.conftest import add_contact

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def add_to_list(session: Session, clock: FixedClock, name: str, *contacts: Contact) -> None:
    target_list = TargetList(name=name, created_at=clock.now(), updated_at=clock.now())
    session.add(target_list)
    session.flush()
    for contact in contacts:
        session.add(
            TargetListMember(
                target_list_id=target_list.id, contact_id=contact.id, added_at=clock.now()
            )
        )
    session.commit()


def exported(session: Session, list_name: str | None = None) -> list[dict[str, str]]:
    out = io.StringIO(newline="")
    count = export_contacts(session, out, list_name=list_name, batch_size=2)
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert count == len(rows)
    return rows


def import_bytes(session: Session, clock: FixedClock, data: bytes, **options: Any) -> Any:
    return import_contacts(
        session,
        io.BytesIO(data),
        list_name=options.pop("list_name", "Imported"),
        update=options.pop("update", False),
        default_type=None,
        clock=clock,
        own_addresses=frozenset(),
        on_rejected=lambda rejected: pytest.fail(f"unexpected reject: {rejected}"),
        **options,
    )


def test_exports_every_contact_with_fixed_and_custom_columns(
    session: Session, clock: FixedClock
) -> None:
    add_contact(
        session,
        clock,
        "ann@example.com",
        first_name="Ann",
        last_name="Lee",
        company="Acme",
        audience_type="lead",
        custom_fields={"city": "Paris"},
    )
    clock.advance(timedelta(minutes=5))
    add_contact(session, clock, "bob@example.com", custom_fields={"shoe": "42", "city": "Rome"})
    add_contact(session, clock, "carol@example.com")
    clock.advance(timedelta(minutes=5))
    set_opt_out(session, "bob@example.com", True, "unsubscribe link", clock)
    session.commit()

    out = io.StringIO(newline="")
    export_contacts(session, out)
    header, *lines = list(csv.reader(io.StringIO(out.getvalue(), newline="")))

    assert header == [*EXPORT_COLUMNS, "city", "shoe"]
    assert lines[0] == [
        "ann@example.com",
        "Ann",
        "Lee",
        "Acme",
        "lead",
        "valid",
        "false",
        "",
        "",
        "2026-03-02T09:00:00+00:00",
        "Paris",
        "",
    ]
    bob = dict(zip(header, lines[1], strict=True))
    assert (bob["opted_out"], bob["opted_out_at"], bob["opt_out_source"]) == (
        "true",
        "2026-03-02T09:10:00+00:00",
        "unsubscribe link",
    )
    assert (bob["city"], bob["shoe"], bob["created_at"]) == (
        "Rome",
        "42",
        "2026-03-02T09:05:00+00:00",
    )
    assert [line[0] for line in lines] == [
        "ann@example.com",
        "bob@example.com",
        "carol@example.com",
    ]


def test_exports_only_the_members_of_a_list(session: Session, clock: FixedClock) -> None:
    ann = add_contact(session, clock, "ann@example.com", custom_fields={"city": "Paris"})
    add_contact(session, clock, "bob@example.com", custom_fields={"shoe": "42"})
    carol = add_contact(session, clock, "carol@example.com")
    add_to_list(session, clock, "Customers", ann, carol)
    add_to_list(session, clock, "Empty")

    rows = exported(session, "Customers")

    assert [row["email"] for row in rows] == ["ann@example.com", "carol@example.com"]
    assert "shoe" not in rows[0]  # custom columns come from the exported contacts only
    assert rows[0]["city"] == "Paris"
    assert exported(session, "Empty") == []
    assert len(exported(session)) == 3


def test_an_unknown_list_is_an_error(session: Session) -> None:
    with pytest.raises(LookupError, match="no target list named 'Nope'"):
        export_contacts(session, io.StringIO(), list_name="Nope")


def test_erased_contacts_are_not_exported(session: Session, clock: FixedClock) -> None:
    add_contact(session, clock, "ann@example.com")
    session.add(
        Contact(email=None, email_lower=None, created_at=clock.now(), updated_at=clock.now())
    )
    session.commit()

    assert [row["email"] for row in exported(session)] == ["ann@example.com"]


def test_non_text_custom_values_are_written_as_json(session: Session, clock: FixedClock) -> None:
    add_contact(
        session, clock, "ann@example.com", custom_fields={"score": 7, "tags": ["a", "b"], "x": None}
    )
    session.commit()

    row = exported(session)[0]

    assert (row["score"], row["tags"], row["x"]) == ("7", '["a", "b"]', "")


def test_formula_cells_are_escaped_and_import_back_unchanged(
    session: Session, clock: FixedClock
) -> None:
    values = {"f1": "=cmd|' /C calc'!A0", "f2": "+1", "f3": "-2", "f4": "@x", "f5": "\t=1"}
    values |= {"f6": "\r=1", "f7": "'=already quoted", "f8": "plain = text"}
    add_contact(session, clock, "ann@example.com", first_name="=HYPERLINK(1)", custom_fields=values)
    session.commit()
    out = io.StringIO(newline="")
    export_contacts(session, out)

    row = next(csv.DictReader(io.StringIO(out.getvalue(), newline="")))

    assert row["first_name"] == "'=HYPERLINK(1)"
    assert [row[key] for key in values] == [
        "'=cmd|' /C calc'!A0",
        "'+1",
        "'-2",
        "'@x",
        "'\t=1",
        "'\r=1",
        "''=already quoted",  # one more quote, removed again by the import
        "plain = text",
    ]
    summary = import_bytes(session, clock, out.getvalue().encode(), update=True)
    assert (summary.unchanged, summary.updated, summary.ignored_columns) == (
        1,
        0,
        ("email_status", "opted_out", "opted_out_at", "opt_out_source", "created_at"),
    )
    session.expire_all()
    ann = session.scalars(select(Contact)).one()
    assert ann.first_name == "=HYPERLINK(1)"
    assert ann.custom_fields == values


def test_embedded_newlines_and_quotes_round_trip(session: Session, clock: FixedClock) -> None:
    notes = 'He said "hi",\r\nthen left;\nbye'
    data = (
        'email;company;notes\nann@example.com;"The ""Best"" Co";"'
        + notes.replace('"', '""')
        + '"\n'
    ).encode()
    import_bytes(session, clock, data)

    row = exported(session)[0]

    assert (row["company"], row["notes"]) == ('The "Best" Co', notes)


# ---------------------------------------------------------------- the commands


def invoke(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(contacts_group, list(args))


def fresh_session() -> Session:
    session = db.session()
    session.expire_all()
    return session


def test_cli_export_writes_csv_to_standard_output(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    ann = add_contact(session, clock, "ann@example.com", first_name="Zoë")
    add_contact(session, clock, "bob@example.com")
    add_to_list(session, clock, "Customers", ann)

    everyone = invoke(app, "export")
    customers = invoke(app, "export", "--list", "Customers")

    assert everyone.exit_code == 0, everyone.output
    assert everyone.stdout.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    assert len(everyone.stdout.splitlines()) == 3
    assert "Exported 2 contacts" in everyone.stderr
    assert customers.stdout.splitlines()[1].startswith("ann@example.com,Zoë,")
    assert len(customers.stdout.splitlines()) == 2


@sqlite_only
def test_cli_export_to_a_file(
    app: Flask, session: Session, clock: FixedClock, tmp_path: Path
) -> None:
    add_contact(session, clock, "ann@example.com", first_name="Zoë")
    session.commit()
    output = tmp_path / "out.csv"

    result = invoke(app, "export", "--output", str(output))

    assert result.exit_code == 0, result.output
    with output.open(encoding="utf-8-sig", newline="") as file:
        rows = list(csv.DictReader(file))
    assert output.read_bytes().startswith(b"\xef\xbb\xbf")  # spreadsheets read it as UTF-8
    assert [(row["email"], row["first_name"]) for row in rows] == [("ann@example.com", "Zoë")]


@sqlite_only
def test_cli_export_of_an_unknown_list_fails_without_creating_the_file(
    app: Flask, tmp_path: Path
) -> None:
    output = tmp_path / "out.csv"

    result = invoke(app, "export", "--list", "Nope", "--output", str(output))

    assert result.exit_code == 1
    assert "no target list named 'Nope'" in result.stderr
    assert not output.exists()


def test_cli_opt_out_and_opt_in(app: Flask, session: Session, clock: FixedClock) -> None:
    add_contact(session, clock, "Ann@Example.com")
    session.commit()

    opted_out = invoke(app, "opt-out", "ANN@example.com", "--source", "phone call")

    assert opted_out.exit_code == 0, opted_out.output
    assert "Ann@example.com is opted out of mass email since" in opted_out.stdout
    ann = fresh_session().scalars(select(Contact)).one()
    assert (ann.opted_out, ann.opt_out_source) == (True, "phone call")
    assert ann.opted_out_at is not None

    opted_in = invoke(app, "opt-in", "ann@example.com")

    assert opted_in.exit_code == 0, opted_in.output
    assert "Ann@example.com is opted in to mass email." in opted_in.stdout
    ann = fresh_session().scalars(select(Contact)).one()
    assert (ann.opted_out, ann.opted_out_at, ann.opt_out_source) == (False, None, "")


@sqlite_only
def test_cli_opt_out_source_defaults_to_cli(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    add_contact(session, clock, "ann@example.com")
    session.commit()

    assert invoke(app, "opt-out", "ann@example.com").exit_code == 0
    assert fresh_session().scalars(select(Contact)).one().opt_out_source == "cli"


@sqlite_only
@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("nobody@example.com", "no contact with address 'nobody@example.com'"),
        ("not an address", "'not an address' is not a valid address"),
    ],
)
def test_cli_opt_out_of_an_unknown_address_fails(app: Flask, address: str, message: str) -> None:
    for command in ("opt-out", "opt-in"):
        result = invoke(app, command, address)
        assert result.exit_code == 1
        assert message in result.stderr
