"""Blueprint ``ui``: log-in, log-out, the dashboard and the user's own
account, for every role. Views are thin: each calls a service, flashes
what happened and redirects (POST/redirect/GET)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from sqlalchemy import text
from werkzeug.wrappers import Response as BaseResponse

from app.context import app_clock
from app.extensions import current_session, db
from app.services import login_throttle
from app.services.dashboard import Dashboard
from app.services.dashboard import dashboard as dashboard_figures
from app.services.durations import format_duration
from app.services.overview import database_overview
from app.services.runtime_settings import get_runtime_settings
from app.services.users import (
    MIN_PASSWORD_LENGTH,
    UserError,
    authenticate,
    change_own_password,
    login_key,
)
from app.web.access import public_endpoint, safe_next, signed_in, web_user
from app.web.formatting import format_time

ui = Blueprint("ui", __name__)

WRONG_CREDENTIALS = "Wrong email address or password."


@ui.get("/healthz")
@public_endpoint
def healthz() -> dict[str, str]:
    db.session.execute(text("SELECT 1"))
    return {"status": "ok"}


def _client_ip() -> str:
    # Behind a reverse proxy, configure it to pass the client's address
    # (werkzeug's ProxyFix); otherwise every visitor shares the proxy's.
    return request.remote_addr or "unknown"


@ui.route("/login", methods=["GET", "POST"])
@public_endpoint
def login() -> str | BaseResponse | tuple[str, int]:
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    if request.method == "GET":
        return render_template("ui/login.html", email="", error=None)
    email = request.form.get("email", "")[:320]
    password = request.form.get("password", "")
    store, clock, ip, key = (
        current_session(),
        app_clock(current_app),
        _client_ip(),
        login_key(email),
    )
    refused = login_throttle.refusal(store, clock, key, ip)
    if refused is not None:
        return render_template("ui/login.html", email=email, error=refused.message), 429
    user = authenticate(store, email, password)
    login_throttle.record_attempt(store, clock, key, ip, succeeded=user is not None)
    store.commit()
    if user is None:
        return render_template("ui/login.html", email=email, error=WRONG_CREDENTIALS), 401
    session.clear()  # a fresh session: nothing from before the log-in survives
    login_user(signed_in(user))
    session.permanent = True
    flash(f"Logged in as {user.email}.", "success")
    return redirect(safe_next(request.args.get("next")))


@ui.post("/logout")
def logout() -> BaseResponse:
    logout_user()
    session.clear()
    flash("You are logged out.", "success")
    return redirect(url_for("ui.login"))


@ui.get("/")
def dashboard() -> str:
    return render_template(
        "ui/dashboard.html",
        overview=database_overview(current_session()),
        figures=_figures(),
        now=app_clock(current_app).now(),
        live_interval=LIVE_INTERVAL_SECONDS,
    )


LIVE_INTERVAL_SECONDS = 5


def live_figures(figures: Dashboard | None, now: datetime) -> dict[str, Any]:
    """The dashboard's changing figures as ``dashboard.js`` shows them:
    texts formatted here, so the page and its updates read the same."""
    if figures is None:
        return {"ready": False}
    return {
        "ready": True,
        "interval_seconds": LIVE_INTERVAL_SECONDS,
        "as_of": format_time(now),
        "quota": {
            "used": figures.quota_used,
            "max": figures.max_per_hour,
            "frees_at": (format_time(figures.quota_frees_at) if figures.quota_frees_at else None),
        },
        "sending": [
            {
                "id": progress.mass_email_id,
                "status": progress.status.value.replace("_", " "),
                "done": progress.total - progress.remaining,
                "total": progress.total,
                "eta": (
                    f"{format_time(progress.eta)} "
                    f"(in {format_duration((progress.eta - now).total_seconds())})"
                    if progress.eta
                    else "—"
                ),
            }
            for progress in figures.sending
        ],
        "more_sending": figures.more_sending,
    }


def _figures() -> Dashboard | None:
    store = current_session()
    try:
        runtime = get_runtime_settings(store)
    except LookupError:
        return None
    return dashboard_figures(store, app_clock(current_app), runtime)


@ui.get("/dashboard/live")
def dashboard_live() -> BaseResponse:
    """The figures ``dashboard.js`` refreshes the dashboard with."""
    return jsonify(live_figures(_figures(), app_clock(current_app).now()))


@ui.route("/account", methods=["GET", "POST"])
def account() -> str | BaseResponse | tuple[str, int]:
    errors: dict[str, str] = {}
    if request.method == "POST":
        store = current_session()
        new = request.form.get("new_password", "")
        if new != request.form.get("confirm_password", ""):
            errors["confirm_password"] = "does not match the new password"  # noqa: S105
        else:
            try:
                user = change_own_password(
                    store, web_user().id, request.form.get("current_password", ""), new
                )
            except UserError as error:
                store.rollback()
                errors[error.field] = str(error)
            else:
                store.commit()
                # The session id includes the password's fingerprint: renew it.
                login_user(signed_in(user))
                flash("Your password is changed.", "success")
                return redirect(url_for("ui.account"))
        flash("Your password was not changed: see the fields marked below.", "error")
    return render_template("ui/account.html", errors=errors, min_length=MIN_PASSWORD_LENGTH), (
        400 if errors else 200
    )
