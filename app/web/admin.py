"""Blueprint ``admin`` (``/admin``): settings, users and jobs. Every request
to it, GET or POST, is refused with 403 unless the user is an
administrator (``require_role`` before any view runs)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from app import app_settings
from app.context import SmtpNotConfigured, app_clock, app_transport_factory
from app.extensions import current_session
from app.models import PasswordLinkKind, Role, User
from app.services import job_runs
from app.services.password_links import (
    IssuedLink,
    LinkMail,
    invite_user,
    link_for_user,
    pending_links,
    send_link_mail,
)
from app.services.runtime_settings import (
    SPECS,
    RuntimeSettings,
    SettingsValidationError,
    get_runtime_settings,
    update_runtime_settings,
)
from app.services.time_zones import parse_time_zone
from app.services.troubleshooting import checklist
from app.services.users import (
    NewPassword,
    UserError,
    change_role,
    create_user,
    get_user,
    list_users,
    reset_password,
    set_active,
)
from app.web.access import require_role, web_user
from app.web.checks import (
    bounce_mailbox_check,
    describe_mailbox,
    describe_relay,
    live_checks,
    smtp_check,
)
from app.web.formatting import default_zone
from jobs.scheduler import JOB_IDS, JOBS

admin = Blueprint("admin", __name__, url_prefix="/admin")


@admin.before_request
def _admins_only() -> None:
    require_role(Role.ADMIN)


# ------------------------------------------------------------------ settings

FLAG_KEYS = frozenset(f.name for f in fields(RuntimeSettings) if f.type in ("bool", bool))
NUMERIC_KEYS = frozenset(f.name for f in fields(RuntimeSettings) if f.type in ("int", int))
LONG_TEXT_KEYS = frozenset({"postal_address"})
SETTINGS_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Sending",
        (
            "max_per_hour",
            "batch_size",
            "tick_interval_seconds",
            "smtp_connections",
            "max_attempts",
            "retry_base_seconds",
            "lease_seconds",
        ),
    ),
    (
        "Links, tracking and the footer",
        ("site_url", "company_name", "postal_address", "mandatory_opt_out", "open_tracking"),
    ),
    (
        "Bounces",
        (
            "verp_enabled",
            "bounce_domain",
            "soft_bounce_threshold",
            "soft_bounce_window_days",
            "bounce_poll_interval_seconds",
        ),
    ),
    (
        "Per-domain pacing",
        (*(key for key in SPECS if key.startswith("pace_")), "throttle_seconds"),
    ),
)
FROZEN_WHEN_SCHEDULED = (
    "Mass emails already scheduled or sent keep the value they were scheduled with."
)
HINTS = {
    "max_per_hour": "Across all campaigns and runners, in any 60 minutes.",
    "site_url": "The base of every tracking and opt-out link, e.g. https://mail.example.com",
    # The footer and tracking settings are frozen in a mass email's snapshot
    # when it is scheduled (app.services.snapshots): say so where they change.
    "company_name": "Shown in every email's footer. " + FROZEN_WHEN_SCHEDULED,
    "postal_address": "Shown in every email's footer (CAN-SPAM: a valid physical postal address). "
    + FROZEN_WHEN_SCHEDULED,
    "bounce_domain": "With VERP on, bounces come back to addresses at this domain.",
    "mandatory_opt_out": "Every mass email must contain an opt-out link. " + FROZEN_WHEN_SCHEDULED,
    "open_tracking": "Adds a tracking pixel; opens are personal data. " + FROZEN_WHEN_SCHEDULED,
}
assert {key for _, keys in SETTINGS_SECTIONS for key in keys} == set(SPECS)


def _form_values(runtime: RuntimeSettings) -> dict[str, Any]:
    return {key: getattr(runtime, key) for key in SPECS}


def _render_settings(
    values: dict[str, Any], errors: dict[str, str], status: int = 200, **extra: Any
) -> tuple[str, int]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    page = render_template(
        "ui/admin/settings.html",
        sections=SETTINGS_SECTIONS,
        specs=SPECS,
        hints=HINTS,
        flag_keys=FLAG_KEYS,
        numeric_keys=NUMERIC_KEYS,
        long_text_keys=LONG_TEXT_KEYS,
        values=values,
        errors=errors,
        relay=describe_relay(app),
        mailbox=describe_mailbox(app),
        **extra,
    )
    return page, status


@admin.get("/settings")
def settings() -> tuple[str, int]:
    return _render_settings(_form_values(get_runtime_settings(current_session())), {})


@admin.post("/settings")
def save_settings() -> BaseResponse | tuple[str, int]:
    store = current_session()
    before = _form_values(get_runtime_settings(store))
    changes: dict[str, object] = {
        key: ("on" if key in request.form else "off")
        if key in FLAG_KEYS
        else request.form.get(key, "")
        for key in SPECS
    }
    try:
        after = update_runtime_settings(store, changes, app_clock(current_app))
    except SettingsValidationError as error:
        store.rollback()
        flash(
            f"Nothing was saved: {len(error.errors)} field(s) need correcting (marked below).",
            "error",
        )
        return _render_settings(changes, error.errors, 400)
    store.commit()
    changed = [key for key, value in _form_values(after).items() if before[key] != value]
    if changed:
        flash(f"Settings saved: {', '.join(SPECS[key].label for key in changed)}.", "success")
    else:
        flash("Nothing to save: the settings are unchanged.", "info")
    return redirect(url_for("admin.settings"))


@admin.post("/settings/test-smtp")
def test_smtp() -> tuple[str, int]:
    result = smtp_check(current_app._get_current_object())  # type: ignore[attr-defined]
    if result.ok:
        flash("The SMTP relay accepted the connection.", "success")
    else:
        flash(f"SMTP relay test: {result.summary}", "error")
    values = _form_values(get_runtime_settings(current_session()))
    return _render_settings(values, {}, smtp_result=result)


@admin.post("/settings/test-mailbox")
def test_mailbox() -> tuple[str, int]:
    result = bounce_mailbox_check(current_app._get_current_object())  # type: ignore[attr-defined]
    if result.ok:
        flash("The bounce mailbox accepted the log-in.", "success")
    else:
        flash(f"Bounce mailbox test: {result.summary}", "error")
    values = _form_values(get_runtime_settings(current_session()))
    return _render_settings(values, {}, mailbox_result=result)


# --------------------------------------------------------------------- users


def _render_users(
    errors: dict[str, str] | None = None,
    new_password: NewPassword | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    store, clock = current_session(), app_clock(current_app)
    page = render_template(
        "ui/admin/users.html",
        users=list_users(store),
        links=pending_links(store, clock),
        now=clock.now(),
        me=web_user(),
        roles=list(Role),
        errors=errors or {},
        new_password=new_password,
        form=form or {"email": "", "role": Role.MARKETER.value},
    )
    return page, status


@dataclass(frozen=True)
class MailOutcome:
    sent: bool
    text: str  # the relay's answer, or why nothing reached it


def _mail_link(user: User, issued: IssuedLink) -> MailOutcome:
    """Mail ``issued``'s link to ``user`` through the relay Send Test uses."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        factory = app_transport_factory(app)
    except SmtpNotConfigured as error:
        return MailOutcome(False, str(error))
    store = current_session()
    try:
        site_url = get_runtime_settings(store).site_url
    except LookupError:
        site_url = app_settings(app).site_url
    url = site_url.rstrip("/") + url_for("ui.set_password", token=issued.token)
    sender = web_user().email
    mail = LinkMail(
        from_address=app_settings(app).system_email_from or sender,
        reply_to=sender,
        sent_by=sender,
        site_url=site_url,
        zone=default_zone(app) if user.time_zone is None else parse_time_zone(user.time_zone),
    )
    transport = factory()
    try:
        result = send_link_mail(transport, user, issued, url, mail, clock=app_clock(app))
    finally:
        transport.close()
    return MailOutcome(result.accepted, f"{result.code or '---'} {result.reply}".strip())


def _role(value: str) -> Role | None:
    try:
        return Role(value)
    except ValueError:
        return None


@admin.get("/users")
def users() -> tuple[str, int]:
    return _render_users()


@admin.post("/users")
def create() -> tuple[str, int]:
    form = {"email": request.form.get("email", "")[:320], "role": request.form.get("role", "")}
    role = _role(form["role"])
    if role is None:
        return _not_created({"role": "choose admin or marketer"}, form)
    if request.form.get("how") == "password":
        return _create_with_password(form, role)
    store = current_session()
    try:
        issued = invite_user(store, app_clock(current_app), form["email"], role)
    except UserError as error:
        store.rollback()
        return _not_created({error.field or "email": str(error)}, form)
    store.commit()  # the user exists whatever the relay says
    user = get_user(store, issued.link.user_id)
    outcome = _mail_link(user, issued)
    if outcome.sent:
        flash(
            f"User {user.email} created as {role.value}; the invitation was sent. "
            f"The relay answered: {outcome.text}",
            "success",
        )
    else:
        flash(
            f"User {user.email} created as {role.value}, but the invitation was not sent: "
            f"{outcome.text}. Send it again once the relay works, or give them a generated "
            "password with “Reset password”.",
            "error",
        )
    return _render_users()


def _not_created(errors: dict[str, str], form: dict[str, str]) -> tuple[str, int]:
    flash("The user was not created: see the fields marked below.", "error")
    return _render_users(errors, form=form, status=400)


def _create_with_password(form: dict[str, str], role: Role) -> tuple[str, int]:
    """The fallback without mail: a generated password shown once."""
    store = current_session()
    try:
        created = create_user(store, app_clock(current_app), form["email"], role)
    except UserError as error:
        store.rollback()
        return _not_created({error.field or "email": str(error)}, form)
    store.commit()
    flash(f"User {created.user.email} created as {role.value}.", "success")
    return _render_users(new_password=created)


@admin.post("/users/<int:user_id>/send-link")
def send_link(user_id: int) -> BaseResponse:
    """Mail a new invitation or password link (replacing any pending one)."""
    try:
        kind = PasswordLinkKind(request.form.get("kind", ""))
    except ValueError:
        flash("Not done: choose an invitation or a password link.", "error")
        return redirect(url_for("admin.users"))
    store = current_session()
    try:
        issued = link_for_user(store, app_clock(current_app), user_id, kind)
    except UserError as error:
        store.rollback()
        flash(f"Not done: {error}.", "error")
        return redirect(url_for("admin.users"))
    store.commit()
    user = get_user(store, user_id)
    what = "invitation" if kind is PasswordLinkKind.INVITATION else "password link"
    outcome = _mail_link(user, issued)
    if outcome.sent:
        flash(
            f"A new {what} was sent to {user.email}. The relay answered: {outcome.text}.", "success"
        )
    else:
        flash(f"The {what} to {user.email} was not sent: {outcome.text}", "error")
    return redirect(url_for("admin.users"))


def _user_action(message: str, action: Any) -> BaseResponse:
    store = current_session()
    try:
        user = action(store)
    except UserError as error:
        store.rollback()
        flash(f"Not done: {error}.", "error")
    else:
        store.commit()
        flash(message.format(email=user.email), "success")
    return redirect(url_for("admin.users"))


@admin.post("/users/<int:user_id>/role")
def set_role(user_id: int) -> BaseResponse:
    role = _role(request.form.get("role", ""))
    if role is None:
        flash("Not done: choose admin or marketer.", "error")
        return redirect(url_for("admin.users"))
    return _user_action(
        f"{{email}} is now {'an' if role == Role.ADMIN else 'a'} {role.value}.",
        lambda store: change_role(store, user_id, role),
    )


@admin.post("/users/<int:user_id>/deactivate")
def deactivate(user_id: int) -> BaseResponse:
    acting = web_user().id
    return _user_action(
        "{email} is deactivated: they can no longer log in.",
        lambda store: set_active(store, acting, user_id, False),
    )


@admin.post("/users/<int:user_id>/activate")
def activate(user_id: int) -> BaseResponse:
    acting = web_user().id
    return _user_action(
        "{email} is active again.", lambda store: set_active(store, acting, user_id, True)
    )


@admin.post("/users/<int:user_id>/reset-password")
def reset(user_id: int) -> BaseResponse | tuple[str, int]:
    store = current_session()
    try:
        done = reset_password(store, user_id)
    except UserError as error:
        store.rollback()
        flash(f"Not done: {error}.", "error")
        return redirect(url_for("admin.users"))
    store.commit()
    flash(f"{done.user.email} has a new password; their sessions have ended.", "success")
    return _render_users(new_password=done)


# ---------------------------------------------------------------------- jobs


@admin.get("/jobs")
def jobs() -> str:
    store = current_session()
    clock = app_clock(current_app)
    now = clock.now()
    job_states = job_runs.job_states(store, clock, JOB_IDS)
    runners = job_runs.runners(store, clock)
    try:
        site_url = get_runtime_settings(store).site_url
    except LookupError:
        site_url = ""
    checks = live_checks(current_app._get_current_object(), site_url)  # type: ignore[attr-defined]
    return render_template(
        "ui/admin/jobs.html",
        jobs=job_states,
        descriptions={spec.id: spec.description for spec in JOBS},
        runners=runners,
        now=now,
        checklist=checklist(
            smtp=checks.smtp,
            runners=runners,
            jobs=job_states,
            job_ids=JOB_IDS,
            site=checks.site,
            mailbox=checks.mailbox,
            now=now,
        ),
    )
