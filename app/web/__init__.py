"""Web blueprints: ``ui`` (log-in, dashboard, account), ``admin``
(settings, users, jobs; administrators only), ``public`` (tracking, opt-out
and view-online links; no login, no session, no CSRF token), ``dev_mail``
(the development mail catcher's messages, active only when ``sluice run``
set its folder), ``webhooks`` (relays' delivery events; no session, no
CSRF token: signed requests), ``contacts``, ``lists`` and ``suppression``
(the marketer's contacts, CSV import, target lists and suppression list),
later ``api``.

``init_web`` wires them with what every page relies on, in this order:
CSRF protection and security headers (``security``), log-in and roles
(``access``), the navigation (``navigation``) and the template filters
(``formatting``). How to add a page: ``docs/web-ui.md``.
"""

from flask import Flask

from app import app_settings
from app.web.access import init_access
from app.web.admin import admin
from app.web.campaigns import campaigns
from app.web.contacts import REQUEST_MAX_BYTES, contacts
from app.web.dev_mail import dev_mail
from app.web.formatting import init_formatting
from app.web.lists import lists
from app.web.navigation import init_navigation
from app.web.public import public
from app.web.results import results
from app.web.security import init_security
from app.web.suppression import suppression
from app.web.templates_ui import email_templates
from app.web.ui import ui
from app.web.uploads import LARGE_UPLOAD_CONFIG_KEY, SluiceRequest
from app.web.webhooks import webhooks

MEGABYTE = 1024 * 1024


def init_web(app: Flask, *, secure_cookies: bool) -> None:
    # No request body is bigger than a contacts CSV upload (werkzeug refuses
    # it with 413 before anything reads it; the public blueprint and the
    # webhooks set lower limits of their own).
    if app.config.get("MAX_CONTENT_LENGTH") is None:  # Flask's default: no limit
        app.config["MAX_CONTENT_LENGTH"] = REQUEST_MAX_BYTES
    # The contacts import takes files up to its own maximum (app/web/uploads.py).
    app.request_class = SluiceRequest
    app.config.setdefault(
        LARGE_UPLOAD_CONFIG_KEY, app_settings(app).import_max_megabytes * MEGABYTE + MEGABYTE
    )
    init_security(app)
    init_access(app, secure_cookies)
    init_navigation(app)
    init_formatting(app)
    app.register_blueprint(ui)
    app.register_blueprint(admin)
    app.register_blueprint(contacts)
    app.register_blueprint(lists)
    app.register_blueprint(suppression)
    app.register_blueprint(public)
    app.register_blueprint(dev_mail)
    app.register_blueprint(webhooks)
    app.register_blueprint(email_templates)
    app.register_blueprint(campaigns)
    app.register_blueprint(results)
