"""Web blueprints: ``ui`` (marketers and administrators), later ``api`` and
``public`` (tracking and opt-out links)."""

from flask import Flask

from app.web.ui import ui


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(ui)
