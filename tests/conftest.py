"""Shared fixtures: an app per test with its own database, on SQLite and on
PostgreSQL.

PostgreSQL: one database is created and migrated per test session and
dropped at its end; each test starts with every table emptied.
SQLite: one migrated file per session, copied per test. Both use the real
Alembic migrations, so every service test also exercises them.

A missing service skips its tests with the reason, unless
``SLUICE_REQUIRE_SERVICES=1`` (CI), where it fails them instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session

from app import MIGRATIONS_DIR, app_settings, create_app
from app.clock import FixedClock
from app.extensions import db
from app.models import Contact
from app.services.contacts import ContactInput, save_contact
from app.services.runtime_settings import (
    RuntimeSettings,
    get_runtime_settings,
    seed_runtime_settings,
)
from config import load_settings
from tests.dovecot import DovecotServer, find_dovecot, start_dovecot

REQUIRE_SERVICES = os.environ.get("SLUICE_REQUIRE_SERVICES") == "1"
POSTGRES_ADMIN_URL = os.environ.get(
    "SLUICE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TEST_SECRET_KEY = "test-secret-key-not-for-production"


def service_missing(reason: str) -> None:
    """Skip locally; fail in CI, where every service must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing (SLUICE_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


def make_test_app(database_url: str, instance_path: Path, **overrides: Any) -> Flask:
    """A test app; ``overrides`` are boot settings (small import limits …)."""
    settings = load_settings(
        environ={},
        **{
            "database_url": database_url,
            "instance_path": str(instance_path),
            "secret_key": TEST_SECRET_KEY,
            "bounce_address": "bounces@bounce.example.com",
            "default_company_name": "Example Corp",
            "default_postal_address": "1 Example Street, Springfield",
            **overrides,
        },
    )
    return create_app(settings)


def migrate_database(database_url: str, instance_path: Path) -> None:
    app = make_test_app(database_url, instance_path)
    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
        db.engine.dispose()


def postgres_url(database: str) -> str:
    return make_url(POSTGRES_ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def run_postgres_admin(statement: str) -> None:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """Name of this session's migrated PostgreSQL database, or None when
    PostgreSQL is down. Dropped when the session ends."""
    name = f"sluice_test_{uuid.uuid4().hex[:12]}"
    try:
        run_postgres_admin(f'CREATE DATABASE "{name}"')
    except Exception:  # any connection failure means "missing"
        yield None
        return
    try:
        migrate_database(postgres_url(name), tmp_path_factory.mktemp("pg-template"))
        yield name
    finally:
        run_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sqlite-template")
    path = folder / "template.db"
    migrate_database(f"sqlite:///{path}", folder)
    return path


def _end_leaked_transactions(connection: Connection) -> None:
    """End the transactions an earlier test left open on this database.

    Every earlier test's app is gone by now, so a session still idle in a
    transaction is a leak (say, a streamed response a test never read to
    the end, its generator not yet collected); TRUNCATE would wait for it
    for ever and hang the whole run instead of failing one test."""
    if connection.dialect.name != "postgresql":
        return
    connection.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND state LIKE 'idle in transaction%'"
        )
    )


def empty_all_tables(database_url: str) -> None:
    """Give a test an empty database: creating one per test costs 0.4-1.7 s
    on PostgreSQL, emptying every table ~20 ms. Ids restart at 1."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            tables = [
                name for name in inspect(connection).get_table_names() if name != "alembic_version"
            ]
            if tables:
                _end_leaked_transactions(connection)
                quoted = ", ".join(connection.dialect.identifier_preparer.quote(t) for t in tables)
                connection.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


# For a test whose subject exists only on PostgreSQL (row locks, SKIP LOCKED):
# it runs there alone rather than skipping on SQLite, so CI shows no skips.
postgresql_only = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_template: str | None,
) -> str:
    """A migrated database holding no rows, for one test, on each backend in
    turn. Tests that change the schema itself use ``empty_database_url``."""
    if request.param == "sqlite":
        path = tmp_path / "sluice.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    if postgres_template is None:
        service_missing(f"PostgreSQL is not reachable at {make_url(POSTGRES_ADMIN_URL)!r}")
    url = postgres_url(str(postgres_template))
    empty_all_tables(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_template: str | None
) -> Iterator[str]:
    """A database of its own with no tables at all, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    if postgres_template is None:
        service_missing(f"PostgreSQL is not reachable at {make_url(POSTGRES_ADMIN_URL)!r}")
    name = f"sluice_m_{uuid.uuid4().hex[:12]}"
    run_postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url(name)
    finally:
        run_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def app_in_context(database_url: str, instance_path: Path) -> Iterator[Flask]:
    """Yield a test app inside its application context, then remove its
    session and close its engine's connections: the app fixtures' body."""
    app = make_test_app(database_url, instance_path)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    yield from app_in_context(database_url, tmp_path / "instance")


@pytest.fixture
def empty_app(empty_database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """An app on a database without any tables (``empty_database_url``)."""
    yield from app_in_context(empty_database_url, tmp_path / "instance")


@pytest.fixture
def session(app: Flask) -> Session:
    return db.session()


@pytest.fixture
def runtime(app: Flask, session: Session, clock: FixedClock) -> RuntimeSettings:
    """The runtime settings as ``sluice init`` seeds them (not committed)."""
    seed_runtime_settings(session, app_settings(app), clock)
    return get_runtime_settings(session)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))


def add_contact(session: Session, clock: FixedClock, email: str, **values: Any) -> Contact:
    """A contact saved through the service (flushed, not committed)."""
    return save_contact(session, ContactInput(email=email, **values), clock).contact


def _dovecot(**options: Any) -> Iterator[DovecotServer]:
    executable = find_dovecot()
    if executable is None:
        service_missing("dovecot is not installed (Debian package dovecot-imapd)")
        return
    server = start_dovecot(executable, **options)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """A real IMAP server (Dovecot) for the session, plain text on
    127.0.0.1; each test takes a user of its own (``new_user``)."""
    yield from _dovecot()


@pytest.fixture(scope="session")
def dovecot_tls() -> Iterator[DovecotServer]:
    """Dovecot with a self-signed certificate: STARTTLS and implicit TLS."""
    yield from _dovecot(tls=True)
