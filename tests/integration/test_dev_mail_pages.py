"""The ``/dev/mail`` pages through the Flask test client, over mail caught
by a real catcher, logged in (they are behind the log-in like every page)."""

from __future__ import annotations

import shutil
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.clock import FixedClock
from app.models import Role
from app.services import caught_mail
from app.services.mail_catcher import MailCatcher
from app.web.dev_mail import MAIL_CATCHER_DIR_KEY
from tests.conftest import make_test_app
from tests.web_client import logged_in, post_form

HOSTILE_SUBJECT = '<script>alert("subject")</script>'
HOSTILE_HTML = '<p>Hi</p><script>alert("html")</script><img src="https://tracker.example/p.gif">'


def hostile_message() -> bytes:
    return (
        "From: sender@example.com\r\nTo: rcpt@example.org\r\n"
        f"Subject: {HOSTILE_SUBJECT}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Plain <b>text</b> part\r\n"
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"{HOSTILE_HTML}\r\n--b--\r\n"
    ).encode()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "instance" / "caught-mail"


@pytest.fixture
def app(tmp_path: Path, folder: Path, sqlite_template: Path) -> Flask:
    # These pages read files; the database only holds the logged-in user.
    shutil.copyfile(sqlite_template, tmp_path / "sluice.db")
    flask_app = make_test_app(f"sqlite:///{tmp_path / 'sluice.db'}", tmp_path / "instance")
    flask_app.config[MAIL_CATCHER_DIR_KEY] = str(folder)
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return logged_in(app, "developer@sluice.test", Role.MARKETER)


@pytest.fixture
def catcher(folder: Path) -> Iterator[MailCatcher]:
    clock = FixedClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    with MailCatcher(folder, port=0, clock=clock) as running:
        yield running


def send(catcher: MailCatcher, content: bytes) -> str:
    with smtplib.SMTP(catcher.host, catcher.port, timeout=10) as client:
        client.sendmail("sender@example.com", ["rcpt@example.org"], content)
    assert isinstance(catcher.clock, FixedClock)
    catcher.clock.advance(timedelta(seconds=1))
    return caught_mail.message_ids(catcher.directory)[0]


def test_without_a_catcher_folder_every_page_is_not_found(
    app: Flask, client: FlaskClient, folder: Path
) -> None:
    caught_mail.store_message(
        folder,
        "20260302T090000000000Z-000001-0123abcd",
        b"Subject: hi\r\n\r\nbody\r\n",
        caught_mail.Envelope("a@example.com", ("b@example.org",)),
        datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    )
    del app.config[MAIL_CATCHER_DIR_KEY]

    for url in (
        "/dev/mail",
        "/dev/mail/20260302T090000000000Z-000001-0123abcd",
        "/dev/mail/20260302T090000000000Z-000001-0123abcd/raw",
    ):
        assert client.get(url).status_code == 404
    assert post_form(client, "/dev/mail/clear").status_code == 404
    assert caught_mail.list_messages(folder).total == 1


def test_the_list_shows_caught_mail_newest_first_with_pages(
    client: FlaskClient, catcher: MailCatcher
) -> None:
    for number in range(1, 53):
        send(catcher, f"Subject: message {number:02d}\r\n\r\nbody\r\n".encode())

    first = client.get("/dev/mail")
    second = client.get("/dev/mail?page=2")

    assert first.status_code == 200
    page = first.get_data(as_text=True)
    assert page.index("message 52") < page.index("message 51") < page.index("message 03")
    assert "message 02" not in page
    assert "Page 1 of 2" in page and 'href="/dev/mail?page=2"' in page
    assert "Clear all 52 messages" in page
    assert "rcpt@example.org" in page and "2026-03-02 09:00:51" in page
    second_page = second.get_data(as_text=True)
    assert "message 02" in second_page and "message 01" in second_page
    assert "message 03" not in second_page
    assert "No messages on this page" in client.get("/dev/mail?page=3").get_data(as_text=True)


@pytest.mark.parametrize("page", ["0", "abc", "-1", "1.5"])
def test_a_bad_page_number_is_an_error_naming_the_field(client: FlaskClient, page: str) -> None:
    response = client.get(f"/dev/mail?page={page}")

    assert response.status_code == 400
    assert "page: expected a whole number" in response.get_data(as_text=True)


def test_a_hostile_message_is_escaped_and_its_html_sandboxed(
    client: FlaskClient, catcher: MailCatcher
) -> None:
    message_id = send(catcher, hostile_message())

    listing = client.get("/dev/mail").get_data(as_text=True)
    detail = client.get(f"/dev/mail/{message_id}")
    html = client.get(f"/dev/mail/{message_id}/html")

    for page in (listing, detail.get_data(as_text=True)):
        assert "<script>" not in page
        assert "&lt;script&gt;alert(&#34;subject&#34;)&lt;/script&gt;" in page
    detail_page = detail.get_data(as_text=True)
    assert "Plain &lt;b&gt;text&lt;/b&gt; part" in detail_page
    assert f'<iframe sandbox src="/dev/mail/{message_id}/html"' in detail_page
    assert "tracker.example" not in detail_page
    assert "script-src" not in detail.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in detail.headers["Content-Security-Policy"]
    # The HTML part is served as written, but under a policy that forbids
    # running it or fetching anything remote.
    assert html.status_code == 200
    assert html.mimetype == "text/html"
    assert HOSTILE_HTML in html.get_data(as_text=True)
    policy = [d.strip() for d in html.headers["Content-Security-Policy"].split(";")]
    assert "default-src 'none'" in policy and "sandbox" in policy
    assert "img-src data: cid:" in policy
    assert html.headers["X-Content-Type-Options"] == "nosniff"
    # Framed by our own message page: no X-Frame-Options: DENY added to it.
    assert "X-Frame-Options" not in html.headers


def test_raw_download_is_the_message_as_received(client: FlaskClient, catcher: MailCatcher) -> None:
    content = hostile_message()
    message_id = send(catcher, content)

    raw = client.get(f"/dev/mail/{message_id}/raw")

    assert raw.status_code == 200
    assert raw.data == content
    assert raw.mimetype == "message/rfc822"
    assert raw.headers["Content-Disposition"] == f'attachment; filename="{message_id}.eml"'


def test_a_message_without_html_has_no_html_route(
    client: FlaskClient, catcher: MailCatcher
) -> None:
    message_id = send(catcher, b"Subject: plain only\r\n\r\nJust text.\r\n")

    detail = client.get(f"/dev/mail/{message_id}").get_data(as_text=True)

    assert "Just text." in detail and "<iframe" not in detail
    assert client.get(f"/dev/mail/{message_id}/html").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/dev/mail/..%2F..%2Fsecret",
        "/dev/mail/%2E%2E",
        "/dev/mail/..%2Fsecret/raw",
        "/dev/mail/%00/raw",
        "/dev/mail/20260302T090000000000Z-000001-0123abcd%00/raw",
        "/dev/mail/%2Fetc%2Fpasswd/raw",
        "/dev/mail/20260302T090000000000Z-000001-0123abcd/raw",  # well formed, absent
    ],
)
def test_ids_that_are_not_caught_messages_are_not_found(
    client: FlaskClient, folder: Path, url: str
) -> None:
    folder.mkdir(parents=True)
    (folder.parent / "secret.eml").write_bytes(b"Subject: outside\r\n\r\n")

    assert client.get(url).status_code == 404


def test_clear_all_is_a_post_that_empties_the_folder(
    client: FlaskClient, catcher: MailCatcher, folder: Path
) -> None:
    send(catcher, b"Subject: one\r\n\r\nbody\r\n")
    send(catcher, b"Subject: two\r\n\r\nbody\r\n")

    assert client.get("/dev/mail/clear").status_code == 404  # GET changes nothing
    assert caught_mail.list_messages(folder).total == 2
    assert client.post("/dev/mail/clear").status_code == 400  # no CSRF token
    assert caught_mail.list_messages(folder).total == 2
    response = post_form(client, "/dev/mail/clear")

    assert response.status_code == 303
    assert response.headers["Location"] == "/dev/mail"
    assert caught_mail.list_messages(folder).total == 0
    assert "No messages." in client.get("/dev/mail").get_data(as_text=True)


def test_the_pages_need_a_log_in(app: Flask, catcher: MailCatcher) -> None:
    message_id = send(catcher, b"Subject: private\r\n\r\nbody\r\n")
    anonymous = app.test_client()

    for url in ("/dev/mail", f"/dev/mail/{message_id}", f"/dev/mail/{message_id}/raw"):
        response = anonymous.get(url)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")
