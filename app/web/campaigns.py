"""Blueprint ``campaigns`` (``/campaigns``): campaigns, their mass emails
and the sender profiles, for marketers and administrators.

Views are thin: each calls ``app.services.campaigns`` (editing, copies,
scheduling, status changes), ``preflight``, ``messages`` (preview, Send
Test), ``dispatch`` (retry interrupted) or ``dispatch_status`` (progress),
flashes what happened and redirects (POST/redirect/GET). A refused form is
shown again with every field as typed and the problem next to its field;
the transaction is rolled back, so nothing is half-saved.

Rules kept here:

- **Scheduling** shows the pre-flight's findings first and needs the
  CAN-SPAM box ticked; the service checks both again.
- **Times** are entered and shown in the user's zone
  (``app.web.formatting.display_zone``; ``datetime-local`` fields carry no
  zone, the label names it) and stored in UTC
  (``app.services.time_zones.local_to_utc``: a time the clocks skip is a
  field error, a repeated one is its first occurrence).
- **Deleted** campaigns and mass emails are 404 here, while the links in
  their sent mail keep working (``app/web/public.py`` ignores
  ``deleted_at``).
- **Send Test** goes through the relay of ``SLUICE_SMTP_URL``
  (``app.context.app_transport_factory``) and shows the relay's reply.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from app import app_dkim_key, app_settings
from app.context import SmtpNotConfigured, app_clock, app_transport_factory
from app.extensions import current_session
from app.models import (
    Campaign,
    CampaignType,
    EmailTemplate,
    MassEmail,
    MassEmailStatus,
    QueueItemStatus,
    SenderProfile,
    TargetList,
)
from app.services import campaigns as service
from app.services.campaign_pages import campaigns_page, live_mass_emails
from app.services.campaigns import CampaignError
from app.services.dispatch import DispatchError, retry_interrupted
from app.services.dispatch_status import mass_email_progress
from app.services.mass_email_status import ACTIVE_STATUSES
from app.services.messages import MessageError, mass_email_source, preview, send_test
from app.services.preflight import Finding, preflight
from app.services.rendering import TemplateProblem, TemplateSource
from app.services.template_editor import PLACEHOLDERS, Preview, PreviewContactError, preview_contact
from app.services.time_zones import INPUT_FORMAT, NonexistentLocalTime, input_value, local_to_utc
from app.web.formatting import display_zone, format_time
from app.web.templates_ui import (
    SETTINGS_MISSING,
    after_argument,
    preview_response,
    problem_errors,
    runtime_settings,
)

campaigns = Blueprint("campaigns", __name__, url_prefix="/campaigns")

S = MassEmailStatus
CAMPAIGN_LABELS = {
    "name": "Name",
    "type": "Type",
    "target_list_ids": "Target lists",
    "excluding_list_ids": "Excluding lists",
    "sender_profile_id": "Sender profile",
}
SENDER_LABELS = {
    "name": "Name",
    "from_name": "From name",
    "from_address": "From address",
    "reply_to_address": "Reply-To address",
}
MASS_EMAIL_LABELS = {
    "name": "Name",
    "content": "Content",
    "template_id": "Template",
    "start": "Start",
    "start_at": "Start time",
    "subject": "Subject",
    "body_html": "HTML body",
    "body_text": "Text body",
    "header_logo_url": "Logo URL",
    "footer_html": "Footer text",
    "can_spam_confirmed": "CAN-SPAM confirmation",
    "preflight": "Pre-flight check",
    "mass_email": "Mass email",
    "campaign": "Campaign",
    "status": "Status",
}
CONTENT_FIELDS = ("subject", "body_html", "body_text", "header_logo_url", "footer_html")
STATUS_LABELS = {
    S.DRAFT: "draft",
    S.PENDING: "scheduled",
    S.IN_PROGRESS: "sending",
    S.COMPLETE: "complete",
    S.PAUSED: "paused",
    S.CANCELED: "canceled",
    S.FAILED: "failed",
}
QUEUE_STATUS_ORDER = tuple(QueueItemStatus)


class FormError(ValueError):
    """A form field that cannot even be read; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@campaigns.app_template_global("mass_email_status_label")
def mass_email_status_label(status: MassEmailStatus) -> str:
    return STATUS_LABELS.get(status, str(status))


# ------------------------------------------------------------------ form reading


def _id_list(name: str) -> list[int]:
    values = request.form.getlist(name)
    if len(values) > 10_000 or not all(v.isascii() and v.isdigit() and len(v) < 12 for v in values):
        raise FormError(name, "choose from the list")
    return [int(value) for value in values]


def _optional_id(name: str) -> int | None:
    value = request.form.get(name, "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise FormError(name, "choose from the list")
    return int(value)


def _start(allowed: tuple[str, ...]) -> tuple[datetime | None, bool]:
    """The start chosen in the form: (start_at, send_now)."""
    start = request.form.get("start", "")
    if start not in allowed:
        raise FormError("start", "choose when to start")
    if start == "now":
        return None, True
    if start == "later":
        return None, False
    raw = request.form.get("start_at", "").strip()
    zone = display_zone()
    if not raw:
        raise FormError("start_at", f"give the start time ({zone.key}), or choose another option")
    try:
        parsed = datetime.strptime(raw[:16], INPUT_FORMAT)
    except ValueError:
        raise FormError("start_at", "expected a date and time such as 2026-05-01T09:00") from None
    try:
        start_at = local_to_utc(parsed, zone)
    except NonexistentLocalTime as error:
        raise FormError("start_at", str(error)) from None
    # In the user's zone, so a refusal ("… is in the past") reads in it too.
    return start_at.astimezone(zone), False


def _time_value(value: datetime | None) -> str:
    return "" if value is None else input_value(value, display_zone())


def _fail(store: Any, message: str) -> None:
    store.rollback()
    flash(message, "error")


# ------------------------------------------------------------------ loading


def _campaign(campaign_id: int) -> Campaign:
    campaign = current_session().get(Campaign, campaign_id)
    if campaign is None or campaign.deleted_at is not None:
        abort(404)
    return campaign


def _mass_email(mass_email_id: int) -> MassEmail:
    mass_email = current_session().get(MassEmail, mass_email_id)
    if (
        mass_email is None
        or mass_email.deleted_at is not None
        or mass_email.campaign.deleted_at is not None
    ):
        abort(404)
    return mass_email


def _choices() -> dict[str, Any]:
    store = current_session()
    return {
        "target_lists": store.scalars(select(TargetList).order_by(TargetList.name)).all(),
        "profiles": service.sender_profiles(store),
        "types": list(CampaignType),
    }


# ------------------------------------------------------------------ campaigns


@campaigns.get("")
def campaign_list() -> str:
    return render_template(
        "ui/campaigns/list.html",
        page=campaigns_page(current_session(), after_argument()),
    )


def _campaign_form(campaign: Campaign | None) -> dict[str, Any]:
    if campaign is None:
        return {
            "name": "",
            "type": CampaignType.NEWSLETTER.value,
            "target_list_ids": [],
            "excluding_list_ids": [],
            "sender_profile_id": None,
        }
    return {
        "name": campaign.name,
        "type": campaign.type.value,
        "target_list_ids": [target.id for target in campaign.target_lists],
        "excluding_list_ids": [target.id for target in campaign.excluding_lists],
        "sender_profile_id": campaign.sender_profile_id,
    }


def _render_campaign_form(
    campaign: Campaign | None, form: dict[str, Any], errors: dict[str, str], status: int = 200
) -> tuple[str, int]:
    page = render_template(
        "ui/campaigns/campaign_form.html",
        campaign=campaign,
        form=form,
        errors=errors,
        labels=CAMPAIGN_LABELS,
        **_choices(),
    )
    return page, status


@campaigns.get("/new")
def new_campaign() -> tuple[str, int]:
    return _render_campaign_form(None, _campaign_form(None), {})


@campaigns.get("/<int:campaign_id>/edit")
def edit_campaign(campaign_id: int) -> tuple[str, int]:
    campaign = _campaign(campaign_id)
    return _render_campaign_form(campaign, _campaign_form(campaign), {})


@campaigns.post("/new")
def create_campaign() -> BaseResponse | tuple[str, int]:
    return _save_campaign(None)


@campaigns.post("/<int:campaign_id>/edit")
def update_campaign(campaign_id: int) -> BaseResponse | tuple[str, int]:
    return _save_campaign(_campaign(campaign_id))


def _save_campaign(campaign: Campaign | None) -> BaseResponse | tuple[str, int]:
    store = current_session()
    form: dict[str, Any] = {
        "name": request.form.get("name", ""),
        "type": request.form.get("type", ""),
        "target_list_ids": [],
        "excluding_list_ids": [],
        "sender_profile_id": None,
    }
    try:
        form["target_list_ids"] = _id_list("target_list_ids")
        form["excluding_list_ids"] = _id_list("excluding_list_ids")
        form["sender_profile_id"] = _optional_id("sender_profile_id")
        fields = {key: form[key] for key in CAMPAIGN_LABELS}
        if campaign is None:
            saved = service.create_campaign(store, **fields, clock=app_clock(current_app))
        else:
            saved = service.update_campaign(store, campaign, **fields)
    except (FormError, CampaignError) as error:
        _fail(store, "The campaign was not saved: see the fields marked below.")
        current = None if campaign is None else store.get(Campaign, campaign.id)
        return _render_campaign_form(current, form, {error.field: error.message}, 400)
    store.commit()
    flash(f"Campaign {saved.name!r} saved.", "success")
    return redirect(url_for("campaigns.campaign", campaign_id=saved.id))


@campaigns.get("/<int:campaign_id>")
def campaign(campaign_id: int) -> str:
    found = _campaign(campaign_id)
    store = current_session()
    profile = (
        None
        if found.sender_profile_id is None
        else store.get(SenderProfile, found.sender_profile_id)
    )
    return render_template(
        "ui/campaigns/campaign.html",
        campaign=found,
        profile=profile,
        mass_emails=live_mass_emails(found),
        templates=_templates(),
        form=_mass_email_defaults(None),
        errors={},
        labels=MASS_EMAIL_LABELS,
    )


@campaigns.post("/<int:campaign_id>/copy")
def copy_campaign(campaign_id: int) -> BaseResponse:
    store = current_session()
    try:
        copy = service.copy_campaign(store, _campaign(campaign_id), app_clock(current_app))
    except CampaignError as error:
        _fail(store, f"The campaign was not copied: {error.message}.")
        return redirect(url_for("campaigns.campaign", campaign_id=campaign_id))
    store.commit()
    flash(f"Campaign copied as {copy.name!r}: its settings, not its mass emails.", "success")
    return redirect(url_for("campaigns.campaign", campaign_id=copy.id))


@campaigns.get("/<int:campaign_id>/delete")
def confirm_delete_campaign(campaign_id: int) -> str:
    found = _campaign(campaign_id)
    return render_template(
        "ui/campaigns/delete.html",
        campaign=found,
        mass_email=None,
        active=[m for m in live_mass_emails(found) if m.status in ACTIVE_STATUSES],
    )


@campaigns.post("/<int:campaign_id>/delete")
def delete_campaign(campaign_id: int) -> BaseResponse:
    store = current_session()
    found = _campaign(campaign_id)
    name = found.name
    service.delete_campaign(store, found, app_clock(current_app))
    store.commit()
    flash(
        f"Campaign {name!r} deleted. Links in the mail it sent keep working.",
        "success",
    )
    return redirect(url_for("campaigns.campaign_list"))


@campaigns.post("/<int:campaign_id>/tracking-urls")
def add_tracking_url(campaign_id: int) -> BaseResponse:
    store = current_session()
    found = _campaign(campaign_id)
    name = request.form.get("tracking_name", "")[:200]
    try:
        service.add_tracking_url(
            store, found, name, request.form.get("tracking_url", "")[:4000], app_clock(current_app)
        )
    except CampaignError as error:
        _fail(store, f"The tracking URL was not added: {error.field}: {error.message}.")
    else:
        store.commit()
        flash(f"Tracking URL {name.strip()!r} added.", "success")
    return redirect(url_for("campaigns.campaign", campaign_id=campaign_id) + "#tracking-urls")


@campaigns.post("/<int:campaign_id>/tracking-urls/remove")
def remove_tracking_url(campaign_id: int) -> BaseResponse:
    store = current_session()
    name = request.form.get("tracking_name", "")[:200]
    try:
        service.remove_tracking_url(store, _campaign(campaign_id), name)
    except CampaignError as error:
        _fail(store, f"The tracking URL was not removed: {error.message}.")
    else:
        store.commit()
        flash(f"Tracking URL {name.strip()!r} removed.", "success")
    return redirect(url_for("campaigns.campaign", campaign_id=campaign_id) + "#tracking-urls")


# ------------------------------------------------------------------ sender profiles


def _render_senders(
    profile: SenderProfile | None, form: dict[str, str], errors: dict[str, str], status: int = 200
) -> tuple[str, int]:
    page = render_template(
        "ui/campaigns/senders.html",
        profiles=service.sender_profiles(current_session()),
        profile=profile,
        form=form,
        errors=errors,
        labels=SENDER_LABELS,
    )
    return page, status


def _sender_values(profile: SenderProfile | None) -> dict[str, str]:
    if profile is None:
        return dict.fromkeys(SENDER_LABELS, "")
    return {key: str(getattr(profile, key)) for key in SENDER_LABELS}


def _sender(profile_id: int) -> SenderProfile:
    profile = current_session().get(SenderProfile, profile_id)
    if profile is None:
        abort(404)
    return profile


@campaigns.get("/senders")
def senders() -> tuple[str, int]:
    return _render_senders(None, _sender_values(None), {})


@campaigns.get("/senders/<int:profile_id>")
def edit_sender(profile_id: int) -> tuple[str, int]:
    profile = _sender(profile_id)
    return _render_senders(profile, _sender_values(profile), {})


@campaigns.post("/senders")
def create_sender() -> BaseResponse | tuple[str, int]:
    return _save_sender(None)


@campaigns.post("/senders/<int:profile_id>")
def update_sender(profile_id: int) -> BaseResponse | tuple[str, int]:
    return _save_sender(_sender(profile_id))


@campaigns.get("/senders/<int:profile_id>/delete")
def confirm_delete_sender(profile_id: int) -> str:
    profile = _sender(profile_id)
    return render_template(
        "ui/campaigns/sender_delete.html",
        profile=profile,
        users=service.sender_profile_users(current_session(), profile),
    )


@campaigns.post("/senders/<int:profile_id>/delete")
def delete_sender(profile_id: int) -> BaseResponse:
    store = current_session()
    profile = _sender(profile_id)
    name = profile.name
    try:
        service.delete_sender_profile(store, profile)
    except CampaignError as error:
        # A campaign took the profile after the confirmation page was shown.
        _fail(store, f"The sender profile {name!r} was not deleted: {error.message}.")
        return redirect(url_for("campaigns.confirm_delete_sender", profile_id=profile_id))
    store.commit()
    flash(f"Sender profile {name!r} deleted.", "success")
    return redirect(url_for("campaigns.senders"))


def _save_sender(profile: SenderProfile | None) -> BaseResponse | tuple[str, int]:
    store = current_session()
    form = {key: request.form.get(key, "")[:1000] for key in SENDER_LABELS}
    try:
        if profile is None:
            saved = service.create_sender_profile(store, **form)
        else:
            saved = service.update_sender_profile(store, profile, **form)
    except CampaignError as error:
        _fail(store, "The sender profile was not saved: see the fields marked below.")
        current = None if profile is None else store.get(SenderProfile, profile.id)
        return _render_senders(current, form, {error.field: error.message}, 400)
    store.commit()
    flash(f"Sender profile {saved.name!r} saved.", "success")
    return redirect(url_for("campaigns.senders"))


# ------------------------------------------------------------------ mass emails: editing


def _templates() -> list[EmailTemplate]:
    return list(current_session().scalars(select(EmailTemplate).order_by(EmailTemplate.name)))


def _mass_email_defaults(mass_email: MassEmail | None) -> dict[str, Any]:
    form: dict[str, Any] = {
        "name": "",
        "content": "template",
        "template_id": None,
        "start": "later",
        "start_at": "",
        **dict.fromkeys(CONTENT_FIELDS, ""),
    }
    if mass_email is None:
        return form
    form["name"] = mass_email.name
    form["template_id"] = mass_email.template_id
    form["content"] = "own" if mass_email.subject is not None else "template"
    if mass_email.start_at is not None:
        form["start"] = "at"
        form["start_at"] = _time_value(mass_email.start_at)
    try:
        source = mass_email_source(mass_email, mass_email.template)
    except MessageError:
        return form
    form.update(
        subject=source.subject,
        body_html=source.body_html,
        body_text=source.body_text or "",
        header_logo_url=source.header_logo_url,
        footer_html=source.footer_html,
    )
    return form


def _mass_email_form() -> dict[str, Any]:
    form: dict[str, Any] = {
        "name": request.form.get("name", ""),
        "content": request.form.get("content", "template"),
        "template_id": request.form.get("template_id", ""),
        "start": request.form.get("start", ""),
        "start_at": request.form.get("start_at", "")[:40],
    }
    for key in CONTENT_FIELDS:
        form[key] = request.form.get(key, "")
    return form


def _content_arguments(form: dict[str, Any]) -> dict[str, Any]:
    """``template_id`` or ``content`` for the service, from the form."""
    if form["content"] == "own":
        return {
            "template_id": None,
            "content": TemplateSource(
                subject=form["subject"],
                body_html=form["body_html"],
                body_text=form["body_text"] or None,
                header_logo_url=form["header_logo_url"],
                footer_html=form["footer_html"],
            ),
        }
    if form["content"] != "template":
        raise FormError("content", "choose a template or content of its own")
    template_id = _optional_id("template_id")
    if template_id is None:
        raise FormError("template_id", "choose a template")
    return {"template_id": template_id, "content": None}


def _errors_of(error: FormError | CampaignError) -> dict[str, str]:
    if isinstance(error, CampaignError) and error.template_problems:
        return problem_errors(error.template_problems)
    return {error.field: error.message}


@campaigns.post("/<int:campaign_id>/mass-emails")
def add_mass_email(campaign_id: int) -> BaseResponse | tuple[str, int]:
    store = current_session()
    found = _campaign(campaign_id)
    form = _mass_email_form()
    try:
        start_at, send_now = _start(("later", "now", "at"))
        mass_email = service.add_mass_email(
            store,
            found,
            **_content_arguments(form),
            start_at=start_at,
            send_now=send_now,
            name=form["name"] if form["name"].strip() else None,
            clock=app_clock(current_app),
        )
    except (FormError, CampaignError) as error:
        _fail(store, "The mass email was not added: see the fields marked below.")
        found = _campaign(campaign_id)
        page = render_template(
            "ui/campaigns/campaign.html",
            campaign=found,
            profile=None
            if found.sender_profile_id is None
            else store.get(SenderProfile, found.sender_profile_id),
            mass_emails=live_mass_emails(found),
            templates=_templates(),
            form=form,
            errors=_errors_of(error),
            labels=MASS_EMAIL_LABELS,
        )
        return page, 400
    store.commit()
    flash(
        f"Mass email {mass_email.name!r} added as a draft. Check the pre-flight findings "
        "and confirm to schedule it.",
        "success",
    )
    return redirect(url_for("campaigns.schedule_form", mass_email_id=mass_email.id))


def _render_mass_email_form(
    mass_email: MassEmail, form: dict[str, Any], errors: dict[str, str], status: int = 200
) -> tuple[str, int]:
    page = render_template(
        "ui/campaigns/mass_email_form.html",
        mass_email=mass_email,
        form=form,
        errors=errors,
        labels=MASS_EMAIL_LABELS,
        templates=_templates(),
        placeholders=PLACEHOLDERS,
    )
    return page, status


@campaigns.get("/mass-emails/<int:mass_email_id>/edit")
def edit_mass_email(mass_email_id: int) -> BaseResponse | tuple[str, int]:
    mass_email = _mass_email(mass_email_id)
    if mass_email.status != S.DRAFT:
        flash("Only a draft can be edited: unschedule it first.", "error")
        return redirect(url_for("campaigns.mass_email", mass_email_id=mass_email_id))
    return _render_mass_email_form(mass_email, _mass_email_defaults(mass_email), {})


@campaigns.post("/mass-emails/<int:mass_email_id>/edit")
def update_mass_email(mass_email_id: int) -> BaseResponse | tuple[str, int]:
    store = current_session()
    mass_email = _mass_email(mass_email_id)
    form = _mass_email_form()
    try:
        start_at, send_now = _start(("later", "now", "at"))
        service.update_mass_email(
            store,
            mass_email,
            **_content_arguments(form),
            start_at=start_at,
            send_now=send_now,
            name=form["name"],
            clock=app_clock(current_app),
        )
    except (FormError, CampaignError) as error:
        _fail(store, "The mass email was not saved: see the fields marked below.")
        return _render_mass_email_form(_mass_email(mass_email_id), form, _errors_of(error), 400)
    store.commit()
    flash(f"Mass email {mass_email.name!r} saved.", "success")
    return redirect(url_for("campaigns.mass_email", mass_email_id=mass_email_id))


# ------------------------------------------------------------------ mass emails: the page


@campaigns.get("/mass-emails/<int:mass_email_id>")
def mass_email(mass_email_id: int) -> str:
    found = _mass_email(mass_email_id)
    store = current_session()
    runtime = runtime_settings()
    progress = None
    if runtime is not None and found.status != S.DRAFT:
        progress = mass_email_progress(store, found.id, app_clock(current_app), runtime)
    return render_template(
        "ui/campaigns/mass_email.html",
        mass_email=found,
        campaign=found.campaign,
        progress=progress,
        queue_statuses=QUEUE_STATUS_ORDER,
        preview_contact=request.args.get("preview_contact", "")[:320],
        test_to=request.args.get("to", "")[:320],
    )


@campaigns.get("/mass-emails/<int:mass_email_id>/preview")
def mass_email_preview(mass_email_id: int) -> Response:
    """The mass email rendered for ``?preview_contact=`` (default: the
    campaign's first recipient), for a sandboxed frame."""
    found = _mass_email(mass_email_id)
    runtime = runtime_settings()
    if runtime is None:
        return preview_response(Preview(problems=(SETTINGS_MISSING,)))
    store = current_session()
    address = request.args.get("preview_contact", "")[:320]
    try:
        contact = preview_contact(store, address) if address.strip() else None
        rendered = preview(
            store,
            found,
            None if contact is None else contact.id,
            runtime=runtime,
            settings=app_settings(current_app),
            secret_key=str(current_app.config["SECRET_KEY"]),
        )
    except (PreviewContactError, MessageError) as error:
        return preview_response(Preview(problems=(TemplateProblem("preview", None, str(error)),)))
    return preview_response(Preview(subject=rendered.subject, html=rendered.html))


@campaigns.post("/mass-emails/<int:mass_email_id>/send-test")
def send_test_message(mass_email_id: int) -> BaseResponse:
    found = _mass_email(mass_email_id)
    to_address = request.form.get("to", "")[:320]
    back = url_for("campaigns.mass_email", mass_email_id=mass_email_id, to=to_address)
    back += "#send-test"
    store = current_session()
    runtime = runtime_settings()
    if runtime is None:
        return redirect(back)
    try:
        factory = app_transport_factory(current_app)
    except SmtpNotConfigured as error:
        flash(f"The test was not sent: {error}. An administrator sets it.", "error")
        return redirect(back)
    address = request.form.get("preview_contact", "")[:320]
    transport = factory()
    try:
        contact = preview_contact(store, address) if address.strip() else None
        result = send_test(
            store,
            found,
            to_address,
            None if contact is None else contact.id,
            transport,
            clock=app_clock(current_app),
            runtime=runtime,
            settings=app_settings(current_app),
            secret_key=str(current_app.config["SECRET_KEY"]),
            dkim_key=app_dkim_key(current_app),
        )
    except (PreviewContactError, MessageError) as error:
        flash(f"The test was not sent: {error}", "error")
        return redirect(back)
    finally:
        transport.close()
    reply = f"{result.code or '---'} {result.reply}".strip()
    if result.accepted:
        flash(f"Test sent to {to_address.strip()}. The relay answered: {reply}", "success")
    else:
        flash(f"The relay did not accept the test ({result.outcome.value}): {reply}", "error")
    return redirect(back)


def _status_action(
    mass_email_id: int, action: Callable[[Any, MassEmail], str], refusal: str
) -> BaseResponse:
    store = current_session()
    found = _mass_email(mass_email_id)
    try:
        message = action(store, found)
    except (CampaignError, DispatchError) as error:
        text = error.message if isinstance(error, CampaignError) else str(error)
        _fail(store, f"{refusal}: {text}.")
    else:
        store.commit()
        flash(message, "success")
    return redirect(url_for("campaigns.mass_email", mass_email_id=mass_email_id))


@campaigns.post("/mass-emails/<int:mass_email_id>/pause")
def pause(mass_email_id: int) -> BaseResponse:
    def act(store: Any, found: MassEmail) -> str:
        service.pause_mass_email(store, found, app_clock(current_app))
        return f"{found.name!r} is paused: nothing more is sent until you resume it."

    return _status_action(mass_email_id, act, "Not paused")


@campaigns.post("/mass-emails/<int:mass_email_id>/resume")
def resume(mass_email_id: int) -> BaseResponse:
    def act(store: Any, found: MassEmail) -> str:
        status = service.resume_mass_email(store, found, app_clock(current_app))
        return f"{found.name!r} resumed: it is {mass_email_status_label(status)} again."

    return _status_action(mass_email_id, act, "Not resumed")


@campaigns.post("/mass-emails/<int:mass_email_id>/cancel")
def cancel(mass_email_id: int) -> BaseResponse:
    def act(store: Any, found: MassEmail) -> str:
        service.cancel_mass_email(store, found, app_clock(current_app))
        return f"{found.name!r} is canceled: nothing more will be sent."

    return _status_action(mass_email_id, act, "Not canceled")


@campaigns.post("/mass-emails/<int:mass_email_id>/unschedule")
def unschedule(mass_email_id: int) -> BaseResponse:
    def act(store: Any, found: MassEmail) -> str:
        service.unschedule_mass_email(store, found, app_clock(current_app))
        return f"{found.name!r} is a draft again; schedule it once it is ready."

    return _status_action(mass_email_id, act, "Not unscheduled")


@campaigns.post("/mass-emails/<int:mass_email_id>/retry-interrupted")
def retry(mass_email_id: int) -> BaseResponse:
    def act(store: Any, found: MassEmail) -> str:
        count = retry_interrupted(store, found.id, app_clock(current_app))
        return f"{count} interrupted message(s) queued to be sent again."

    return _status_action(mass_email_id, act, "Nothing was queued again")


@campaigns.post("/mass-emails/<int:mass_email_id>/copy")
def copy_mass_email(mass_email_id: int) -> BaseResponse:
    store = current_session()
    try:
        copy = service.copy_mass_email(store, _mass_email(mass_email_id), app_clock(current_app))
    except CampaignError as error:
        _fail(store, f"Not copied: {error.message}.")
        return redirect(url_for("campaigns.mass_email", mass_email_id=mass_email_id))
    store.commit()
    flash(
        f"Copied as draft {copy.name!r}: change its subject and content before scheduling it.",
        "success",
    )
    return redirect(url_for("campaigns.edit_mass_email", mass_email_id=copy.id))


@campaigns.get("/mass-emails/<int:mass_email_id>/delete")
def confirm_delete_mass_email(mass_email_id: int) -> str:
    found = _mass_email(mass_email_id)
    return render_template(
        "ui/campaigns/delete.html", campaign=found.campaign, mass_email=found, active=[]
    )


@campaigns.post("/mass-emails/<int:mass_email_id>/delete")
def delete_mass_email(mass_email_id: int) -> BaseResponse:
    store = current_session()
    found = _mass_email(mass_email_id)
    name, campaign_id = found.name, found.campaign_id
    service.delete_mass_email(store, found, app_clock(current_app))
    store.commit()
    flash(f"Mass email {name!r} deleted. Links in the mail it sent keep working.", "success")
    return redirect(url_for("campaigns.campaign", campaign_id=campaign_id))


# ------------------------------------------------------------------ scheduling


def _findings(mass_email: MassEmail, spam_check: bool) -> list[Finding] | None:
    runtime = runtime_settings()
    if runtime is None:
        return None
    return preflight(
        current_session(),
        mass_email,
        runtime=runtime,
        settings=app_settings(current_app),
        secret_key=str(current_app.config["SECRET_KEY"]),
        clock=app_clock(current_app),
        spam_check=spam_check,
        dkim_key=app_dkim_key(current_app),
    )


def _schedule_defaults(mass_email: MassEmail) -> dict[str, Any]:
    now = app_clock(current_app).now()
    if mass_email.start_at is not None and mass_email.start_at > now:
        return {"start": "at", "start_at": _time_value(mass_email.start_at), "can_spam": False}
    return {"start": "now", "start_at": "", "can_spam": False}


def _render_schedule(
    mass_email: MassEmail,
    form: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    problems: tuple[str, ...] = (),
) -> tuple[str, int]:
    spam_check = request.args.get("spam_check") == "1"
    page = render_template(
        "ui/campaigns/schedule.html",
        mass_email=mass_email,
        campaign=mass_email.campaign,
        findings=_findings(mass_email, spam_check),
        spam_check=spam_check,
        form=form,
        errors=errors,
        problems=problems,
        labels=MASS_EMAIL_LABELS,
        now=app_clock(current_app).now(),
    )
    return page, status


@campaigns.get("/mass-emails/<int:mass_email_id>/schedule")
def schedule_form(mass_email_id: int) -> BaseResponse | tuple[str, int]:
    found = _mass_email(mass_email_id)
    if found.status != S.DRAFT:
        label = mass_email_status_label(found.status)
        flash(f"Only a draft is scheduled; this one is {label}.", "error")
        return redirect(url_for("campaigns.mass_email", mass_email_id=mass_email_id))
    return _render_schedule(found, _schedule_defaults(found), {})


@campaigns.post("/mass-emails/<int:mass_email_id>/schedule")
def schedule(mass_email_id: int) -> BaseResponse | tuple[str, int]:
    store = current_session()
    found = _mass_email(mass_email_id)
    form = {
        "start": request.form.get("start", ""),
        "start_at": request.form.get("start_at", "")[:40],
        "can_spam": request.form.get("can_spam_confirmed") == "yes",
    }
    runtime = runtime_settings()
    if runtime is None:
        return redirect(url_for("campaigns.mass_email", mass_email_id=mass_email_id))
    try:
        start_at, send_now = _start(("now", "at"))
        if send_now:
            start_at = None
        findings = service.schedule_mass_email(
            store,
            found,
            start_at=start_at,
            can_spam_confirmed=bool(form["can_spam"]),
            runtime=runtime,
            settings=app_settings(current_app),
            secret_key=str(current_app.config["SECRET_KEY"]),
            clock=app_clock(current_app),
            dkim_key=app_dkim_key(current_app),
        )
    except (FormError, CampaignError) as error:
        _fail(store, "The mass email was not scheduled: see below.")
        problems = error.problems if isinstance(error, CampaignError) else ()
        return _render_schedule(
            _mass_email(mass_email_id), form, {error.field: error.message}, 400, problems
        )
    store.commit()
    warnings = sum(1 for finding in findings if finding.severity == "warning")
    when = format_time(found.start_at)
    flash(
        f"{found.name!r} is scheduled to start at {when}"
        + (f" ({warnings} warning(s) noted)." if warnings else "."),
        "success",
    )
    return redirect(url_for("campaigns.mass_email", mass_email_id=mass_email_id))
