"""Helpers for tests of the web UI through Flask's test client: users,
logging in, and forms posted with their CSRF token as a browser would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash
from werkzeug.test import TestResponse

from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.extensions import db
from app.models import Role, User
from app.services.runtime_settings import RuntimeSettings
from tests.conftest import make_test_app

PASSWORD = "correct horse battery staple"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"|name="csrf-token" content="([^"]+)"')


def add_user(
    app: Flask,
    email: str,
    role: Role = Role.ADMIN,
    password: str = PASSWORD,
    *,
    active: bool = True,
    clock: FixedClock | None = None,
) -> int:
    """A user stored and committed; returns its id."""
    with app.app_context():
        user = User(
            email=email,
            email_lower=email.lower(),
            password_hash=generate_password_hash(password),
            role=role,
            active=active,
            created_at=(clock.now() if clock else _epoch()),
        )
        db.session.add(user)
        db.session.commit()
        return user.id


def _epoch() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 1, 1, tzinfo=UTC)


def token_in(page: str) -> str:
    match = _TOKEN.search(page)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


def csrf_token(client: FlaskClient, page: str = "/login") -> str:
    """The session's CSRF token, read from a page as a browser would."""
    return token_in(client.get(page).get_data(as_text=True))


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> TestResponse:
    token = csrf_token(client, "/login")
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def logged_in(app: Flask, email: str, role: Role = Role.ADMIN) -> FlaskClient:
    """A client logged in as a new user with ``role``."""
    add_user(app, email, role)
    client = app.test_client()
    response = login(client, email)
    assert response.status_code == 302, response.get_data(as_text=True)
    # The session's token, read once: reading a page later would show (and
    # so consume) the flash messages a test wants to see.
    client.sluice_csrf_token = csrf_token(client, "/account")  # type: ignore[attr-defined]
    return client


def post_form(client: FlaskClient, url: str, data: dict[str, Any] | None = None) -> TestResponse:
    """POST ``data`` with the CSRF token of the client's session."""
    token = getattr(client, "sluice_csrf_token", None) or csrf_token(client, "/account")
    return client.post(url, data={**(data or {}), "csrf_token": token})


@pytest.fixture
def web(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """An app for the test client, on the test's database but outside any
    application context: each request then gets its own context (and its
    own ``g``), as in production. (Requests made inside the ``app``
    fixture's context would share one ``g`` between requests.)"""
    web_app = make_test_app(database_url, tmp_path / "web-instance")
    yield web_app
    with web_app.app_context():
        db.engine.dispose()


@pytest.fixture
def ready(web: Flask, session: Session, runtime: RuntimeSettings, clock: FixedClock) -> Flask:
    """``web`` with seeded settings and the test's clock."""
    session.commit()
    web.config[CLOCK_CONFIG_KEY] = clock
    return web
