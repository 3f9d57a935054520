"""What jobs and commands take from the Flask app to call the dispatcher
and bounce services: the clock, the message configuration, the SMTP
transport and the bounce message handler.

Kept out of ``app/services`` (which never see Flask) and shared by the CLI
and the job runner so both send exactly the same way.
"""

from __future__ import annotations

import os
import socket
import uuid

from flask import Flask
from sqlalchemy.orm import Session

from app import app_dkim_key, app_settings
from app.clock import Clock, SystemClock
from app.models.queue import RUNNER_ID_MAX_LENGTH
from app.services.bounce_poll import MessageHandler
from app.services.bounces import ProcessedMessage, process_message
from app.services.dispatch_send import MessageConfig
from app.services.transport import SmtpTransport, Transport, parse_smtp_url
from app.services.transport_pool import TransportFactory

# Tests may put a FixedClock here; otherwise the system clock.
CLOCK_CONFIG_KEY = "SLUICE_CLOCK"
SMTP_URL_EXAMPLE = "smtp://user:password@relay.example.com:587?starttls=1"


class SmtpNotConfigured(ValueError):
    """``SLUICE_SMTP_URL`` is missing or malformed; says how to fix it."""


def app_clock(app: Flask) -> Clock:
    clock = app.config.get(CLOCK_CONFIG_KEY)
    return clock if clock is not None else SystemClock()


def app_message_config(app: Flask) -> MessageConfig:
    return MessageConfig(app_settings(app), str(app.config["SECRET_KEY"]), app_dkim_key(app))


def app_transport_factory(app: Flask) -> TransportFactory:
    """A factory of transports to the relay of ``SLUICE_SMTP_URL``; raises
    ``SmtpNotConfigured`` when it is missing or bad."""
    smtp_url = app_settings(app).smtp_url
    if not smtp_url:
        raise SmtpNotConfigured(
            f"no SMTP relay is configured: set SLUICE_SMTP_URL (e.g. {SMTP_URL_EXAMPLE})"
        )
    try:
        smtp = parse_smtp_url(smtp_url)
    except ValueError as error:
        raise SmtpNotConfigured(f"SLUICE_SMTP_URL: {error}") from None

    def transport_factory() -> Transport:
        return SmtpTransport(smtp)

    return transport_factory


def app_bounce_handler(app: Flask, clock: Clock) -> MessageHandler:
    """What the bounce poller applies each message with: the bounce
    service's ``process_message`` bound to this app's clock, secret key
    and settings."""
    secret_key = str(app.config["SECRET_KEY"])
    settings = app_settings(app)

    def handle(session: Session, raw: bytes) -> ProcessedMessage:
        return process_message(session, raw, clock=clock, secret_key=secret_key, settings=settings)

    return handle


def runner_id() -> str:
    """A new runner id for claims and job runs: host, process id and a
    random part (a restarted process on the same host is another runner)."""
    suffix = f":{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return socket.gethostname()[: RUNNER_ID_MAX_LENGTH - len(suffix)] + suffix
