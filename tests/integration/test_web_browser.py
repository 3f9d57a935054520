"""The web UI in a real browser (Debian's chromium through Playwright):
log-in, roles, CSRF, settings, users, jobs, hostile input, no inline
script, accessibility (axe-core) and screenshots at desktop and mobile
width (``tests/artifacts/screenshots/``)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import Role
from app.services import job_runs
from app.services.login_throttle import PER_ACCOUNT, WINDOW
from app.services.queue_build import activate_due
from tests.browser_harness import (
    ADMIN_EMAIL,
    DESKTOP,
    MARKETER_EMAIL,
    MOBILE,
    LiveApp,
    Watch,
    assert_clean,
    browser,
    csp_violations,
    live,
    log_in,
    log_out,
    new_page,
    screenshot,
    serious_accessibility_violations,
    watch,
)
from tests.service.test_queue_build import make_mass_email, make_scene, schedule
from tests.web_client import PASSWORD, add_user

__all__ = ["browser", "live", "watch"]  # fixtures

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def page(browser: Any, live: LiveApp, watch: Watch) -> Any:
    """A desktop page; after the test, nothing the browser reported."""
    opened = new_page(browser, live, watch)
    yield opened
    assert_clean(opened, watch)
    opened.context.close()


def test_log_in_and_log_out(page: Any) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    expect(page.get_by_role("status")).to_have_text("Log in to see this page.")

    log_in(page, ADMIN_EMAIL)

    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    expect(page.get_by_role("status").first).to_have_text(f"Logged in as {ADMIN_EMAIL}.")
    log_out(page)
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("status")).to_have_text("You are logged out.")
    page.goto("/admin/settings")
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")


def test_a_wrong_password_is_refused_with_a_clear_message(page: Any) -> None:
    log_in(page, ADMIN_EMAIL, "not the password")

    expect(page.get_by_role("alert")).to_have_text("Wrong email address or password.")
    expect(page.get_by_label("Email address")).to_have_value(ADMIN_EMAIL)
    expect(page.get_by_label("Password")).to_have_value("")


def test_the_sixth_bad_attempt_is_refused_and_a_good_one_works_after_the_window(
    page: Any, live: LiveApp
) -> None:
    for _ in range(PER_ACCOUNT):
        log_in(page, ADMIN_EMAIL, "not the password")
        expect(page.get_by_role("alert")).to_have_text("Wrong email address or password.")

    log_in(page, ADMIN_EMAIL)  # the right password, refused all the same

    expect(page.get_by_role("alert")).to_have_text(
        "Too many failed log-in attempts for this account. Try again in 15 minute(s)."
    )
    live.clock.advance(WINDOW)
    log_in(page, ADMIN_EMAIL)
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")


def test_a_marketer_is_refused_admin_pages_and_admin_posts(page: Any, live: LiveApp) -> None:
    before = live.runtime_settings()
    log_in(page, MARKETER_EMAIL)
    navigation = page.get_by_role("navigation", name="Main")
    expect(navigation.get_by_role("link", name="Dashboard")).to_be_visible()
    expect(navigation.get_by_role("link", name="Settings")).to_have_count(0)

    for path in ("/admin/settings", "/admin/users", "/admin/jobs"):
        response = page.goto(path)
        assert response.status == 403
        expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")

    # Straight to the server, with the marketer's own valid CSRF token.
    page.goto("/")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    for path, form in [
        ("/admin/settings", {"max_per_hour": "1"}),
        ("/admin/users", {"email": "intruder@example.com", "role": "admin"}),
        ("/admin/users/1/deactivate", {}),
        ("/admin/users/2/role", {"role": "admin"}),
    ]:
        response = page.request.post(path, form={**form, "csrf_token": token})
        assert response.status == 403, path
    assert live.runtime_settings() == before
    page.goto("/account")
    expect(page.get_by_text(f"{MARKETER_EMAIL}, marketer.")).to_be_visible()


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    page: Any, live: LiveApp
) -> None:
    before = live.runtime_settings()
    log_in(page, ADMIN_EMAIL)
    page.goto("/admin/settings")
    page.get_by_label("Max emails per hour").fill("7")
    # A forged form: the same fields without the token.
    page.locator('form.settings-form input[name="csrf_token"]').evaluate("node => node.remove()")

    page.get_by_role("button", name="Save settings").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("The form was not accepted")
    assert live.runtime_settings() == before
    response = page.request.post("/admin/settings", form={"max_per_hour": "7"})
    assert response.status == 400
    assert live.runtime_settings() == before


def test_settings_errors_are_shown_next_to_each_field_and_nothing_is_saved(
    page: Any, live: LiveApp
) -> None:
    before = live.runtime_settings()
    log_in(page, ADMIN_EMAIL)
    page.goto("/admin/settings")
    page.get_by_label("Max emails per hour").fill("lots")
    page.get_by_label("Site URL").fill("mail.example.com")
    page.get_by_label("Company name").fill("Renamed Ltd")  # valid, but not saved alone

    page.get_by_role("button", name="Save settings").click()

    max_field = page.get_by_label("Max emails per hour")
    expect(max_field).to_have_attribute("aria-invalid", "true")
    expect(max_field).to_have_accessible_description(re.compile("must be a whole number"))
    expect(page.locator("#site_url-error")).to_have_text(
        "Error: must be an http:// or https:// URL with a host"
    )
    expect(page.get_by_role("alert").first).to_contain_text("Nothing was saved")
    expect(page.get_by_label("Company name")).to_have_value("Renamed Ltd")
    assert live.runtime_settings() == before
    screenshot(page, "settings-errors-desktop")

    max_field.fill("600")
    page.get_by_label("Site URL").fill(live.url)
    page.get_by_role("button", name="Save settings").click()

    expect(page.get_by_role("status").first).to_have_text(
        "Settings saved: Max emails per hour, Company name."
    )
    saved = live.runtime_settings()
    assert (saved.max_per_hour, saved.company_name) == (600, "Renamed Ltd")


def test_the_smtp_test_button_reports_the_relays_answer(page: Any) -> None:
    log_in(page, ADMIN_EMAIL)
    page.goto("/admin/settings")

    page.get_by_role("button", name="Test the SMTP relay").click()

    expect(page.get_by_role("status").first).to_have_text("The SMTP relay accepted the connection.")
    result = page.locator("#smtp-result")
    expect(result).to_contain_text("accepted the connection: NOOP: 250 OK")
    result.get_by_text("The server's answers").click()
    expect(result.locator("pre")).to_contain_text("greeting: 220")


def test_users_admin_flows(page: Any, browser: Any, live: LiveApp, watch: Watch) -> None:
    log_in(page, ADMIN_EMAIL)
    page.goto("/admin/users")
    page.get_by_label("Email address").fill("new.person@example.com")
    page.get_by_label("Role", exact=True).select_option("marketer")
    page.get_by_role("button", name="Create with a generated password").click()

    expect(page.get_by_role("status").first).to_have_text(
        "User new.person@example.com created as marketer."
    )
    password = page.locator("#new-password").inner_text()
    newcomer = new_page(browser, live, watch)
    log_in(newcomer, "new.person@example.com", password)
    expect(newcomer.get_by_role("heading", level=1)).to_have_text("Dashboard")

    page.goto("/admin/users")
    page.get_by_label("Role of new.person@example.com").select_option("admin")
    page.get_by_role("button", name="Change role of new.person@example.com").click()
    expect(page.get_by_role("status").first).to_have_text("new.person@example.com is now an admin.")
    newcomer.goto("/admin/users")
    expect(newcomer.get_by_role("heading", level=1)).to_have_text("Users")

    page.get_by_role("button", name="Deactivate new.person@example.com").click()
    expect(page.get_by_role("status").first).to_have_text(
        "new.person@example.com is deactivated: they can no longer log in."
    )
    assert watch.dialogs == [
        "confirm: Deactivate new.person@example.com? They will not be able to log in."
    ]
    newcomer.goto("/")
    expect(newcomer.get_by_role("heading", level=1)).to_have_text("Log in")

    page.get_by_role("button", name="Activate new.person@example.com").click()
    page.get_by_role("button", name="Reset password of new.person@example.com").click()
    expect(page.get_by_role("status").first).to_contain_text("has a new password")
    new_password = page.locator("#new-password").inner_text()
    assert new_password != password
    log_in(newcomer, "new.person@example.com", new_password)
    expect(newcomer.get_by_role("heading", level=1)).to_have_text("Dashboard")
    assert_clean(newcomer, watch)
    newcomer.context.close()

    # Nobody deactivates themselves: no button, and the server refuses anyway.
    page.goto("/admin/users")
    expect(page.get_by_role("button", name=f"Deactivate {ADMIN_EMAIL}")).to_have_count(0)


def test_the_jobs_page_evaluates_the_checklist_live(page: Any, live: LiveApp) -> None:
    log_in(page, ADMIN_EMAIL)

    page.goto("/admin/jobs")

    checklist = page.locator("ol.checklist > li")
    expect(checklist).to_have_count(5)
    expect(checklist.nth(0)).to_contain_text("Yes")  # the test relay answers
    expect(checklist.nth(0)).to_contain_text("accepted the connection")
    expect(checklist.nth(1)).to_contain_text("no runner has ever started")
    expect(checklist.nth(3)).to_contain_text(f"{live.url}/healthz answered 200 OK")
    expect(checklist.nth(4)).to_contain_text("Unknown")

    with live.app.app_context():
        job_runs.heartbeat(db.session, "runner-a", live.clock, dict.fromkeys(["dispatch"], None))
        db.session.commit()
    live.clock.advance(timedelta(seconds=42))
    page.reload()
    expect(checklist.nth(1)).to_contain_text("1 alive; last heartbeat 42 s ago")
    expect(page.get_by_role("region", name="Table of runners")).to_contain_text("runner-a")


def test_hostile_names_are_shown_as_text_and_never_run(page: Any, live: LiveApp) -> None:
    with live.app.app_context():
        scene = make_scene(db.session, live.clock)
        first = next(iter(scene.contacts.values()))
        first.first_name = HOSTILE
        mass_email = make_mass_email(db.session, scene, live.clock, HOSTILE)
        schedule(live.app, db.session, live.clock, mass_email)
        activate_due(db.session, live.clock)
        run = job_runs.start_run(db.session, "dispatch", HOSTILE, live.clock)
        job_runs.finish_run(db.session, run, live.clock, error=HOSTILE)
        db.session.commit()
    log_in(page, HOSTILE)  # the address field is re-shown, escaped
    expect(page.get_by_label("Email address")).to_have_value(HOSTILE)

    log_in(page, ADMIN_EMAIL)
    expect(page.get_by_role("cell", name=HOSTILE, exact=True)).to_be_visible()
    page.goto("/admin/settings")
    page.get_by_label("Company name").fill(HOSTILE)
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_label("Company name")).to_have_value(HOSTILE)
    page.goto("/admin/jobs")
    expect(page.get_by_text(f"error: {HOSTILE}")).to_be_visible()
    # The page fixture then checks that no alert() ran and no CSP report came.


def test_the_csp_watch_catches_an_inline_script(page: Any, watch: Watch) -> None:
    """The policy blocks inline script, and the watch sees it (so the other
    tests' clean pages mean something)."""
    log_in(page, ADMIN_EMAIL)

    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "alert('inline')";
          document.body.appendChild(script);
        }"""
    )

    page.wait_for_function("window.__cspViolations.length > 0")
    assert csp_violations(page)[0].startswith("script-src-elem blocked inline")
    assert watch.dialogs == []
    assert any("violates the following Content Security Policy" in e for e in watch.errors)
    page.evaluate("window.__cspViolations = []")
    watch.errors.clear()


PAGES = [
    ("login", None, "/login"),
    ("dashboard", MARKETER_EMAIL, "/"),
    ("account", MARKETER_EMAIL, "/account"),
    ("settings", ADMIN_EMAIL, "/admin/settings"),
    ("users", ADMIN_EMAIL, "/admin/users"),
    ("jobs", ADMIN_EMAIL, "/admin/jobs"),
]


@pytest.mark.parametrize(("width", "viewport"), [("desktop", DESKTOP), ("mobile", MOBILE)])
def test_every_page_is_accessible_and_fits_the_screen(
    browser: Any, live: LiveApp, watch: Watch, width: str, viewport: dict[str, int]
) -> None:
    """axe-core finds no serious or critical violation; nothing is wider
    than the screen; a screenshot of each page is saved."""
    with live.app.app_context():
        scene = make_scene(db.session, live.clock)
        schedule(live.app, db.session, live.clock, make_mass_email(db.session, scene, live.clock))
        activate_due(db.session, live.clock)
    add_user(live.app, "third@example.com", Role.MARKETER, clock=live.clock)
    pages: dict[str | None, Any] = {None: new_page(browser, live, watch, viewport)}
    for email in (ADMIN_EMAIL, MARKETER_EMAIL):
        pages[email] = new_page(browser, live, watch, viewport)
        log_in(pages[email], email, PASSWORD)
    problems = []
    for name, user, path in PAGES:
        page = pages[user]
        page.goto(path)
        problems += [f"{name}: {found}" for found in serious_accessibility_violations(page)]
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 0:
            problems.append(f"{name}: {overflow} px wider than the {viewport['width']} px screen")
        screenshot(page, f"{name}-{width}")
        assert_clean(page, watch)
    for page in pages.values():
        page.context.close()
    assert problems == []
