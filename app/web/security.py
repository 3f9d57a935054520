"""What every response and every state-changing request of the web app goes
through: CSRF protection and the security headers.

Rules:

- **CSRF on every state-changing request** (POST, PUT, PATCH, DELETE),
  checked by Flask-WTF's ``CSRFProtect`` before anything else runs: a form
  carries ``csrf_token`` (a hidden field), a script sends the
  ``X-CSRFToken`` header (the token is in ``<meta name="csrf-token">``).
  A missing or wrong token is a 400 and nothing is changed. Exempt, by
  design: the ``public`` blueprint (opt-out links and RFC 8058 one-click
  POSTs come from mail clients without a session) and the ``webhooks``
  blueprint (relays' callbacks, authenticated by their signatures).
- **Security headers on every response**; where a blueprint set its own
  policy (``public`` and ``dev_mail`` keep their stricter or sandboxed
  ones) only the headers it did not set are added: a Content-Security-Policy that allows scripts and
  styles only from the app's own files (no inline script, no inline
  style, no framing by anyone), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: same-origin`` and ``X-Frame-Options: DENY`` for
  browsers older than ``frame-ancestors``.
- The app's pages (not its static files, not ``public``) are
  ``Cache-Control: no-store``: a shared computer's back button must not
  show them after log-out.
"""

from __future__ import annotations

from flask import Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect

csrf = CSRFProtect()

CSRF_EXEMPT_BLUEPRINTS = frozenset({"public", "webhooks"})

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def csrf_exempt() -> bool:
    """Whether this request is exempt from the CSRF check (see the rules)."""
    return request.blueprint in CSRF_EXEMPT_BLUEPRINTS


def _check_csrf() -> None:
    if not csrf_exempt():
        csrf.protect(apply_exemptions=True)


def _security_headers(response: Response) -> Response:
    if "Content-Security-Policy" in response.headers:
        # A blueprint's own policy (public, dev_mail) decides about framing:
        # the caught mail's HTML part is framed by our own page.
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    else:
        response.headers.update(SECURITY_HEADERS)
    if request.endpoint != "static" and request.blueprint not in CSRF_EXEMPT_BLUEPRINTS:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _csrf_failed(error: CSRFError) -> tuple[str, int]:
    return render_template("ui/csrf_error.html", reason=error.description), 400


def init_security(app: Flask) -> None:
    """CSRF protection and security headers for ``app`` (see the rules).
    Registered before any other ``before_request``: a forged request is
    refused before it is even looked at."""
    app.config.update(WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_TIME_LIMIT=None)
    csrf.init_app(app)
    app.before_request(_check_csrf)
    app.after_request(_security_headers)
    app.register_error_handler(CSRFError, _csrf_failed)
