"""Web blueprints: ``ui`` (marketers and administrators), ``public``
(tracking, opt-out and view-online links; no login, no session, no CSRF
token: exempt it when CSRF protection arrives), later ``api``."""

from flask import Flask

from app.web.public import public
from app.web.ui import ui


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(ui)
    app.register_blueprint(public)
