"""What every benchmark shares: a throw-away database, a migrated app on it,
and the peak RSS figure.

``--database`` takes nothing (a fresh SQLite file in a temporary folder), a
SQLite URL of a file that does not exist yet, or a PostgreSQL URL of the
server (``postgresql`` alone means this machine's): a fresh database is
created on that server for the run and dropped afterwards, so a benchmark
never writes into an existing database.
"""

from __future__ import annotations

import resource
import secrets
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app import MIGRATIONS_DIR, create_app
from app.extensions import db
from config import load_settings

DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the admin URL's server, dropped afterwards."""
    name = f"sluice_bench_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    # Identifiers cannot be bound parameters; the name is ours (hex) and quoted.
    quoted = admin.dialect.identifier_preparer.quote(name)
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {quoted}"))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    finally:
        admin.dispose()


@contextmanager
def bench_database(database: str | None) -> Iterator[str]:
    """The URL of a database that exists only for this run (see module doc)."""
    if database == "postgresql":
        database = DEFAULT_POSTGRES_ADMIN_URL
    if database and make_url(database).get_backend_name() == "postgresql":
        with postgres_database(database) as url:
            yield url
        return
    if database:
        path = make_url(database).database
        if not path or Path(path).exists():
            raise SystemExit(f"give a SQLite file that does not exist yet, not {database!r}")
        yield database
        return
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'bench.db'}"


@contextmanager
def migrated_session(database_url: str) -> Iterator[Session]:
    """A session on ``database_url`` after running every migration."""
    with tempfile.TemporaryDirectory(prefix="sluice-bench-instance-") as instance:
        settings = load_settings(
            environ={},
            database_url=database_url,
            instance_path=instance,
            secret_key="bench-secret-key-not-for-production",
        )
        app = create_app(settings)
        with app.app_context():
            upgrade(directory=str(MIGRATIONS_DIR))
            try:
                yield db.session()
            finally:
                db.session.remove()
                db.engine.dispose()
