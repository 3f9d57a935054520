"""The "test connection" checks against real servers: an aiosmtpd relay
(plain, STARTTLS, with and without the right password) and a real HTTP
server for the site URL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from app.services.connection_checks import check_site_url, check_smtp
from app.services.transport import Security, SmtpSettings
from tests.smtp_server import free_port, smtp_server

CREDENTIALS = ("mailer", "s3cret-relay-password")


def test_a_reachable_relay_passes_with_its_own_words() -> None:
    with smtp_server() as server:
        result = check_smtp(SmtpSettings(server.host, server.port))

    assert result.ok is True
    assert result.transcript[0].startswith("greeting: 220 ")
    assert result.transcript[-1] == "NOOP: 250 OK"
    assert "accepted the connection" in result.summary
    assert server.handler.messages == []  # nothing sent


def test_starttls_and_auth_pass_with_the_right_password(tmp_path: Path) -> None:
    with smtp_server(
        credentials=CREDENTIALS, tls="starttls", certificate_folder=tmp_path
    ) as server:
        settings = SmtpSettings(server.host, server.port, Security.STARTTLS, *CREDENTIALS)
        result = check_smtp(settings, server.client_context())

    assert result.ok is True
    steps = [line.split(":")[0] for line in result.transcript]
    assert steps == ["greeting", "EHLO", "STARTTLS", "EHLO", "AUTH", "NOOP"]
    assert "AUTH: 235 2.7.0 Authentication successful" in result.transcript


def test_a_wrong_password_reports_the_servers_exact_answer() -> None:
    with smtp_server(credentials=CREDENTIALS) as server:
        settings = SmtpSettings(server.host, server.port, Security.NONE, "mailer", "wrong-one")
        result = check_smtp(settings)

    assert result.ok is False
    assert result.summary == (
        f"{server.host}:{server.port} refused at AUTH: 535 5.7.8 Authentication credentials invalid"
    )
    assert "wrong-one" not in result.summary + "".join(result.transcript)


def test_nothing_listening_is_reported_as_such() -> None:
    port = free_port()

    result = check_smtp(SmtpSettings("127.0.0.1", port))

    assert result.ok is False
    assert result.summary == f"127.0.0.1:{port} at connect: Connection refused"


def test_starttls_refused_by_a_plain_relay_is_named(tmp_path: Path) -> None:
    with smtp_server() as server:
        result = check_smtp(SmtpSettings(server.host, server.port, Security.STARTTLS))

    assert result.ok is False
    assert "at STARTTLS" in result.summary and "not supported" in result.summary


class _Handler(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def do_GET(self) -> None:
        status, body = self.answers.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_site_url_passes_only_when_sluices_health_page_answers(http_server: str) -> None:
    _Handler.answers = {"/sluice/healthz": (200, json.dumps({"status": "ok"}).encode())}

    assert check_site_url(f"{http_server}/sluice/").ok is True
    other = check_site_url(http_server)
    assert other.ok is False and other.summary == f"{http_server}/healthz answered 404 Not Found"


def test_a_site_url_that_is_some_other_page_does_not_pass(http_server: str) -> None:
    _Handler.answers = {"/healthz": (200, b"<html>parked domain</html>")}

    result = check_site_url(http_server)

    assert result.ok is False
    assert "is not Sluice's health page" in result.summary


def test_an_unreachable_site_url_is_named() -> None:
    port = free_port()

    result = check_site_url(f"http://127.0.0.1:{port}")

    assert result.ok is False
    assert result.summary == f"http://127.0.0.1:{port}/healthz is not reachable: Connection refused"
