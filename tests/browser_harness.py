"""A real browser on the real app: the app served over HTTP from a thread
(werkzeug), Debian's chromium driven by Playwright for Python, axe-core for
accessibility.

- The browser is Debian's ``chromium`` (``CHROMIUM``); Playwright never
  downloads one. Without it (or without Playwright) the tests skip, and
  fail under ``SLUICE_REQUIRE_SERVICES=1``.
- Each test gets a fresh SQLite database copied from the migrated template,
  seeded settings, an administrator and a marketer, a test SMTP relay, a
  clock the test moves, and the site URL pointing at the served app. A
  module can serve the app on another database with ``served_app`` (the
  issue's scenario runs on SQLite and PostgreSQL).
- Every page a test opens is watched: a Content-Security-Policy violation
  (reported by the browser) or a JavaScript error fails the test, and so
  does any ``alert()`` (hostile input that ran).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from app import app_settings
from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.extensions import db
from app.models import Role
from app.services.runtime_settings import seed_runtime_settings, update_runtime_settings
from tests.conftest import make_test_app, service_missing
from tests.smtp_server import RunningServer, free_port, smtp_server
from tests.web_client import PASSWORD, add_user

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DESKTOP = {"width": 1280, "height": 900}
MOBILE = {"width": 375, "height": 812}
ADMIN_EMAIL = "boss@example.com"
MARKETER_EMAIL = "mark@example.com"

# Recorded in the page before any of its own scripts run: the browser's
# report of every CSP violation.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    event.violatedDirective + " blocked " + (event.blockedURI || "inline") +
    " at " + event.documentURI
  );
});
"""


@dataclass
class LiveApp:
    """The app served over HTTP, with what the tests need to reach into it."""

    app: Flask
    url: str
    clock: FixedClock
    relay: RunningServer

    def runtime_settings(self) -> Any:
        from app.services.runtime_settings import get_runtime_settings

        with self.app.app_context():
            return get_runtime_settings(db.session)


# One chromium for the whole session, shared by every module that imports
# the ``browser`` fixture: pytest makes a separate session fixture per
# importing module, and a second ``sync_playwright()`` in the same thread
# fails while the first is running. The last fixture torn down closes it.
_SHARED: dict[str, Any] = {}


def _start_browser() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_missing("Playwright for Python is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        service_missing(f"{CHROMIUM} is missing (make system-packages installs chromium)")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
    except BaseException:
        playwright.stop()
        raise
    _SHARED.update(playwright=playwright, browser=chromium, users=0)
    return chromium


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless chromium for the whole session (see ``_SHARED``)."""
    chromium = _SHARED.get("browser") or _start_browser()
    _SHARED["users"] += 1
    try:
        yield chromium
    finally:
        _SHARED["users"] -= 1
        if _SHARED["users"] == 0:
            try:
                chromium.close()
            finally:
                _SHARED.pop("playwright").stop()
                _SHARED.clear()


def _serve(app: Flask) -> tuple[BaseWSGIServer, threading.Thread, str]:
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-app", daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{port}"


@contextmanager
def served_app(database_url: str, tmp_path: Path) -> Iterator[LiveApp]:
    """The app on ``database_url`` (migrated, no rows), served on a free
    port, with its settings seeded and the two users (see the module)."""
    clock = FixedClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    with smtp_server() as relay:
        app = make_test_app(database_url, tmp_path / "instance")
        app.config["SLUICE_SETTINGS"] = replace(
            app_settings(app), smtp_url=f"smtp://{relay.host}:{relay.port}"
        )
        app.config[CLOCK_CONFIG_KEY] = clock
        server, thread, url = _serve(app)
        try:
            with app.app_context():
                seed_runtime_settings(db.session, app_settings(app), clock)
                update_runtime_settings(db.session, {"site_url": url}, clock)
                db.session.commit()
            add_user(app, ADMIN_EMAIL, Role.ADMIN, clock=clock)
            add_user(app, MARKETER_EMAIL, Role.MARKETER, clock=clock)
            yield LiveApp(app, url, clock, relay)
        finally:
            server.shutdown()
            thread.join(timeout=30)
            with app.app_context():
                db.engine.dispose()


@pytest.fixture
def live(tmp_path: Path, sqlite_template: Path) -> Iterator[LiveApp]:
    """The app on a fresh SQLite database, served on a free port."""
    shutil.copyfile(sqlite_template, tmp_path / "sluice.db")
    with served_app(f"sqlite:///{tmp_path / 'sluice.db'}", tmp_path) as served:
        yield served


@dataclass
class Watch:
    """What the browser reported while a test ran."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture
def watch() -> Watch:
    return Watch()


def new_page(browser: Any, live: LiveApp, watch: Watch, viewport: dict[str, int] = DESKTOP) -> Any:
    """A page in a fresh browser context (its own cookies), watched."""
    context = browser.new_context(viewport=viewport, base_url=live.url)
    context.set_default_timeout(15_000)
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    page.on("pageerror", lambda error: watch.errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            watch.errors.append(f"console {message.type}: {message.text}")
            if message.type == "error" and "status of 4" not in message.text
            else None
        ),
    )

    def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        if dialog.type == "confirm":
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", on_dialog)
    return page


def csp_violations(page: Any) -> list[str]:
    violations: list[str] = page.evaluate("window.__cspViolations || []")
    return violations


def assert_clean(page: Any, watch: Watch) -> None:
    """No CSP violation on the current page, no script error, no alert."""
    assert csp_violations(page) == []
    assert watch.errors == []
    assert [dialog for dialog in watch.dialogs if not dialog.startswith("confirm:")] == []


def log_in(page: Any, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def log_out(page: Any) -> None:
    page.get_by_role("button", name="Log out").click()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as tests/artifacts/screenshots/NAME.png."""
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def serious_accessibility_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the current page."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{violation['impact']}: {violation['id']} ({violation['help']}) at "
        + ", ".join(str(node["target"]) for node in violation["nodes"][:5])
        for violation in results.response["violations"]
        if violation["impact"] in {"serious", "critical"}
    ]
