"""Alembic batch mode rebuilds a SQLite table by dropping the old copy; with
foreign keys on, that drop applies every ON DELETE action pointing at it.
``sqlite_foreign_keys_off`` (used by migrations/env.py) prevents that."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
)

from app.database import configure_sqlite, sqlite_foreign_keys_off

metadata = MetaData()
parent = Table("parent", metadata, Column("id", Integer, primary_key=True))
child = Table(
    "child",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", ForeignKey("parent.id", ondelete="SET NULL")),
)
grandchild = Table(
    "grandchild",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", ForeignKey("parent.id", ondelete="CASCADE")),
)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'schema.db'}")
    configure_sqlite(engine)  # foreign keys on, as in the app
    with engine.begin() as connection:
        metadata.create_all(connection)
        connection.execute(insert(parent), [{"id": 1}])
        connection.execute(insert(child), [{"id": 10, "parent_id": 1}])
        connection.execute(insert(grandchild), [{"id": 20, "parent_id": 1}])
    return engine


def rebuild_parent(connection: Connection) -> None:
    context = MigrationContext.configure(connection, opts={"render_as_batch": True})
    with Operations(context).batch_alter_table("parent", recreate="always") as batch:
        batch.add_column(Column("note", String(20), nullable=False, server_default=""))
    connection.commit()


def surviving_rows(connection: Connection) -> tuple[list[object], list[object]]:
    return (
        list(connection.scalars(select(child.c.parent_id))),
        list(connection.scalars(select(grandchild.c.id))),
    )


def test_the_hazard_is_real_without_the_guard(engine: Engine) -> None:
    with engine.connect() as connection:
        rebuild_parent(connection)
        assert surviving_rows(connection) == ([None], [])


def test_the_guard_keeps_every_reference(engine: Engine) -> None:
    with engine.connect() as connection:
        with sqlite_foreign_keys_off(connection):
            rebuild_parent(connection)
        assert surviving_rows(connection) == ([1], [20])
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_the_guard_refuses_to_leave_dangling_references(engine: Engine) -> None:
    with engine.connect() as connection:
        with (
            pytest.raises(RuntimeError, match="broken foreign keys"),
            sqlite_foreign_keys_off(connection),
        ):
            connection.exec_driver_sql("DELETE FROM parent")
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
