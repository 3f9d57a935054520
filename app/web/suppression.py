"""Blueprint ``suppression`` (``/suppression``), for administrators and
marketers: the suppression list searched and paged, an address added by
hand (reason "manual", with a note), an address removed after a fix (who:
the logged-in user; why: required), and the latest removals. The rules are
in ``app.services.suppression``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.context import app_clock
from app.extensions import current_session
from app.models import SuppressionReason
from app.models.bounces import SUPPRESSION_SOURCE_MAX_LENGTH
from app.services import suppression as service
from app.services.addresses import InvalidAddress
from app.web.access import web_user

suppression = Blueprint("suppression", __name__, url_prefix="/suppression")

REASON_CHOICES = (
    ("", "Any"),
    *((reason.value, reason.value.replace("_", " ")) for reason in SuppressionReason),
)
LABELS = {"q": "Search", "reason": "Reason", "address": "Address", "note": "Note", "why": "Why"}


def _render(
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    store = current_session()
    errors = dict(errors or {})
    query = request.args.get("q", "")[:1000]
    reason_value = request.args.get("reason", "")[:50]
    after = request.args.get("after") or None
    contains = request.args.get("contains") == "on"
    page: Any = None
    reason = None
    if reason_value:
        try:
            reason = SuppressionReason(reason_value)
        except ValueError:
            errors["reason"] = "choose one of the reasons offered"
    try:
        if query.strip():
            page = service.search(store, query, contains=contains, after=after)
        else:
            page = service.listing(store, after=after, reason=reason)
    except service.SuppressionError as error:
        errors["q"] = str(error).removeprefix("search: ")
        page = service.listing(store)
    html = render_template(
        "ui/suppression/index.html",
        page=page,
        query=query,
        reason_value=reason_value,
        contains=contains,
        paged=after is not None,
        removals=service.recent_removals(store),
        reason_choices=REASON_CHOICES,
        form={
            "address": "",
            "note": "",
            "why": "",
            "remove_address": request.args.get("remove", "")[:1000],
        }
        | (form or {}),
        errors=errors,
        labels=LABELS,
    )
    return html, 400 if errors and status == 200 else status


@suppression.get("")
def index() -> tuple[str, int]:
    return _render()


@suppression.post("/add")
def add() -> BaseResponse | tuple[str, int]:
    form = {
        "address": request.form.get("address", "")[:1000],
        "note": request.form.get("note", "")[:1000],
    }
    errors: dict[str, str] = {}
    if not form["address"].strip():
        errors["address"] = "enter the address to suppress"
    if len(" ".join(form["note"].split())) > SUPPRESSION_SOURCE_MAX_LENGTH - 100:
        errors["note"] = f"at most {SUPPRESSION_SOURCE_MAX_LENGTH - 100} characters"
    store = current_session()
    added = False
    if not errors:
        note = " ".join(form["note"].split())
        source = f"{web_user().email}: {note}" if note else web_user().email
        try:
            added = service.add(
                store, form["address"], SuppressionReason.MANUAL, source, app_clock(current_app)
            )
        except InvalidAddress as error:
            errors["address"] = str(error)
    if errors:
        store.rollback()
        flash("Nothing was added: see the fields marked below.", "error")
        return _render(form=form, errors=errors, status=400)
    store.commit()
    address = form["address"].strip()
    if added:
        flash(f"{address} is suppressed: no mass email will reach it.", "success")
    else:
        flash(f"{address} was suppressed already; its first reason is kept.", "info")
    return redirect(url_for("suppression.index", q=address))


@suppression.post("/remove")
def remove() -> BaseResponse | tuple[str, int]:
    form = {
        "remove_address": request.form.get("remove_address", "")[:1000],
        "why": request.form.get("why", "")[:5000],
    }
    errors: dict[str, str] = {}
    if not form["why"].strip():
        errors["why"] = "say why the address may be mailed again (e.g. the mailbox was fixed)"
    store = current_session()
    if not errors:
        try:
            entry = service.remove(
                store,
                form["remove_address"],
                by=web_user().email,
                why=form["why"],
                clock=app_clock(current_app),
            )
        except service.NotSuppressed as error:
            errors["remove_address"] = str(error)
        except InvalidAddress as error:
            errors["remove_address"] = str(error)
        except service.SuppressionError as error:
            errors["why"] = str(error).removeprefix("why: ")
    if errors:
        store.rollback()
        flash(
            f"{form['remove_address'].strip() or 'The address'} was not removed: "
            "see the fields marked below.",
            "error",
        )
        return _render(form=form, errors=errors, status=400)
    store.commit()
    flash(f"{entry.address} is no longer suppressed (removal recorded).", "success")
    return redirect(url_for("suppression.index"))
