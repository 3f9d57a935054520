"""Set-based SQL building blocks shared by the services that write in bulk.

Bulk work is set-based (one statement per batch, never a Python loop over
rows), and it has to run the same on SQLite and PostgreSQL. Two pieces of
that need the session's SQL dialect, so they live here once instead of in
each service:

- ``insert_ignoring_conflicts``: ``INSERT … ON CONFLICT DO NOTHING``, so a
  row another writer inserted meanwhile (or one already there) is skipped
  instead of failing the whole statement;
- ``rows_as_table``: a batch of rows from Python as a table in SQL, sent as a
  fixed number of bound parameters, so every batch runs the same statement
  text whatever it holds (see its docstring for why that matters).

Only PostgreSQL and SQLite are supported; another dialect raises
``NotImplementedError``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Subquery,
    Text,
    bindparam,
    cast,
    func,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def insert_ignoring_conflicts(session: Session, entity: type[Any]) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING into ``entity``, in the session's SQL
    dialect.

    On SQLite an ``INSERT … SELECT`` needs a ``WHERE`` in its ``SELECT``
    before ``ON CONFLICT`` (``.where(true())`` will do), or the parser reads
    ``ON`` as a join's.
    """
    dialect = _dialect(session)
    if dialect == "postgresql":
        return postgresql.insert(entity).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(entity).on_conflict_do_nothing()
    raise NotImplementedError(f"bulk SQL supports PostgreSQL and SQLite, not {dialect}")


def upsert(
    session: Session,
    entity: type[Any],
    key: str,
    values: dict[str, Any],
    *,
    insert_only: Collection[str] = (),
) -> None:
    """INSERT ``values`` into ``entity``, or, where a row with the same
    ``key`` exists (also one a concurrent transaction just inserted), UPDATE
    it to ``values`` but for the ``insert_only`` columns: one statement, so
    two writers never both insert."""
    dialect = _dialect(session)
    if dialect == "postgresql":
        statement: Any = postgresql.insert(entity).values(values)
    elif dialect == "sqlite":
        statement = sqlite.insert(entity).values(values)
    else:
        raise NotImplementedError(f"bulk SQL supports PostgreSQL and SQLite, not {dialect}")
    changed = {
        column: statement.excluded[column]
        for column in values
        if column != key and column not in insert_only
    }
    session.execute(statement.on_conflict_do_update(index_elements=[key], set_=changed))


def rows_as_table(
    session: Session,
    name: str,
    columns: dict[str, TypeEngine[Any]],
    rows: Sequence[Sequence[Any]],
) -> tuple[Subquery, dict[str, Any]]:
    """A batch of rows as a table in SQL, sent as bound parameters.

    Returns the table (a subquery named ``name`` with ``columns``) and the
    parameters to execute the statement that uses it with. PostgreSQL gets
    one array per column (``unnest``), SQLite one JSON array of rows
    (``json_each``); a JSON column's values are JSON text. The SQL is the same
    whatever the batch holds. With one placeholder per value (a VALUES or IN
    list) every batch made a new large statement: psycopg spent most of a
    PostgreSQL import parsing them, and SQLite's statement cache (128
    statements) made memory grow with the file.

    A caller that runs the same statement very often builds it once with
    ``rows_table`` and passes ``rows_parameters`` each time: building and
    hashing a statement costs more than running a small one.
    """
    dialect = _dialect(session)
    return rows_table(dialect, name, columns), rows_parameters(dialect, name, columns, rows)


def rows_table(dialect: str, name: str, columns: dict[str, TypeEngine[Any]]) -> Subquery:
    """The table of ``rows_as_table`` for the SQL ``dialect``, without rows."""
    values: list[ColumnElement[Any]]
    if dialect == "postgresql":
        arrays = (
            func.unnest(
                *(
                    bindparam(f"{name}_{column}", type_=postgresql.ARRAY(_array_type(type_)))
                    for column, type_ in columns.items()
                )
            )
            .table_valued(*columns)
            .render_derived()
        )
        values = [
            cast(arrays.c[column], type_) if isinstance(type_, JSON) else arrays.c[column]
            for column, type_ in columns.items()
        ]
    elif dialect == "sqlite":
        entries = func.json_each(bindparam(name, type_=Text)).table_valued("value")
        values = [
            type_coerce(func.json_extract(entries.c.value, f"$[{index}]"), type_)
            for index, type_ in enumerate(columns.values())
        ]
    else:
        raise NotImplementedError(f"bulk SQL supports PostgreSQL and SQLite, not {dialect}")
    labelled = (value.label(column) for value, column in zip(values, columns, strict=True))
    return select(*labelled).subquery(name)


def rows_parameters(
    dialect: str, name: str, columns: dict[str, TypeEngine[Any]], rows: Sequence[Sequence[Any]]
) -> dict[str, Any]:
    """The bound parameters that fill ``rows_table(dialect, name, columns)``."""
    if dialect == "postgresql":
        return {f"{name}_{column}": [row[i] for row in rows] for i, column in enumerate(columns)}
    return {name: json.dumps(rows)}


def _array_type(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    # PostgreSQL has no json[] input worth using: JSON travels as text and is
    # cast back per row.
    return Text() if isinstance(type_, JSON) else type_
