"""CSV import of contacts: the service on SQLite and PostgreSQL, and the
``sluice contacts import`` command."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from app.cli.contacts import contacts_group
from app.clock import FixedClock
from app.models import Contact, TargetList, TargetListMember
from app.models.imports import ContactImport, ContactImportAddress
from app.services.addresses import own_sending_addresses
from app.services.contact_csv import MAX_LINE_CHARS, ImportFileError, RejectedRow, RowWarning
from app.services.contact_import import ImportSummary, import_contacts
from app.services.contacts import ContactError, ContactInput, save_contact
from tests.conftest import add_contact

BOM = b"\xef\xbb\xbf"

# Reading and checking the file does not depend on the database: those tests
# run on SQLite only, to keep the suite fast. Everything that writes contacts
# runs on both.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class Outcome:
    summary: ImportSummary
    rejected: list[RejectedRow] = field(default_factory=list)
    warnings: list[RowWarning] = field(default_factory=list)
    progress: list[int] = field(default_factory=list)

    @property
    def reasons(self) -> dict[int, str]:
        return {rejected.position.row: rejected.reason for rejected in self.rejected}


def run_import(session: Session, clock: FixedClock, data: bytes, **options: Any) -> Outcome:
    outcome = Outcome(ImportSummary(list_name=""))
    settings: dict[str, Any] = {
        "list_name": "Newsletter",
        "update": False,
        "default_type": None,
        "own_addresses": frozenset(),
        **options,
    }
    outcome.summary = import_contacts(
        session,
        io.BytesIO(data),
        clock=clock,
        on_rejected=outcome.rejected.append,
        on_warning=outcome.warnings.append,
        on_progress=outcome.progress.append,
        **settings,
    )
    summary = outcome.summary
    # Every data row lands in exactly one bucket.
    assert summary.rows == (
        summary.created + summary.updated + summary.unchanged + summary.merged + summary.rejected
    )
    assert summary.rejected == len(outcome.rejected)
    assert summary.warnings == len(outcome.warnings)
    return outcome


def contacts(session: Session) -> dict[str, Contact]:
    session.expire_all()
    return {contact.email or "": contact for contact in session.scalars(select(Contact))}


def members(session: Session, list_name: str = "Newsletter") -> set[str]:
    rows = session.scalars(
        select(Contact.email)
        .join(TargetListMember, TargetListMember.contact_id == Contact.id)
        .join(TargetList, TargetList.id == TargetListMember.target_list_id)
        .where(TargetList.name == list_name)
    )
    return {email or "" for email in rows}


def counts(summary: ImportSummary) -> dict[str, int]:
    return {
        name: getattr(summary, name)
        for name in ("rows", "created", "updated", "unchanged", "merged", "rejected", "warnings")
    }


def existing(session: Session, clock: FixedClock, email: str, **values: Any) -> Contact:
    contact = add_contact(session, clock, email, **values)
    session.commit()
    return contact


# ---------------------------------------------------------------- happy paths


@sqlite_only
@pytest.mark.parametrize(
    ("delimiter", "bom"),
    [(";", True), (";", False), (",", True), (",", False), ("\t", False)],
    ids=["semicolon-bom", "semicolon", "comma-bom", "comma", "tab"],
)
def test_imports_any_delimiter_with_or_without_bom(
    session: Session, clock: FixedClock, delimiter: str, bom: bool
) -> None:
    text = (
        delimiter.join(["email", "first name", "last name", "company", "type"])
        + "\r\n"
        + delimiter.join(["ann@example.com", "Ann", "Lee", "Acme, Inc.", "lead"])
        + "\r\n"
        + delimiter.join(["bob@example.org", "Bøb", "Ørsted", "", ""])
        + "\r\n"
    )
    if delimiter != ",":  # the comma in the company is only a delimiter in a comma file
        data = text.encode()
    else:
        data = text.replace("Acme, Inc.", '"Acme, Inc."').encode()

    outcome = run_import(session, clock, (BOM if bom else b"") + data)

    assert counts(outcome.summary) == {
        "rows": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "merged": 0,
        "rejected": 0,
        "warnings": 0,
    }
    stored = contacts(session)
    ann, bob = stored["ann@example.com"], stored["bob@example.org"]
    assert (ann.first_name, ann.last_name, ann.company, ann.audience_type) == (
        "Ann",
        "Lee",
        "Acme, Inc.",
        "lead",
    )
    assert (bob.first_name, bob.last_name, bob.audience_type) == ("Bøb", "Ørsted", "contact")
    assert ann.custom_fields == {}
    assert ann.created_at == clock.now()
    assert members(session) == {"ann@example.com", "bob@example.org"}
    target_list = session.scalars(select(TargetList)).one()
    assert (target_list.name, target_list.created_at) == ("Newsletter", clock.now())
    assert outcome.progress[-1] == len(data) + (3 if bom else 0)


@sqlite_only
def test_headers_map_case_insensitively_with_synonyms(session: Session, clock: FixedClock) -> None:
    data = (
        b"  E-Mail Address ,Given Name,SURNAME,Organisation,Audience_Type,Phone,Favourite Colour\n"
        b"ann@example.com,Ann,Lee,Acme,Client,+1 555 0100,teal\n"
    )

    run_import(session, clock, data)

    ann = contacts(session)["ann@example.com"]
    assert (ann.first_name, ann.last_name, ann.company, ann.audience_type) == (
        "Ann",
        "Lee",
        "Acme",
        "client",
    )
    # Custom-field keys as written (trimmed), values exactly as written.
    assert ann.custom_fields == {"Phone": "+1 555 0100", "Favourite Colour": "teal"}


@sqlite_only
@pytest.mark.parametrize(
    "header",
    ["mail", "Email", "e_mail", "EMAIL ADDRESS"],
)
def test_email_synonyms(session: Session, clock: FixedClock, header: str) -> None:
    run_import(session, clock, f"{header},firstname,lastname\nann@example.com,Ann,Lee\n".encode())
    ann = contacts(session)["ann@example.com"]
    assert (ann.first_name, ann.last_name) == ("Ann", "Lee")


def test_empty_custom_cells_are_not_stored(session: Session, clock: FixedClock) -> None:
    data = b"email,city,notes\nann@example.com,Paris,\nbob@example.com, ,hello\n"

    run_import(session, clock, data)

    stored = contacts(session)
    assert stored["ann@example.com"].custom_fields == {"city": "Paris"}
    assert stored["bob@example.com"].custom_fields == {"notes": "hello"}


def test_import_is_recorded_and_its_address_log_cleared(
    session: Session, clock: FixedClock
) -> None:
    data = b"email\nann@example.com\nann@example.com\nnot-an-address\n"

    outcome = run_import(session, clock, data, source_name="people.csv")

    record = session.get(ContactImport, outcome.summary.import_id)
    assert record is not None
    assert (record.file_name, record.list_name, record.finished_at) == (
        "people.csv",
        "Newsletter",
        clock.now(),
    )
    assert (record.rows_total, record.rows_created, record.rows_merged, record.rows_rejected) == (
        3,
        1,
        1,
        1,
    )
    assert session.scalar(select(func.count()).select_from(ContactImportAddress)) == 0


def test_adds_to_an_existing_list(session: Session, clock: FixedClock) -> None:
    run_import(session, clock, b"email\nann@example.com\n")
    clock.advance(timedelta(days=1))
    run_import(session, clock, b"email\nbob@example.com\n")

    assert members(session) == {"ann@example.com", "bob@example.com"}
    assert session.scalar(select(func.count()).select_from(TargetList)) == 1


# ---------------------------------------------------------------- existing contacts


def test_without_update_existing_contacts_stay_as_they_are_but_join_the_list(
    session: Session, clock: FixedClock
) -> None:
    before = existing(session, clock, "ann@example.com", first_name="Ann", company="Acme")
    clock.advance(timedelta(hours=1))

    outcome = run_import(session, clock, b"email,first name,company\nANN@example.com,Anna,Beta\n")

    assert (outcome.summary.unchanged, outcome.summary.updated) == (1, 0)
    ann = contacts(session)["ann@example.com"]
    assert (ann.first_name, ann.company, ann.updated_at) == ("Ann", "Acme", before.created_at)
    assert members(session) == {"ann@example.com"}


def test_update_overwrites_non_empty_cells_and_merges_custom_fields(
    session: Session, clock: FixedClock
) -> None:
    created_at = clock.now()
    existing(
        session,
        clock,
        "ann@example.com",
        first_name="Ann",
        last_name="Lee",
        company="Acme",
        audience_type="lead",
        custom_fields={"city": "Paris", "size": "M"},
    )
    existing(session, clock, "bob@example.com", first_name="Bob", custom_fields={"city": "Rome"})
    clock.advance(timedelta(hours=1))
    data = (
        b"email,first name,last name,company,type,city,shoe\n"
        b"ann@example.com,Anna,,Beta,,Lyon,42\n"  # changes
        b"bob@example.com,Bob,,,,Rome,\n"  # same values: unchanged
    )

    outcome = run_import(session, clock, data, update=True)

    assert (outcome.summary.updated, outcome.summary.unchanged) == (1, 1)
    stored = contacts(session)
    ann, bob = stored["ann@example.com"], stored["bob@example.com"]
    assert (ann.first_name, ann.last_name, ann.company, ann.audience_type) == (
        "Anna",
        "Lee",  # empty cell: kept
        "Beta",
        "lead",  # no type in the row and no --type: kept
    )
    assert ann.custom_fields == {"city": "Lyon", "size": "M", "shoe": "42"}
    assert ann.updated_at == clock.now()
    assert bob.updated_at == created_at
    assert members(session) == {"ann@example.com", "bob@example.com"}


def test_type_option_fills_rows_without_a_type(session: Session, clock: FixedClock) -> None:
    existing(session, clock, "old@example.com", audience_type="contact")
    data = b"email,type\nann@example.com,\nbob@example.com,Client\nold@example.com,\n"

    run_import(session, clock, data, default_type="Lead", update=True)

    stored = contacts(session)
    assert stored["ann@example.com"].audience_type == "lead"
    assert stored["bob@example.com"].audience_type == "client"  # the row's own type wins
    assert stored["old@example.com"].audience_type == "lead"  # --update: filled in too


@sqlite_only
def test_invalid_type_rejects_the_row(session: Session, clock: FixedClock) -> None:
    outcome = run_import(session, clock, b"email,type\nann@example.com,vip!\nbob@example.com,vip\n")

    assert outcome.reasons == {2: "type: only letters, digits, spaces, '-' and '_' are allowed"}
    assert set(contacts(session)) == {"bob@example.com"}


@sqlite_only
def test_invalid_default_type_is_refused_before_anything_is_written(
    session: Session, clock: FixedClock
) -> None:
    with pytest.raises(ContactError, match="type"):
        run_import(session, clock, b"email\nann@example.com\n", default_type="no/slash")
    assert contacts(session) == {}


# ---------------------------------------------------------------- duplicates in the file


@pytest.mark.parametrize("batch_size", [1, 2, 1000])
def test_duplicates_in_the_file_merge_whatever_the_batch_size(
    session: Session, clock: FixedClock, batch_size: int
) -> None:
    existing(session, clock, "old@example.com", first_name="Old", company="Keep")
    data = (
        b"email,first name,company,city,type\n"
        b"ann@example.com,Ann,,Paris,\n"  # row 2: created
        b"old@example.com,New,Other,,\n"  # row 3: unchanged (exists, no --update)
        b"bob@example.com,Bob,Acme,,\n"  # row 4: created
        b"ANN@example.com,,Acme,,lead\n"  # row 5: merged onto row 2
        b"old@example.com,Newer,,,\n"  # row 6: merged, but old is not being updated
        b"ann@EXAMPLE.com,Annie,,,\n"  # row 7: merged again
    )

    outcome = run_import(session, clock, data, batch_size=batch_size, default_type="client")

    assert counts(outcome.summary) == {
        "rows": 6,
        "created": 2,
        "updated": 0,
        "unchanged": 1,
        "merged": 3,
        "rejected": 0,
        "warnings": 0,
    }
    stored = contacts(session)
    assert len(stored) == 3
    ann = stored["ann@example.com"]  # the stored form comes from the first row
    assert (ann.first_name, ann.company, ann.audience_type) == ("Annie", "Acme", "lead")
    assert ann.custom_fields == {"city": "Paris"}
    old = stored["old@example.com"]
    assert (old.first_name, old.company) == ("Old", "Keep")
    assert members(session) == {"ann@example.com", "bob@example.com", "old@example.com"}


def test_duplicates_of_an_updated_contact_merge_with_update(
    session: Session, clock: FixedClock
) -> None:
    existing(session, clock, "old@example.com", first_name="Old", custom_fields={"a": "1"})
    data = b"email,first name,a,b\nold@example.com,,,x\nold@example.com,New,2,\n"

    outcome = run_import(session, clock, data, update=True, batch_size=1)

    assert (outcome.summary.updated, outcome.summary.merged) == (1, 1)
    old = contacts(session)["old@example.com"]
    assert (old.first_name, old.custom_fields) == ("New", {"a": "2", "b": "x"})


def test_a_later_type_default_does_not_override_an_earlier_rows_type(
    session: Session, clock: FixedClock
) -> None:
    data = b"email,type\nann@example.com,agent\nann@example.com,\n"
    run_import(session, clock, data, default_type="lead", batch_size=1)
    assert contacts(session)["ann@example.com"].audience_type == "agent"


# ---------------------------------------------------------------- rejected rows and warnings


@sqlite_only
def test_invalid_addresses_are_rejected_with_their_row_numbers(
    session: Session, clock: FixedClock
) -> None:
    data = (
        b"email,first name,notes\n"
        b"ann@example.com,Ann,\n"  # row 2
        b"no-at-sign.example.com,X,\n"  # row 3
        b',Empty,"two\nlines"\n'  # row 4, lines 4-5
        b"bob@@example.com,Y,\n"  # row 5, line 6
        b"carol@example.com,Carol,\n"  # row 6, line 7
    )

    outcome = run_import(session, clock, data)

    assert [str(rejected.position) for rejected in outcome.rejected] == [
        "row 3",
        "row 4 (lines 4-5)",
        "row 5 (line 6)",
    ]
    assert outcome.reasons[3].startswith("email 'no-at-sign.example.com': ")
    assert outcome.reasons[4] == "email: the address is empty"
    assert outcome.rejected[0].cells == ("no-at-sign.example.com", "X", "")
    assert set(contacts(session)) == {"ann@example.com", "carol@example.com"}
    assert outcome.summary.rows == 5


@sqlite_only
def test_typo_and_own_address_warnings_do_not_reject(session: Session, clock: FixedClock) -> None:
    own = own_sending_addresses(session, "Bounces@Bounce.Example.com")
    data = b"email\nbob@gmial.com\nbounces@bounce.example.com\nann@gmail.com\n"

    outcome = run_import(session, clock, data, own_addresses=own)

    assert [(w.position.row, w.email, w.message) for w in outcome.warnings] == [
        (2, "bob@gmial.com", "did you mean bob@gmail.com?"),
        (3, "bounces@bounce.example.com", "this is one of the company's own sending addresses"),
    ]
    assert outcome.summary.created == 3


@sqlite_only
def test_row_problems_are_rejected_and_the_rest_imported(
    session: Session, clock: FixedClock
) -> None:
    long_name = "N" * 201
    data = (
        "email,first name,company,notes\n"
        "a@example.com,A,,\n"  # 2 ok
        "b@example.com,B,,,surplus\n"  # 3 one cell too many
        "c@example.com,C,,,\n"  # 4 an empty surplus cell holds nothing: ok
        "d@example.com\n"  # 5 fewer cells: padded, ok
        f"e@example.com,{long_name},,\n"  # 6 name too long
        f"f@example.com,F,{long_name},\n"  # 7 company too long
        "g@example.com,G\x00,,\n"  # 8 NUL
        f"h@example.com,H,,{'x' * 10_001}\n"  # 9 custom value too long
        f"i@example.com,I,,{'x' * 10_000}\n"  # 10 at the limit: ok
    ).encode()

    outcome = run_import(session, clock, data)

    assert outcome.reasons == {
        3: "has 5 cells but the header has 4 columns",
        6: "first name: at most 200 characters",
        7: "company: at most 200 characters",
        8: "column 'first name' contains a NUL character",
        9: "notes: at most 10,000 characters (got 10,001)",
    }
    assert set(contacts(session)) == {
        "a@example.com",
        "c@example.com",
        "d@example.com",
        "i@example.com",
    }
    assert contacts(session)["i@example.com"].custom_fields == {"notes": "x" * 10_000}


@sqlite_only
def test_a_value_under_a_column_without_header_is_rejected(
    session: Session, clock: FixedClock
) -> None:
    # A trailing delimiter in the header (spreadsheet exports) is harmless…
    data = b"email;first name;\nann@example.com;Ann;\nbob@example.com;Bob;stray\n"

    outcome = run_import(session, clock, data)

    # … but a value there has nowhere to go, so it is not dropped silently.
    assert outcome.reasons == {3: "column 3 has a value but no header"}
    assert set(contacts(session)) == {"ann@example.com"}


@sqlite_only
def test_blank_lines_are_skipped_and_rows_numbered_like_a_spreadsheet(
    session: Session, clock: FixedClock
) -> None:
    data = b"\nemail,name x\n\nann@example.com,1\n,\n   \nbad,2\n"

    outcome = run_import(session, clock, data)

    assert outcome.summary.blank_rows == 3
    assert outcome.summary.rows == 2
    assert outcome.reasons == {7: "email 'bad': An email address must have an @-sign."}


# ---------------------------------------------------------------- malformed files


@sqlite_only
def test_a_row_with_undecodable_bytes_is_rejected_the_others_imported(
    session: Session, clock: FixedClock
) -> None:
    data = (
        b"email,first name\n"
        b"ann@example.com,Ann\n"
        b"jose@example.com,Jos\xe9\n"  # latin-1 in a UTF-8 file
        b"zoe@example.com,Zo\xc3\xab\n"
    )

    outcome = run_import(session, clock, data)

    assert outcome.reasons == {
        3: "not valid UTF-8: byte 0xe9 in column 'first name'; "
        "re-run with --encoding (for example cp1252 or latin-1)"
    }
    stored = contacts(session)
    assert set(stored) == {"ann@example.com", "zoe@example.com"}
    assert stored["zoe@example.com"].first_name == "Zoë"
    # The rejected cells keep the original byte, for the rejected-rows file.
    assert outcome.rejected[0].cells[1].encode("utf-8", "surrogateescape") == b"Jos\xe9"


@sqlite_only
def test_encoding_option_reads_a_cp1252_file(session: Session, clock: FixedClock) -> None:
    data = "email;first name;notes\njose@example.com;José;“quoted” €5\n".encode("cp1252")

    outcome = run_import(session, clock, data, encoding="cp1252")

    assert outcome.rejected == []
    jose = contacts(session)["jose@example.com"]
    assert (jose.first_name, jose.custom_fields) == ("José", {"notes": "“quoted” €5"})


@sqlite_only
def test_an_undecodable_header_is_a_file_error(session: Session, clock: FixedClock) -> None:
    with pytest.raises(ImportFileError, match="header row is not valid UTF-8"):
        run_import(session, clock, "email,prénom\n".encode("latin-1"))


@sqlite_only
def test_a_utf16_file_is_a_file_error(session: Session, clock: FixedClock) -> None:
    with pytest.raises(ImportFileError):
        run_import(session, clock, "email\r\nann@example.com\r\n".encode("utf-16"))
    assert contacts(session) == {}


@sqlite_only
def test_missing_email_column_imports_nothing(session: Session, clock: FixedClock) -> None:
    data = b"name;company\nAnn;Acme\n"

    with pytest.raises(ImportFileError, match="no email column") as error:
        run_import(session, clock, data)

    assert "'name', 'company'" in str(error.value)
    assert contacts(session) == {}
    assert session.scalar(select(func.count()).select_from(TargetList)) == 0
    assert session.scalar(select(func.count()).select_from(ContactImport)) == 0


@sqlite_only
@pytest.mark.parametrize("data", [b"", BOM, b"\r\n\n  \n"], ids=["empty", "bom-only", "blank"])
def test_an_empty_file_imports_nothing(session: Session, clock: FixedClock, data: bytes) -> None:
    with pytest.raises(ImportFileError, match="the file is empty"):
        run_import(session, clock, data)
    assert session.scalar(select(func.count()).select_from(TargetList)) == 0


@sqlite_only
def test_a_header_without_rows_imports_nothing_but_is_fine(
    session: Session, clock: FixedClock
) -> None:
    outcome = run_import(session, clock, b"email,first name\n")
    assert outcome.summary.rows == 0
    assert members(session) == set()


@sqlite_only
@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("email,e-mail", "columns 1 ('email') and 2 ('e-mail') both hold email"),
        ("email,Notes,notes ", "columns 2 ('Notes') and 3 ('notes') both hold custom field"),
        ("email,First Name,firstname", "both hold first name"),
    ],
)
def test_duplicate_headers_are_a_file_error(
    session: Session, clock: FixedClock, header: str, message: str
) -> None:
    with pytest.raises(ImportFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_import(session, clock, f"{header}\nann@example.com,a,b\n".encode())
    assert contacts(session) == {}


@sqlite_only
def test_a_10_mb_cell_rejects_its_row_and_the_next_rows_import(
    session: Session, clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "big.csv"
    with path.open("wb") as file:
        file.write(b"email,notes\nann@example.com,short\nbig@example.com,")
        file.write(b"x" * (10 * 1024 * 1024))
        file.write(b'\nbob@example.com,after\ncarol@example.com,"quoted\nafter"\n')

    outcome = run_import(session, clock, path.read_bytes())

    assert outcome.reasons == {
        3: "a cell is longer than 131,072 characters (the rest of its line was skipped)"
    }
    assert csv.field_size_limit() == 131_072  # the import did not raise the global limit
    stored = contacts(session)
    assert set(stored) == {"ann@example.com", "bob@example.com", "carol@example.com"}
    assert stored["carol@example.com"].custom_fields == {"notes": "quoted\nafter"}
    assert str(outcome.rejected[0].position) == "row 3"


@sqlite_only
def test_a_line_longer_than_the_limit_is_rejected_without_reading_it_whole(
    session: Session, clock: FixedClock
) -> None:
    data = b"email\nann@example.com\n" + b"y" * (MAX_LINE_CHARS + 10) + b"\nbob@example.com\n"

    outcome = run_import(session, clock, data)

    assert outcome.reasons == {3: f"a line is longer than {MAX_LINE_CHARS:,} characters"}
    assert set(contacts(session)) == {"ann@example.com", "bob@example.com"}


def test_embedded_newlines_and_quotes_are_kept(session: Session, clock: FixedClock) -> None:
    data = (
        b"email,company,notes\r\n"
        b'ann@example.com,"The ""Best"" Co",'
        b'"line one\r\nline two, with comma\nand ""quotes"""\r\n'
    )

    run_import(session, clock, data)

    ann = contacts(session)["ann@example.com"]
    assert ann.company == 'The "Best" Co'
    assert ann.custom_fields == {"notes": 'line one\r\nline two, with comma\nand "quotes"'}


def test_formula_cells_are_stored_exactly_as_text(session: Session, clock: FixedClock) -> None:
    formulas = ["=cmd|' /C calc'!A0", "+1+1", "-2", "@SUM(A1)", "\t=1", '=HYPERLINK("x")']
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "first name", *[f"f{i}" for i in range(len(formulas))]])
    writer.writerow(["ann@example.com", "=1+2", *formulas])

    run_import(session, clock, buffer.getvalue().encode())

    ann = contacts(session)["ann@example.com"]
    assert ann.first_name == "=1+2"
    assert ann.custom_fields == {f"f{i}": value for i, value in enumerate(formulas)}


def test_a_writer_that_creates_the_same_address_meanwhile_does_not_break_the_import(
    session: Session, clock: FixedClock
) -> None:
    """Another process inserts ann@ between the batch's look-up and its insert."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    inserted = False

    def concurrent_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal inserted
        if inserted or not statement.lstrip().upper().startswith("INSERT INTO CONTACTS"):
            return
        inserted = True
        with Session(engine) as other:
            save_contact(other, ContactInput(email="ann@example.com", first_name="Theirs"), clock)
            other.commit()

    event.listen(engine, "before_cursor_execute", concurrent_insert)
    try:
        outcome = run_import(
            session, clock, b"email,first name\nann@example.com,Ours\nbob@example.com,Bob\n"
        )
    finally:
        event.remove(engine, "before_cursor_execute", concurrent_insert)

    assert inserted
    assert (outcome.summary.created, outcome.summary.unchanged) == (1, 1)
    stored = contacts(session)
    assert stored["ann@example.com"].first_name == "Theirs"
    assert members(session) == {"ann@example.com", "bob@example.com"}


# ---------------------------------------------------------------- the command


def invoke(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(contacts_group, list(args))


def test_cli_import_writes_rejected_rows_beside_the_input(app: Flask, tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_bytes(
        b"email;first name;notes\n"
        b"ann@example.com;Ann;=cmd|' /C calc'!A0\n"
        b"not-an-address;X;=evil()\n"
        b'bob@gmial.com;Bob;"two\nlines"\n'
        b"jose@example.com;Jos\xe9;\n"
        b"ann@example.com;;more\n"
    )

    result = invoke(app, "import", str(source), "--list", "Customers", "--type", "lead")

    assert result.exit_code == 0, result.output
    assert (
        "5 rows: 2 created, 0 updated, 0 unchanged, 1 merged, 2 rejected; 1 warning."
        in result.stdout
    )
    assert "row 3: email 'not-an-address': " in result.stderr
    assert "row 4 (lines 4-5): warning: bob@gmial.com: did you mean bob@gmail.com?" in (
        result.stderr
    )
    assert "row 5 (line 6): not valid UTF-8: byte 0xe9" in result.stderr
    rejected_file = tmp_path / "people.rejected.csv"
    raw = rejected_file.read_bytes()
    assert raw.startswith(BOM)
    assert b"Jos\xe9" in raw  # the undecodable byte is written back as it came
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig", "replace")), delimiter=";"))
    assert rows[0] == ["sluice_row", "sluice_reason", "email", "first name", "notes"]
    assert [row[0] for row in rows[1:]] == ["3", "5"]
    assert rows[1][2:] == ["not-an-address", "X", "'=evil()"]  # escaped for spreadsheets
    assert members(app_session(app), "Customers") == {"ann@example.com", "bob@gmial.com"}


def app_session(app: Flask) -> Session:
    from app.extensions import db

    session = db.session()
    session.expire_all()
    return session


@sqlite_only
def test_cli_a_corrected_rejected_file_imports_as_it_is(app: Flask, tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_bytes(b"email,first name\nann@example,Ann\nbob@example.com,Bob\n")
    assert invoke(app, "import", str(source), "--list", "L").exit_code == 0
    rejected_file = tmp_path / "people.rejected.csv"
    text = rejected_file.read_text(encoding="utf-8-sig")
    rejected_file.write_text(text.replace("ann@example,", "ann@example.com,"), encoding="utf-8")

    result = invoke(app, "import", str(rejected_file), "--list", "L")

    assert result.exit_code == 0, result.output
    assert "1 row: 1 created" in result.stdout
    ann = contacts(app_session(app))["ann@example.com"]
    assert (ann.first_name, ann.custom_fields) == ("Ann", {})  # sluice_* columns skipped


@sqlite_only
def test_cli_removes_a_stale_rejected_file_when_nothing_is_rejected(
    app: Flask, tmp_path: Path
) -> None:
    source = tmp_path / "people.csv"
    source.write_bytes(b"email\nbad\n")
    invoke(app, "import", str(source), "--list", "L")
    assert (tmp_path / "people.rejected.csv").exists()
    source.write_bytes(b"email\ngood@example.com\n")

    result = invoke(app, "import", str(source), "--list", "L")

    assert result.exit_code == 0
    assert not (tmp_path / "people.rejected.csv").exists()
    assert "Removed" in result.stdout


@sqlite_only
def test_cli_file_error_exits_non_zero_with_the_message(app: Flask, tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_bytes(b"name\nAnn\n")

    result = invoke(app, "import", str(source), "--list", "L")

    assert result.exit_code == 1
    assert "no email column" in result.stderr
    assert "nothing was imported" in result.stderr
    assert not (tmp_path / "people.rejected.csv").exists()


@sqlite_only
def test_cli_caps_terminal_output_but_writes_every_rejected_row(app: Flask, tmp_path: Path) -> None:
    source = tmp_path / "many.csv"
    source.write_text("email\n" + "bad\n" * 150 + "ok@example.com\n")

    result = invoke(app, "import", str(source), "--list", "L")

    assert result.exit_code == 0
    assert result.stderr.count("email 'bad'") == 100
    assert f"… and 50 more rejected rows, see {tmp_path / 'many.rejected.csv'}" in result.stderr
    with (tmp_path / "many.rejected.csv").open(encoding="utf-8-sig", newline="") as file:
        assert len(list(csv.reader(file))) == 1 + 150


@sqlite_only
def test_cli_refuses_bad_options(app: Flask, tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_bytes(b"email\nann@example.com\n")

    bad_type = invoke(app, "import", str(source), "--list", "L", "--type", "a/b")
    bad_encoding = invoke(app, "import", str(source), "--list", "L", "--encoding", "nope")

    assert bad_type.exit_code == 2 and "--type" in bad_type.stderr
    assert bad_encoding.exit_code == 2 and "unknown encoding" in bad_encoding.stderr
    assert contacts(app_session(app)) == {}
