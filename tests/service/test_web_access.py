"""Access to the web UI through Flask's test client: log-in and log-out,
the rate limit, roles checked on the server, CSRF, cookies and headers."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import app_settings, create_app
from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.models import Role, RuntimeSetting, User
from app.services.login_throttle import PER_ACCOUNT, WINDOW
from app.services.runtime_settings import RuntimeSettings, get_runtime_settings
from tests.web_client import PASSWORD, add_user, csrf_token, logged_in, login, post_form, web

__all__ = ["web"]  # the fixture

ADMIN_PAGES = ["/admin/settings", "/admin/users", "/admin/jobs"]
ADMIN_POSTS = [
    ("/admin/settings", {"max_per_hour": "5"}),
    ("/admin/settings/test-smtp", {}),
    ("/admin/users", {"email": "intruder@example.com", "role": "admin"}),
    ("/admin/users/1/role", {"role": "marketer"}),
    ("/admin/users/1/deactivate", {}),
    ("/admin/users/1/reset-password", {}),
]


@pytest.fixture
def clocked(web: Flask, clock: FixedClock) -> FixedClock:
    """The app's clock, moved by the test."""
    web.config[CLOCK_CONFIG_KEY] = clock
    return clock


def test_a_visitor_is_sent_to_the_log_in_page(web: Flask) -> None:
    client = web.test_client()

    for url in ["/", "/account", *ADMIN_PAGES]:
        response = client.get(url)
        assert response.status_code == 302
        location = urllib.parse.urlsplit(response.headers["Location"])
        assert location.path == "/login"
        assert urllib.parse.parse_qs(location.query) == {"next": [url]}
    assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200


def test_log_in_and_log_out(web: Flask, runtime: RuntimeSettings, session: Session) -> None:
    session.commit()
    add_user(web, "Ann@Example.com", Role.MARKETER)
    client = web.test_client()

    response = login(client, "ann@example.COM")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    dashboard = client.get("/").get_data(as_text=True)
    assert "Logged in as Ann@Example.com." in dashboard
    assert "<h1>Dashboard</h1>" in dashboard

    token = csrf_token(client, "/account")
    assert client.get("/logout").status_code == 405  # a link cannot log anyone out
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "You are logged out." in client.get("/login").get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_a_wrong_password_or_unknown_address_gets_the_same_answer(web: Flask) -> None:
    add_user(web, "ann@example.com", Role.MARKETER)
    client = web.test_client()

    wrong = login(client, "ann@example.com", "wrong password")
    unknown = login(client, "nobody@example.com", PASSWORD)

    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "Wrong email address or password." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_next_is_followed_only_within_the_site(web: Flask) -> None:
    add_user(web, "ann@example.com")
    for target, expected in [
        ("/admin/users", "/admin/users"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ]:
        client = web.test_client()
        token = csrf_token(client)
        response = client.post(
            "/login",
            query_string={"next": target},
            data={"email": "ann@example.com", "password": PASSWORD, "csrf_token": token},
        )
        assert response.headers["Location"] == expected, target


def test_the_sixth_bad_attempt_is_refused_and_a_good_one_works_after_the_window(
    web: Flask, clocked: FixedClock
) -> None:
    add_user(web, "ann@example.com")
    client = web.test_client()
    for _ in range(PER_ACCOUNT):
        assert login(client, "ann@example.com", "wrong password").status_code == 401

    refused = login(client, "ann@example.com", PASSWORD)  # even the right password

    assert refused.status_code == 429
    assert "Too many failed log-in attempts for this account" in refused.get_data(as_text=True)
    assert client.get("/").status_code == 302
    clocked.advance(WINDOW)
    assert login(client, "ann@example.com", PASSWORD).status_code == 302
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_a_marketer_gets_403_on_admin_pages(web: Flask, url: str) -> None:
    client = logged_in(web, "mark@example.com", Role.MARKETER)

    response = client.get(url)

    assert response.status_code == 403
    assert "This page is for administrators" in response.get_data(as_text=True)


def test_a_marketers_direct_posts_to_admin_actions_change_nothing(
    web: Flask, session: Session, runtime: RuntimeSettings
) -> None:
    session.commit()
    admin_id = add_user(web, "boss@example.com", Role.ADMIN)
    assert admin_id == 1
    client = logged_in(web, "mark@example.com", Role.MARKETER)
    before = get_runtime_settings(session)

    for url, data in ADMIN_POSTS:
        assert post_form(client, url, data).status_code == 403, url

    session.expire_all()
    assert get_runtime_settings(session) == before
    users = {user.email: user for user in session.scalars(select(User))}
    assert set(users) == {"boss@example.com", "mark@example.com"}
    assert users["boss@example.com"].role == Role.ADMIN and users["boss@example.com"].active


def test_the_menu_shows_admin_pages_to_admins_only(web: Flask) -> None:
    admin = logged_in(web, "boss@example.com", Role.ADMIN).get("/").get_data(as_text=True)
    marketer = logged_in(web, "mark@example.com", Role.MARKETER).get("/").get_data(as_text=True)

    for link in ADMIN_PAGES:
        assert f'href="{link}"' in admin
        assert f'href="{link}"' not in marketer


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(
    web: Flask, session: Session, runtime: RuntimeSettings, token: str | None
) -> None:
    session.commit()
    client = logged_in(web, "boss@example.com", Role.ADMIN)
    data = {"max_per_hour": "7", **({"csrf_token": token} if token else {})}

    response = client.post("/admin/settings", data=data)

    assert response.status_code == 400
    assert "The form was not accepted" in response.get_data(as_text=True)
    session.expire_all()
    assert get_runtime_settings(session).max_per_hour == runtime.max_per_hour
    # Log-in and log-out are forms like any other.
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200


def test_a_token_from_another_session_is_refused(web: Flask) -> None:
    stranger_token = csrf_token(web.test_client())
    client = logged_in(web, "boss@example.com", Role.ADMIN)

    assert client.post("/logout", data={"csrf_token": stranger_token}).status_code == 400


def test_a_deactivated_users_session_ends_at_their_next_request(web: Flask) -> None:
    admin = logged_in(web, "boss@example.com", Role.ADMIN)
    marketer = logged_in(web, "mark@example.com", Role.MARKETER)
    assert marketer.get("/").status_code == 200

    assert post_form(admin, "/admin/users/2/deactivate").status_code == 302

    assert marketer.get("/").status_code == 302
    assert login(marketer, "mark@example.com").status_code == 401


def test_a_password_reset_ends_the_users_sessions(web: Flask) -> None:
    admin = logged_in(web, "boss@example.com", Role.ADMIN)
    marketer = logged_in(web, "mark@example.com", Role.MARKETER)

    assert post_form(admin, "/admin/users/2/reset-password").status_code == 200

    assert marketer.get("/").status_code == 302


def test_a_role_change_applies_at_the_next_request(web: Flask) -> None:
    admin = logged_in(web, "boss@example.com", Role.ADMIN)
    other = logged_in(web, "other@example.com", Role.ADMIN)
    assert other.get("/admin/users").status_code == 200

    post_form(admin, "/admin/users/2/role", {"role": "marketer"})

    assert other.get("/admin/users").status_code == 403


def test_session_cookie_flags(web: Flask) -> None:
    client = logged_in(web, "boss@example.com", Role.ADMIN)
    cookie = client.get_cookie("sluice_session")
    assert cookie is not None
    assert cookie.http_only and cookie.same_site == "Lax"
    assert not cookie.secure  # site URL http://127.0.0.1:5000: `sluice run` must work


@pytest.mark.parametrize(
    ("site_url", "cookie_secure", "secure"),
    [
        ("https://mail.example.com", "auto", True),
        ("http://127.0.0.1:5000", "auto", False),
        ("http://127.0.0.1:5000", "always", True),
        ("https://mail.example.com", "never", False),
    ],
)
def test_the_secure_flag_follows_the_site_url_unless_configured(
    web: Flask, site_url: str, cookie_secure: str, secure: bool
) -> None:
    settings = replace(app_settings(web), site_url=site_url, cookie_secure=cookie_secure)

    flask_app = create_app(settings)

    assert flask_app.config["SESSION_COOKIE_SECURE"] is secure
    assert flask_app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert flask_app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


@pytest.mark.parametrize("url", ["/login", "/", "/admin/settings", "/static/sluice.css"])
def test_security_headers_on_ui_responses(web: Flask, url: str) -> None:
    client = logged_in(web, "boss@example.com", Role.ADMIN)

    response = client.get(url)

    policy = [part.strip() for part in response.headers["Content-Security-Policy"].split(";")]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert not any("unsafe-inline" in part for part in policy)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("url", ["/login", "/", "/account", *ADMIN_PAGES])
def test_pages_have_no_inline_script_or_style(web: Flask, url: str) -> None:
    client = logged_in(web, "boss@example.com", Role.ADMIN)

    page = client.get(url).get_data(as_text=True)

    # Only the app's own script files (the dashboard adds dashboard.js).
    assert "<script>" not in page and "<script " not in re.sub(
        r'<script src="/static/[a-z_]+\.js" defer></script>', "", page
    )
    assert " style=" not in page and "<style" not in page
    assert " onclick=" not in page.lower() and "javascript:" not in page.lower()


def test_the_public_links_stay_free_of_csrf_and_cookies(web: Flask) -> None:
    # RFC 8058 one-click: a mail client POSTs without any session or token.
    response = web.test_client().post(
        "/u/not-a-valid-token", data={"List-Unsubscribe": "One-Click"}
    )

    assert response.status_code == 404  # judged by its token, not refused for CSRF (400)
    assert "Set-Cookie" not in response.headers


def test_healthz_and_login_do_not_touch_runtime_settings(web: Flask, session: Session) -> None:
    # An uninitialised database still serves the log-in page and health.
    assert session.scalar(select(RuntimeSetting.key).limit(1)) is None
    client = web.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200


def test_the_rate_limit_window_is_a_sliding_one(web: Flask, clocked: FixedClock) -> None:
    add_user(web, "ann@example.com")
    client = web.test_client()
    for _ in range(PER_ACCOUNT):
        login(client, "ann@example.com", "wrong password")
        clocked.advance(timedelta(minutes=1))

    # The first failure leaves the window 15 minutes after it: one more try.
    clocked.advance(WINDOW - timedelta(minutes=PER_ACCOUNT))
    assert login(client, "ann@example.com", "wrong password").status_code == 401
    assert login(client, "ann@example.com", PASSWORD).status_code == 429
