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

from app import app_settings
from app.context import app_clock
from app.extensions import current_session, db
from app.services import login_throttle
from app.services.dashboard import Dashboard
from app.services.dashboard import dashboard as dashboard_figures
from app.services.durations import format_duration
from app.services.overview import database_overview
from app.services.password_links import (
    LinkProblem,
    LinkRefused,
    set_password_with_link,
    usable_link,
)
from app.services.runtime_settings import get_runtime_settings
from app.services.time_zones import MAX_NAME_LENGTH, time_zone_names
from app.services.users import (
    MIN_PASSWORD_LENGTH,
    UserError,
    authenticate,
    change_own_password,
    login_key,
    set_time_zone,
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


# The rate limit's account key for links that match nothing (only the
# per-IP count is consulted for them).
BAD_LINK_KEY = "(password link)"
REFUSED_LINK_STATUS = {
    LinkProblem.UNKNOWN: 404,
    LinkProblem.USED: 410,
    LinkProblem.REPLACED: 410,
    LinkProblem.EXPIRED: 410,
    LinkProblem.INACTIVE: 403,
}


def _refused_link(refusal: LinkRefused) -> tuple[str, int]:
    page = render_template(
        "ui/password_link_refused.html", problem=refusal.problem.value, link=refusal.link
    )
    return page, REFUSED_LINK_STATUS[refusal.problem]


@ui.route("/password/<token>", methods=["GET", "POST"])
@public_endpoint
def set_password(token: str) -> BaseResponse | tuple[str, int]:
    """The page of an invitation or reset link: set a password, once."""
    store, clock, ip = current_session(), app_clock(current_app), _client_ip()
    refused = login_throttle.ip_refusal(store, clock, ip)
    if refused is not None:
        return render_template("ui/password_link_refused.html", throttled=refused.message), 429
    try:
        link, user = usable_link(store, clock, token)
    except LinkRefused as refusal:
        if refusal.problem is LinkProblem.UNKNOWN:
            # Guessing links costs attempts as guessing passwords does.
            login_throttle.record_attempt(store, clock, BAD_LINK_KEY, ip, succeeded=False)
            store.commit()
        return _refused_link(refusal)
    errors: dict[str, str] = {}
    if request.method == "POST":
        password = request.form.get("password", "")
        if password != request.form.get("confirm_password", ""):
            errors["confirm_password"] = "does not match the password"  # noqa: S105
        else:
            try:
                set_password_with_link(store, clock, token, password)
            except LinkRefused as refusal:
                store.rollback()
                return _refused_link(refusal)
            except UserError as error:
                store.rollback()
                errors[error.field] = str(error)
            else:
                store.commit()
                logout_user()
                session.clear()  # whoever was logged in here, the next step is a log-in
                flash(f"Your password is set. Log in as {user.email} with it.", "success")
                return redirect(url_for("ui.login"))
    page = render_template(
        "ui/set_password.html",
        user=user,
        link=link,
        errors=errors,
        min_length=MIN_PASSWORD_LENGTH,
    )
    return page, (400 if errors else 200)


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


def _render_account(errors: dict[str, str], zone_choice: str | None = None) -> tuple[str, int]:
    page = render_template(
        "ui/account.html",
        errors=errors,
        min_length=MIN_PASSWORD_LENGTH,
        zone_names=time_zone_names(),
        zone_choice=(web_user().time_zone or "") if zone_choice is None else zone_choice,
        default_zone=app_settings(current_app).default_time_zone,
    )
    return page, (400 if errors else 200)


@ui.post("/account/time-zone")
def account_time_zone() -> BaseResponse | tuple[str, int]:
    store = current_session()
    choice = request.form.get("time_zone", "")[: MAX_NAME_LENGTH + 1]
    try:
        set_time_zone(store, web_user().id, choice)
    except UserError as error:
        store.rollback()
        flash("Your time zone was not changed: see the field marked below.", "error")
        return _render_account({error.field: str(error)}, choice)
    store.commit()
    shown = choice or f"the site's default, {app_settings(current_app).default_time_zone}"
    flash(f"Times are now shown and read in {shown}.", "success")
    return redirect(url_for("ui.account"))


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
    return _render_account(errors)
