"""Send Test against a real SMTP server (aiosmtpd, ``tests/smtp_server.py``):
the service and the ``sluice send-test`` command, accepted and refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from email import message_from_bytes, policy

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.cli import ScriptInfo
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import app_settings
from app.cli import build_cli
from app.clock import FixedClock
from app.models import CampaignLogEntry, QueueItem
from app.services.messages import MessageError, send_test
from app.services.runtime_settings import RuntimeSettings
from app.services.transport import SmtpSettings, SmtpTransport
from tests.conftest import TEST_SECRET_KEY
from tests.service.test_messages import Setup, make_campaign, seed_https_runtime
from tests.smtp_server import RunningServer, smtp_server

TESTER = "qa@example.net"


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def setup(session: Session, clock: FixedClock, runtime: RuntimeSettings) -> Setup:
    made = make_campaign(session, clock)
    session.commit()
    return made


@pytest.fixture
def runtime(app: Flask, session: Session, clock: FixedClock) -> RuntimeSettings:
    return seed_https_runtime(app, session, clock)


def nothing_recorded(session: Session) -> bool:
    counts = [
        session.scalar(select(func.count()).select_from(table))
        for table in (QueueItem, CampaignLogEntry)
    ]
    return counts == [0, 0]


def run_cli(app: Flask, server: RunningServer | None, *args: str) -> Result:
    if server is not None:
        settings = app_settings(app)
        url = f"smtp://{server.host}:{server.port}?timeout=5"
        app.config["SLUICE_SETTINGS"] = dataclasses.replace(settings, smtp_url=url)
    runner = CliRunner()
    return runner.invoke(build_cli(), list(args), obj=ScriptInfo(create_app=lambda: app))


def test_send_test_delivers_a_marked_message_and_records_nothing(
    app: Flask,
    session: Session,
    clock: FixedClock,
    server: RunningServer,
    setup: Setup,
    runtime: RuntimeSettings,
) -> None:
    transport = SmtpTransport(SmtpSettings(host=server.host, port=server.port, timeout=5))
    try:
        result = send_test(
            session,
            setup.mass_email,
            f"  {TESTER} ",
            None,
            transport,
            clock=clock,
            runtime=runtime,
            settings=app_settings(app),
            secret_key=TEST_SECRET_KEY,
            dkim_key=None,
        )
    finally:
        transport.close()

    assert result.accepted and "queued as TEST00001" in result.reply
    [received] = server.handler.messages
    assert (received.envelope_from, received.recipients) == (
        "bounces@bounce.example.com",
        [TESTER],
    )
    message = message_from_bytes(received.data, policy=policy.default)
    assert message["Subject"] == "[TEST] Ann, spring news from Acme"  # the first recipient
    assert message["X-Sluice-Test"] == "yes"
    assert message["X-Sluice-Queue-Item"] == "0"
    assert nothing_recorded(session)


def test_send_test_refuses_an_invalid_address_before_connecting(
    app: Flask,
    session: Session,
    clock: FixedClock,
    server: RunningServer,
    setup: Setup,
    runtime: RuntimeSettings,
) -> None:
    transport = SmtpTransport(SmtpSettings(host=server.host, port=server.port, timeout=5))
    with pytest.raises(MessageError, match="cannot send a test to 'not an address'"):
        send_test(
            session,
            setup.mass_email,
            "not an address",
            None,
            transport,
            clock=clock,
            runtime=runtime,
            settings=app_settings(app),
            secret_key=TEST_SECRET_KEY,
            dkim_key=None,
        )
    assert server.handler.sessions == 0


def test_the_command_prints_the_relays_reply(
    app: Flask, session: Session, server: RunningServer, setup: Setup
) -> None:
    result = run_cli(
        app,
        server,
        "send-test",
        str(setup.mass_email.id),
        "--to",
        TESTER,
        "--contact",
        str(setup.contact.id),
    )

    assert result.exit_code == 0, result.output
    assert "250" in result.output and "queued as TEST00001" in result.output
    [received] = server.handler.messages
    message = message_from_bytes(received.data, policy=policy.default)
    assert message["Subject"].startswith("[TEST] ")
    assert message["X-Sluice-Test"] == "yes"
    assert nothing_recorded(session)


def test_the_command_exits_non_zero_when_the_relay_refuses_the_recipient(
    app: Flask, session: Session, server: RunningServer, setup: Setup
) -> None:
    server.handler.rcpt_replies[TESTER] = "550 5.1.1 User unknown"

    result = run_cli(app, server, "send-test", str(setup.mass_email.id), "--to", TESTER)

    assert result.exit_code != 0
    assert "550 5.1.1 User unknown" in result.output
    assert server.handler.messages == []
    assert nothing_recorded(session)


def test_the_command_says_to_set_the_smtp_url_when_none_is_configured(
    app: Flask, setup: Setup
) -> None:
    result = run_cli(app, None, "send-test", str(setup.mass_email.id), "--to", TESTER)

    assert result.exit_code != 0
    assert "set SLUICE_SMTP_URL" in result.output


def test_the_command_names_what_stops_the_mass_email(
    app: Flask, session: Session, server: RunningServer, setup: Setup
) -> None:
    setup.campaign.sender_profile_id = None
    session.commit()
    missing = run_cli(app, server, "send-test", "999", "--to", TESTER)
    no_sender = run_cli(app, server, "send-test", str(setup.mass_email.id), "--to", TESTER)

    assert missing.exit_code != 0 and "no mass email with id 999" in missing.output
    assert no_sender.exit_code != 0 and "has no sender profile" in no_sender.output
    assert server.handler.messages == []
