"""Connection checks for the administrator's "test connection" buttons and
the jobs page's troubleshooting checklist: each reports what the other side
answered, word for word, so a person can act on it.

Rules:

- **The server's exact answer.** Every SMTP reply is kept as ``code text``
  in the transcript (greeting, EHLO, STARTTLS, AUTH, NOOP); a failure names
  the step and quotes the reply or the network error. The password is never
  part of any text.
- **Nothing is sent.** The SMTP check ends with NOOP and QUIT; it never
  says MAIL FROM, so it cannot send or count against the quota.
- **Short timeouts.** A check waits at most ``CHECK_TIMEOUT_SECONDS`` for
  each step, so a page that runs it is never stuck for the transport's
  sending timeout.
- The site URL check fetches ``<site URL>/healthz`` (the app's own health
  page) and passes only when it answers 200 with ``"status": "ok"``: a
  reachable host that is not this Sluice does not pass.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, replace

from app.services.transport import Security, SmtpSettings, default_ssl_context

CHECK_TIMEOUT_SECONDS = 8.0
MAX_ANSWER = 500


@dataclass(frozen=True)
class CheckResult:
    """``ok`` None: the check could not run (not configured, not available)."""

    ok: bool | None
    summary: str
    transcript: tuple[str, ...] = ()


def _answer(code: int, text: bytes | str) -> str:
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(decoded.split())}"[:MAX_ANSWER]


class _Transcript:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, step: str, reply: tuple[int, bytes | str]) -> None:
        self.lines.append(f"{step}: {_answer(*reply)}")

    def failed(self, summary: str) -> CheckResult:
        return CheckResult(False, summary[:MAX_ANSWER], tuple(self.lines))


def check_smtp(settings: SmtpSettings, ssl_context: ssl.SSLContext | None = None) -> CheckResult:
    """Connect to the relay as the dispatcher would (TLS and AUTH as
    configured), then NOOP and QUIT; see the module's rules."""
    settings = replace(settings, timeout=min(settings.timeout, CHECK_TIMEOUT_SECONDS))
    context = ssl_context or default_ssl_context()
    transcript = _Transcript()
    where = f"{settings.host}:{settings.port}"
    connection: smtplib.SMTP = (
        smtplib.SMTP_SSL(timeout=settings.timeout, context=context)
        if settings.security is Security.TLS
        else smtplib.SMTP(timeout=settings.timeout)
    )
    # Made without a host so that connect() hands back the greeting; TLS
    # checks the certificate against ``_host``, which only the constructor sets.
    connection._host = settings.host  # type: ignore[attr-defined]
    step = "connect"
    try:
        transcript.add("greeting", connection.connect(settings.host, settings.port))
        step = "EHLO"
        transcript.add(step, connection.ehlo())
        if settings.security is Security.STARTTLS:
            step = "STARTTLS"
            transcript.add(step, connection.starttls(context=context))
            transcript.add("EHLO", connection.ehlo())
        if settings.username:
            step = "AUTH"
            transcript.add(step, connection.login(settings.username, settings.password))
        step = "NOOP"
        transcript.add(step, connection.noop())
    except smtplib.SMTPResponseException as error:
        transcript.add(step, (error.smtp_code, error.smtp_error))
        return transcript.failed(
            f"{where} refused at {step}: {_answer(error.smtp_code, error.smtp_error)}"
        )
    except (smtplib.SMTPException, OSError) as error:
        return transcript.failed(f"{where} at {step}: {_error_text(error)}")
    finally:
        _quit(connection)
    return CheckResult(
        True, f"{where} accepted the connection: {transcript.lines[-1]}", tuple(transcript.lines)
    )


def _error_text(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} seconds"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _quit(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        connection.close()


def check_site_url(site_url: str, timeout: float = CHECK_TIMEOUT_SECONDS) -> CheckResult:
    """GET ``<site_url>/healthz`` from this server; see the module's rules."""
    url = f"{site_url.rstrip('/')}/healthz"
    if not url.startswith(("http://", "https://")):
        return CheckResult(False, f"{url}: the site URL must start with http:// or https://")
    # S310: only http:// and https:// get here (checked above).
    request = urllib.request.Request(url, headers={"User-Agent": "Sluice site URL check"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = response.status
            body = response.read(4096)
    except urllib.error.HTTPError as error:
        return CheckResult(False, f"{url} answered {error.code} {error.reason}")
    except (urllib.error.URLError, OSError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        text = _error_text(reason) if isinstance(reason, BaseException) else str(reason)
        return CheckResult(False, f"{url} is not reachable: {text}")
    try:
        healthy = json.loads(body).get("status") == "ok"
    except (ValueError, AttributeError):
        healthy = False
    if status != 200 or not healthy:
        return CheckResult(False, f"{url} answered {status} but is not Sluice's health page")
    return CheckResult(True, f"{url} answered {status} OK")
