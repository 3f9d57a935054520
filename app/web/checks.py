"""The connection checks as the admin pages run them, with the app's
configuration: the SMTP relay, the site URL, the bounce mailbox."""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import Flask

from app import app_settings
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


# --- Slot for the bounce mailbox check (issue 7) ----------------------------
# LEAD: the IMAP check is ``app.services.bounce_poll.test_connection``, written
# with the bounce pipeline. Until that function exists this reports "not
# available yet"; once it does, adapt the call below to its signature and
# turn its answer into a ``CheckResult`` (ok, the server's exact answer).
BOUNCE_POLL_MODULE = "app.services.bounce_poll"


def bounce_mailbox_check(app: Flask) -> CheckResult:
    try:
        module = importlib.import_module(BOUNCE_POLL_MODULE)
    except ModuleNotFoundError:
        module = None
    test_connection = getattr(module, "test_connection", None)
    if test_connection is None:
        return CheckResult(None, "not available yet: the bounce mailbox check is not installed")
    imap_url = app_settings(app).imap_url
    if not imap_url:
        return CheckResult(None, "no bounce mailbox is configured: set SLUICE_IMAP_URL")
    result = test_connection(imap_url)
    if isinstance(result, CheckResult):
        return result
    ok = getattr(result, "ok", None)
    return CheckResult(
        ok if isinstance(ok, bool) else None, str(getattr(result, "summary", result))
    )


# -----------------------------------------------------------------------------


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
