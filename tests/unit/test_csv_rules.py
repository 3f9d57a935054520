"""The pure CSV rules: formula escaping, delimiter detection, row positions."""

from __future__ import annotations

import pytest

from app.services.contact_csv import RowPosition, detect_delimiter
from app.services.contact_export import escape_formula, unescape_formula


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+33 1 23", "'+33 1 23"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=1", "a=1"),
        ("'=1", "''=1"),  # a value that starts with "'=" keeps it after a round trip
        ("'", "'"),
        ("", ""),
        ("plain", "plain"),
    ],
)
def test_escape_formula(cell: str, written: str) -> None:
    assert escape_formula(cell) == written
    assert unescape_formula(written) == cell


@pytest.mark.parametrize(
    ("cell", "read"),
    [("'", "'"), ("'x", "'x"), ("it's", "it's"), ("'=1", "=1"), ("''+1", "'+1")],
)
def test_unescape_drops_one_quote_before_a_formula_character(cell: str, read: str) -> None:
    assert unescape_formula(cell) == read


@pytest.mark.parametrize(
    ("line", "delimiter"),
    [
        ("email,first name\r\n", ","),
        ("email;first name;company\n", ";"),
        ("email\tname\n", "\t"),
        ('"last, first";email;notes\n', ";"),  # a comma inside quotes does not count
        ("email\n", ","),
        ("email;name,with,commas;x;y\n", ";"),
    ],
)
def test_detect_delimiter(line: str, delimiter: str) -> None:
    assert detect_delimiter(line) == delimiter


def test_row_position_names_the_line_only_when_it_differs() -> None:
    assert str(RowPosition(row=3, first_line=3, last_line=3)) == "row 3"
    assert str(RowPosition(row=3, first_line=4, last_line=4)) == "row 3 (line 4)"
    assert str(RowPosition(row=3, first_line=3, last_line=5)) == "row 3 (lines 3-5)"
