"""Sluice: the application factory. No work happens at import time."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from app.database import configure_sqlite, engine_options, normalise_database_url
from app.extensions import db, migrate
from app.services.dkim_keys import DkimKey, load_dkim_key
from config import Settings, ensure_secret_key, load_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
TEMPLATES_DIR = PROJECT_ROOT / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None) -> Flask:
    """Build a Flask app from ``settings`` (default: environment + config file)."""
    settings = settings or load_settings()
    instance_path = Path(settings.instance_path).resolve()
    instance_path.mkdir(parents=True, exist_ok=True)

    app = Flask(
        __name__,
        instance_path=str(instance_path),
        template_folder=str(TEMPLATES_DIR),
        static_folder=str(STATIC_DIR),
        static_url_path="/static",
    )
    database_url = normalise_database_url(settings.database_url_or_default())
    app.config.update(
        SECRET_KEY=ensure_secret_key(settings),
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_url),
        SLUICE_SETTINGS=settings,
        # Parsed at start-up so a bad key stops Sluice, not the first send.
        SLUICE_DKIM_KEY=load_dkim_key(settings),
    )

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)
    with app.app_context():
        configure_sqlite(db.engine)

    from app.web import init_web

    init_web(app, secure_cookies=settings.secure_cookies())
    return app


def app_settings(app: Flask) -> Settings:
    settings = app.config["SLUICE_SETTINGS"]
    assert isinstance(settings, Settings)
    return settings


def app_dkim_key(app: Flask) -> DkimKey | None:
    key = app.config["SLUICE_DKIM_KEY"]
    assert key is None or isinstance(key, DkimKey)
    return key
