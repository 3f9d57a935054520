"""Web blueprints: ``ui`` (marketers and administrators), ``public``
(tracking, opt-out and view-online links; no login, no session, no CSRF
token: exempt it when CSRF protection arrives), ``dev_mail`` (the
development mail catcher's messages, active only when ``sluice run`` set
its folder), ``webhooks`` (relays' delivery events; no session, no CSRF
token: signed requests), later ``api``."""

from flask import Flask

from app.web.dev_mail import dev_mail
from app.web.public import public
from app.web.ui import ui
from app.web.webhooks import webhooks


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(ui)
    app.register_blueprint(public)
    app.register_blueprint(dev_mail)
    app.register_blueprint(webhooks)
