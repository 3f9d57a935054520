"""Engine set-up shared by the app and the benchmarks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session


def normalise_database_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (psycopg2 is not a dependency)."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def engine_options(url: str) -> dict[str, Any]:
    if make_url(url).get_backend_name() == "sqlite":
        # Waiting beats failing when the web process and the runner write at once.
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}


def configure_sqlite(engine: Engine) -> None:
    """Foreign keys are off by default in SQLite; WAL lets readers and one
    writer work at once."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


@contextmanager
def sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """Run schema changes on SQLite with foreign keys off, then check them.

    Alembic's batch mode changes a SQLite table by copying it and dropping the
    old one. With foreign keys on, that DROP applies the ON DELETE action of
    every row pointing at the table: SET NULL clears references and CASCADE
    deletes rows, silently (SQLite docs, "ALTER TABLE", the 12-step
    procedure). The pragma is a no-op inside a transaction, so it is set
    before one starts; afterwards ``foreign_key_check`` proves nothing was
    left dangling, and the pragma is restored for the pooled connection.
    Other databases pass through unchanged.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    connection.commit()
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        yield
        dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if dangling:
            raise RuntimeError(f"schema change left broken foreign keys: {dangling[:5]}")
    finally:
        connection.commit()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def begin_sqlite_write(session: Session) -> None:
    """Start the session's next transaction holding SQLite's write lock
    (``BEGIN IMMEDIATE``), so what it reads cannot change before it writes:
    SQLite has no row locks (SQLAlchemy leaves ``FOR UPDATE`` out there).
    The session must have no transaction under way.

    SQLAlchemy's recipe for SQLite transaction control: take BEGIN away from
    the pysqlite driver (isolation level AUTOCOMMIT, for this transaction's
    connection only; reset when it is released) and emit our own. The driver
    still commits and rolls back."""
    connection = session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    connection.exec_driver_sql("BEGIN IMMEDIATE")
