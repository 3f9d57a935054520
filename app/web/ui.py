"""The web UI. For now a status page; the pages for marketers and
administrators are built on the services in ``app.services``."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import text

from app.extensions import current_session, db
from app.services.overview import database_overview

ui = Blueprint("ui", __name__)


@ui.get("/")
def index() -> str:
    return render_template("ui/index.html", overview=database_overview(current_session()))


@ui.get("/healthz")
def healthz() -> dict[str, str]:
    db.session.execute(text("SELECT 1"))
    return {"status": "ok"}
