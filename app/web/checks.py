"""The connection checks as the admin pages run them, with the app's
configuration: the SMTP relay, the site URL, the bounce mailbox."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import Flask

from app import app_settings
from app.services.bounce_poll import test_connection
from app.services.connection_checks import CheckResult, check_site_url, check_smtp
from app.services.transport import SmtpSettings, parse_smtp_url


@dataclass(frozen=True)
class RelayDescription:
    """The relay as the settings page shows it: never the password."""

    configured: bool
    problem: str = ""
    host: str = ""
    port: int = 0
    security: str = ""
    username: str = ""


def smtp_settings(app: Flask) -> SmtpSettings | str:
    """The relay's settings, or why there are none."""
    url = app_settings(app).smtp_url
    if not url:
        return "no SMTP relay is configured: set SLUICE_SMTP_URL"
    try:
        return parse_smtp_url(url)
    except ValueError as error:
        return f"SLUICE_SMTP_URL: {error}"


def describe_relay(app: Flask) -> RelayDescription:
    settings = smtp_settings(app)
    if isinstance(settings, str):
        return RelayDescription(False, settings)
    return RelayDescription(
        True, "", settings.host, settings.port, settings.security.value, settings.username
    )


def smtp_check(app: Flask) -> CheckResult:
    settings = smtp_settings(app)
    if isinstance(settings, str):
        return CheckResult(None, settings)
    return check_smtp(settings)


def describe_mailbox(app: Flask) -> str:
    """The bounce mailbox's URL without its password, or why there is none."""
    url = app_settings(app).imap_url
    if not url:
        return ""
    scheme, _, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}{at}{location}" if at else url


def bounce_mailbox_check(app: Flask) -> CheckResult:
    """Log in to the bounce mailbox and look at its folder (changing
    nothing): the server's own words, step by step."""
    imap_url = app_settings(app).imap_url
    if not imap_url:
        return CheckResult(None, "no bounce mailbox is configured: set SLUICE_IMAP_URL")
    report = test_connection(imap_url)
    if report.ok:
        summary = f"logged in; {report.folder}: {report.message_count} message(s)"
    else:
        summary = f"failed at {report.failed_step}: {report.error}"
    return CheckResult(report.ok, summary, tuple(report.lines()))


@dataclass(frozen=True)
class LiveChecks:
    smtp: CheckResult
    site: CheckResult
    mailbox: CheckResult


def live_checks(app: Flask, site_url: str) -> LiveChecks:
    """Run the three network checks at once (each has a short timeout)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        smtp = pool.submit(smtp_check, app)
        site = pool.submit(check_site_url, site_url)
        mailbox = pool.submit(bounce_mailbox_check, app)
        return LiveChecks(smtp.result(), site.result(), mailbox.result())
