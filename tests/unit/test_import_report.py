"""The browser import's pure helpers: encoding detection and the field a
rejection reason names."""

from __future__ import annotations

import codecs

import pytest

from app.services.contact_csv import CsvLayout
from app.services.import_report import detect_encoding, reason_field, web_message

LAYOUT = CsvLayout(",", ("email", "first name", "Notes", ""), {}, ((2, "Notes"),), (3,), (), ())


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (b"email\na@example.com\n", "utf-8-sig"),
        (codecs.BOM_UTF8 + "email\nzoë@example.com\n".encode(), "utf-8-sig"),
        ("email\tname\nz@example.com\tZoë\n".encode("utf-16"), "utf-16"),
        (
            "email;name\nm@example.com;M\u00fcller \u2013 \u201cquoted\u201d\n".encode("cp1252"),
            "cp1252",
        ),
        (b"email\n\x81\x8d@example.com\n", "latin-1"),  # bytes cp1252 leaves undefined
    ],
)
def test_detect_encoding(data: bytes, encoding: str) -> None:
    assert detect_encoding(data) == encoding


@pytest.mark.parametrize(
    ("reason", "field"),
    [
        ("email 'x': An email address must have an @-sign.", "email"),
        ("first name: at most 200 characters", "first name"),
        ("Notes: at most 10,000 characters (got 10,001)", "Notes"),
        ("column 4 has a value but no header", "column 4"),
        ("column 'Notes' contains a NUL character", "Notes"),
        ("not valid UTF-8: byte 0xfc in column 'first name'; re-run with --encoding", "first name"),
        ("has 5 cells but the header has 4 columns", ""),
        ("emailed: something", ""),
    ],
)
def test_reason_field(reason: str, field: str) -> None:
    assert reason_field(reason, LAYOUT) == field


def test_web_message_drops_the_command_line_option() -> None:
    assert web_message("byte 0xfc; re-run with --encoding (for example cp1252)") == (
        "byte 0xfc; import the file again choosing its encoding (for example cp1252)"
    )
