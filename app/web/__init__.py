"""Web blueprints: ``ui`` (log-in, dashboard, account), ``admin``
(settings, users, jobs; administrators only), ``public`` (tracking, opt-out
and view-online links; no login, no session, no CSRF token), ``dev_mail``
(the development mail catcher's messages, active only when ``sluice run``
set its folder), ``webhooks`` (relays' delivery events; no session, no
CSRF token: signed requests), later ``api``.

``init_web`` wires them with what every page relies on, in this order:
CSRF protection and security headers (``security``), log-in and roles
(``access``), the navigation (``navigation``) and the template filters
(``formatting``). How to add a page: ``docs/web-ui.md``.
"""

from flask import Flask

from app.web.access import init_access
from app.web.admin import admin
from app.web.dev_mail import dev_mail
from app.web.formatting import init_formatting
from app.web.navigation import init_navigation
from app.web.public import public
from app.web.results import results
from app.web.security import init_security
from app.web.ui import ui
from app.web.webhooks import webhooks


def init_web(app: Flask, *, secure_cookies: bool) -> None:
    init_security(app)
    init_access(app, secure_cookies)
    init_navigation(app)
    init_formatting(app)
    app.register_blueprint(ui)
    app.register_blueprint(admin)
    app.register_blueprint(public)
    app.register_blueprint(dev_mail)
    app.register_blueprint(webhooks)
    app.register_blueprint(results)
