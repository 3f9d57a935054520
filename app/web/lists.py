"""Blueprint ``lists`` (``/lists``), for administrators and marketers:
target lists with their member counts, a list's members, adding and
removing members, populating a list from a contacts search, a new list from
a mass email's campaign log ("everyone who clicked"), and deleting a list.
The rules are in ``app.services.target_lists``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.context import app_clock
from app.extensions import current_session
from app.models import CampaignLogEvent, TargetList
from app.services.addresses import InvalidAddress
from app.services.contact_search import matching_ids
from app.services.contacts import find_contact
from app.services.target_lists import (
    COUNT_CAP,
    LOG_EVENTS_FOR_LISTS,
    TargetListError,
    add_members,
    campaigns_using,
    create_target_list,
    delete_target_list,
    list_from_campaign_log,
    list_overview,
    log_sources,
    member_count,
    members_page,
    remove_members,
    target_list_by_id,
)
from app.web.contacts import OPT_CHOICES, STATUS_CHOICES, search_from

lists = Blueprint("lists", __name__, url_prefix="/lists")

EVENT_LABELS = {
    CampaignLogEvent.SENT: "was sent it",
    CampaignLogEvent.OPENED: "opened",
    CampaignLogEvent.CLICKED: "clicked",
    CampaignLogEvent.BOUNCED_HARD: "bounced hard",
    CampaignLogEvent.BOUNCED_SOFT: "bounced soft",
    CampaignLogEvent.OPTED_OUT: "opted out",
    CampaignLogEvent.COMPLAINT: "reported it as spam",
    CampaignLogEvent.AUTOREPLY: "sent an automatic reply",
    CampaignLogEvent.DROPPED: "was dropped",
    CampaignLogEvent.FAILED: "failed",
}
LABELS = {
    "name": "Name",
    "description": "Description",
    "log_name": "Name of the new list",
    "mass_email": "Mass email",
    "events": "Who",
}


def _list_or_404(list_id: int) -> TargetList:
    try:
        return target_list_by_id(current_session(), list_id)
    except LookupError:
        abort(404)


def _error_field(message: str, default: str) -> tuple[str, str]:
    head, _, rest = message.partition(": ")
    field = {"list name": default, "description": "description", "events": "events"}.get(head)
    field = field or ("mass_email" if head == "mass email" else default)
    return field, rest if rest else message


def _render_index(
    form: dict[str, Any] | None = None, errors: dict[str, str] | None = None, status: int = 200
) -> tuple[str, int]:
    store = current_session()
    values = {"name": "", "description": "", "log_name": "", "mass_email": "", "events": []}
    sources = log_sources(store)
    html = render_template(
        "ui/lists/index.html",
        summaries=list_overview(store, COUNT_CAP),
        count_cap=COUNT_CAP,
        sources=sources,
        source_choices=[("", "Choose a mass email")]
        + [(str(source.mass_email_id), source.label) for source in sources],
        values=values | (form or {}),
        errors=errors or {},
        event_choices=[(event.value, EVENT_LABELS[event]) for event in LOG_EVENTS_FOR_LISTS],
        labels=LABELS,
    )
    return html, status


@lists.get("")
def index() -> tuple[str, int]:
    return _render_index()


@lists.post("")
def create() -> BaseResponse | tuple[str, int]:
    form = {
        "name": request.form.get("name", "")[:1000],
        "description": request.form.get("description", "")[:10_000],
    }
    store = current_session()
    try:
        target_list = create_target_list(
            store, form["name"], form["description"], app_clock(current_app)
        )
    except TargetListError as error:
        store.rollback()
        flash("The list was not created: see the field marked below.", "error")
        field, message = _error_field(str(error), "name")
        return _render_index(form, {field: message}, 400)
    store.commit()
    flash(f"List {target_list.name} created. Add contacts to it below.", "success")
    return redirect(url_for("lists.detail", list_id=target_list.id))


@lists.post("/from-log")
def create_from_log() -> BaseResponse | tuple[str, int]:
    form: dict[str, Any] = {
        "log_name": request.form.get("log_name", "")[:1000],
        "mass_email": request.form.get("mass_email", "")[:20],
        "events": request.form.getlist("events")[:20],
    }
    errors: dict[str, str] = {}
    events = []
    for value in form["events"]:
        try:
            event = CampaignLogEvent(value)
        except ValueError:
            errors["events"] = "choose from the events offered"
            break
        if event not in LOG_EVENTS_FOR_LISTS:
            errors["events"] = "choose from the events offered"
            break
        events.append(event)
    if not form["mass_email"].isdigit():
        errors["mass_email"] = "choose a mass email"
    store = current_session()
    if not errors:
        try:
            target_list, added = list_from_campaign_log(
                store,
                form["log_name"],
                mass_email_id=int(form["mass_email"]),
                events=events,
                clock=app_clock(current_app),
            )
        except TargetListError as error:
            field, message = _error_field(str(error), "log_name")
            errors[field] = message
    if errors:
        store.rollback()
        flash("The list was not created: see the fields marked below.", "error")
        return _render_index(form, errors, 400)
    store.commit()
    flash(f"List {target_list.name} created with {added:,} contact(s).", "success")
    return redirect(url_for("lists.detail", list_id=target_list.id))


# ------------------------------------------------------------------ one list


def _render_detail(
    target_list: TargetList,
    *,
    errors: dict[str, str] | None = None,
    address: str = "",
    status: int = 200,
) -> tuple[str, int]:
    store = current_session()
    exact = request.args.get("count") == "exact"
    count = member_count(store, target_list, None if exact else COUNT_CAP)
    html = render_template(
        "ui/lists/detail.html",
        target_list=target_list,
        count=count,
        count_cap=COUNT_CAP,
        capped=not exact and count > COUNT_CAP,
        page=members_page(store, target_list, before=request.args.get("before", type=int)),
        campaigns=campaigns_using(store, target_list),
        errors=errors or {},
        address=address,
        status_choices=STATUS_CHOICES,
        opt_choices=OPT_CHOICES,
    )
    return html, status


@lists.get("/<int:list_id>")
def detail(list_id: int) -> tuple[str, int]:
    return _render_detail(_list_or_404(list_id))


@lists.post("/<int:list_id>/members")
def add_member(list_id: int) -> BaseResponse | tuple[str, int]:
    store = current_session()
    target_list = _list_or_404(list_id)
    address = request.form.get("email", "")[:1000]
    error = ""
    contact = None
    if not address.strip():
        error = "enter the address of a contact"
    else:
        try:
            contact = find_contact(store, address)
        except InvalidAddress as invalid:
            error = str(invalid)
        else:
            if contact is None:
                error = "no contact has this address: add the contact first (Contacts page)"
    if contact is None:
        flash("Nobody was added: see the field marked below.", "error")
        return _render_detail(target_list, errors={"email": error}, address=address, status=400)
    added = add_members(store, target_list, [contact.id], app_clock(current_app))
    store.commit()
    if added:
        flash(f"{contact.email} added to the list.", "success")
    else:
        flash(f"{contact.email} is on the list already.", "info")
    return redirect(url_for("lists.detail", list_id=list_id))


@lists.post("/<int:list_id>/members/<int:contact_id>/remove")
def remove_member(list_id: int, contact_id: int) -> BaseResponse:
    store = current_session()
    target_list = _list_or_404(list_id)
    removed = remove_members(store, target_list, [contact_id], app_clock(current_app))
    store.commit()
    if removed:
        flash("The contact was removed from the list (the contact itself stays).", "success")
    else:
        flash("That contact was not on the list.", "info")
    return redirect(url_for("lists.detail", list_id=list_id))


@lists.post("/<int:list_id>/populate")
def populate(list_id: int) -> BaseResponse | tuple[str, int]:
    store = current_session()
    target_list = _list_or_404(list_id)
    search, errors, _values = search_from(request.form)
    if errors:
        flash("Nobody was added: see the fields marked below.", "error")
        return _render_detail(target_list, errors=errors, status=400)
    if search.is_empty:
        flash(
            "Nobody was added: give a search or a filter (an empty one matches everyone).", "error"
        )
        return _render_detail(
            target_list, errors={"q": "give a search text or choose a filter"}, status=400
        )
    added = add_members(store, target_list, matching_ids(store, search), app_clock(current_app))
    store.commit()
    flash(f"{added:,} contact(s) added to the list.", "success")
    return redirect(url_for("lists.detail", list_id=list_id))


@lists.post("/<int:list_id>/delete")
def delete(list_id: int) -> BaseResponse:
    store = current_session()
    target_list = _list_or_404(list_id)
    name = target_list.name
    try:
        delete_target_list(store, target_list)
    except TargetListError as error:
        store.rollback()
        flash(f"The list was not deleted: {error}.", "error")
        return redirect(url_for("lists.detail", list_id=list_id))
    store.commit()
    flash(f"List {name} deleted; its contacts stay.", "success")
    return redirect(url_for("lists.index"))
