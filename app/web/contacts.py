"""Blueprint ``contacts`` (``/contacts``), for administrators and
marketers: the contacts list with its search, one contact's page (fields,
status, opt-out, lists, activity log) and its changes, and the CSV import
with its report. Views are thin: the rules are in
``app.services.contact_search``, ``contacts``, ``target_lists`` and
``import_report``."""

from __future__ import annotations

import re
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response as BaseResponse

from app import app_settings
from app.context import app_clock
from app.extensions import current_session
from app.models import Contact, EmailStatus
from app.models.imports import ImportProblemKind
from app.services import suppression
from app.services.addresses import InvalidAddress, own_sending_addresses
from app.services.background_import import (
    COMMAND_LINE_HINT,
    ImportRequest,
    active_imports,
    describe_progress,
    imports_folder,
    megabytes,
    progress_percent,
    queue_import,
    upload_size,
)
from app.services.contact_csv import ImportFileError
from app.services.contact_fields import (
    CustomFieldChanges,
    CustomFieldEdit,
    CustomFieldErrors,
    CustomFieldRow,
    custom_field_rows,
    edit_custom_fields,
    placeholder_for,
)
from app.services.contact_search import (
    ContactSearch,
    SearchError,
    activity_page,
    contact_lists,
    contacts_page,
    matching_ids,
)
from app.services.contacts import (
    ContactError,
    ContactInput,
    change_address,
    change_opt_out,
    contact_by_id,
    delete_contact,
    edit_contact,
    save_contact,
)
from app.services.import_report import (
    DETECT,
    ENCODING_CHOICES,
    UPLOAD_MAX_BYTES,
    UploadError,
    encoding_label,
    import_by_id,
    problem_message,
    problems_page,
    recent_imports,
    rejected_rows_csv,
    run_import,
    web_message,
)
from app.services.target_lists import (
    add_members,
    list_choices,
    remove_members,
    target_list_by_id,
)
from app.web.access import web_user
from app.web.uploads import LARGE_UPLOAD_CONFIG_KEY

contacts = Blueprint("contacts", __name__, url_prefix="/contacts")

# Every request body of the app is at most this (``init_web`` sets it), but
# the import's, which has its own (``app.web.uploads``).
REQUEST_MAX_BYTES = UPLOAD_MAX_BYTES + 1024 * 1024
# How often import.js reads the progress of the background imports.
LIVE_INTERVAL_SECONDS = 3
STATUS_CHOICES = (("", "Any"), ("valid", "Valid"), ("invalid", "Invalid"))
OPT_CHOICES = (("", "Any"), ("in", "Opted in"), ("out", "Opted out"))
FIELD_LABELS = {
    "email": "Email address",
    "first_name": "First name",
    "last_name": "Last name",
    "company": "Company",
    "audience_type": "Type",
}

CUSTOM_LABELS = {"new_name": "New field's name", "new_value": "New field's value"}
# The page's custom fields are posted as key-0/value-0, key-1/value-1 …
CUSTOM_KEY = re.compile(r"key-[0-9]{1,6}")


def _store() -> Any:
    return current_session()


def _own_addresses() -> frozenset[str]:
    return own_sending_addresses(_store(), app_settings(current_app).bounce_address)


def _contact_or_404(contact_id: int) -> Contact:
    try:
        return contact_by_id(_store(), contact_id)
    except LookupError:
        abort(404)


# ------------------------------------------------------------------ the list


def search_from(args: MultiDict[str, str]) -> tuple[ContactSearch, dict[str, str], dict[str, str]]:
    """The search a query string asks for, its errors by field, and the
    values to show in the form. A bad field is left out of the search."""
    values = {key: args.get(key, "")[:500] for key in ("q", "status", "opt", "list")}
    errors: dict[str, str] = {}
    status = None
    if values["status"]:
        try:
            status = EmailStatus(values["status"])
        except ValueError:
            errors["status"] = "choose valid, invalid or any"
    opted_out = {"": None, "in": False, "out": True}.get(values["opt"])
    if values["opt"] not in {"", "in", "out"}:
        errors["opt"] = "choose opted in, opted out or any"
    list_id = None
    if values["list"]:
        if values["list"].isdigit():
            list_id = int(values["list"])
        else:
            errors["list"] = "choose a list"
    try:
        search = ContactSearch(values["q"], status, opted_out, list_id)
    except SearchError as error:
        errors["q"] = str(error).removeprefix("search: ")
        search = ContactSearch("", status, opted_out, list_id)
    return search, errors, values


@contacts.get("")
def index() -> tuple[str, int]:
    search, errors, values = search_from(request.args)
    store = _store()
    page = contacts_page(
        store,
        search,
        before=request.args.get("before", type=int),
        after=request.args.get("after", type=int),
    )
    query = {key: value for key, value in values.items() if value}
    html = render_template(
        "ui/contacts/index.html",
        page=page,
        search=search,
        values=values,
        query=query,
        errors=errors,
        lists=list_choices(store),
        status_choices=STATUS_CHOICES,
        opt_choices=OPT_CHOICES,
        paged=bool(request.args.get("before") or request.args.get("after")),
    )
    return html, 400 if errors else 200


@contacts.post("/add-to-list")
def add_matching_to_list() -> BaseResponse:
    """Add every contact the search finds to a list (populate from the
    search: one INSERT … SELECT, applied once)."""
    search, errors, values = search_from(request.form)
    query: dict[str, Any] = {key: value for key, value in values.items() if value}
    back = url_for("contacts.index", **query)
    if errors:
        flash("Nothing was added: the search has errors.", "error")
        return redirect(back)
    store = _store()
    try:
        target_list = target_list_by_id(store, request.form.get("target_list", type=int) or 0)
    except LookupError:
        flash("Nothing was added: choose the list to add the contacts to.", "error")
        return redirect(back)
    added = add_members(store, target_list, matching_ids(store, search), app_clock(current_app))
    store.commit()
    flash(f"{added:,} contact(s) added to list {target_list.name}.", "success")
    return redirect(back)


# ------------------------------------------------------------------ new contact


def _contact_form(form: MultiDict[str, str]) -> dict[str, str]:
    return {key: form.get(key, "")[:1000] for key in FIELD_LABELS}


def _error_field(message: str) -> str:
    """The form field a service message names ("first name: …")."""
    head = message.split(":", 1)[0].strip().replace(" ", "_")
    return {"type": "audience_type"}.get(head, head if head in FIELD_LABELS else "email")


@contacts.route("/new", methods=["GET", "POST"])
def new() -> str | BaseResponse | tuple[str, int]:
    if request.method == "GET":
        values = {key: "" for key in FIELD_LABELS} | {"audience_type": "contact"}
        return render_template("ui/contacts/new.html", values=values, errors={})
    values = _contact_form(request.form)
    store = _store()
    errors: dict[str, str] = {}
    if not values["email"].strip():
        errors["email"] = "enter the contact's email address"
    else:
        try:
            saved = save_contact(
                store,
                ContactInput(
                    email=values["email"],
                    first_name=values["first_name"],
                    last_name=values["last_name"],
                    company=values["company"],
                    audience_type=values["audience_type"],
                ),
                app_clock(current_app),
                _own_addresses(),
                update=False,
            )
        except InvalidAddress as error:
            errors["email"] = str(error)
        except ContactError as error:
            errors[_error_field(str(error))] = str(error).split(":", 1)[-1].strip()
        else:
            if not saved.created:
                errors["email"] = f"a contact with the address {saved.contact.email} exists already"
    if errors:
        store.rollback()
        flash("The contact was not added: see the fields marked below.", "error")
        return render_template("ui/contacts/new.html", values=values, errors=errors), 400
    store.commit()
    flash(f"Contact {saved.contact.email} added.", "success")
    for warning in saved.warnings:
        flash(f"Check the address: {warning}", "info")
    return redirect(url_for("contacts.detail", contact_id=saved.contact.id))


# ------------------------------------------------------------------ one contact


def _render_detail(
    contact: Contact,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    address_value: str | None = None,
    custom: tuple[list[CustomFieldRow], dict[str, str]] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    store = _store()
    activity = activity_page(store, contact.id, before=request.args.get("before", type=int))
    suppressed = None
    if contact.email:
        try:
            suppressed = suppression.find(store, contact.email)
        except InvalidAddress:
            suppressed = None
    memberships = contact_lists(store, contact.id)
    member_ids = {list_id for list_id, _ in memberships}
    custom_rows, new_field = custom or (custom_field_rows(contact), {"name": "", "value": ""})
    labels = FIELD_LABELS | CUSTOM_LABELS
    labels |= {f"value-{index}": row.key for index, row in enumerate(custom_rows)}
    html = render_template(
        "ui/contacts/detail.html",
        contact=contact,
        values=values
        or {
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "company": contact.company,
            "audience_type": contact.audience_type,
        },
        errors=errors or {},
        address_value=contact.email if address_value is None else address_value,
        activity=activity,
        suppressed=suppressed,
        memberships=memberships,
        other_lists=[choice for choice in list_choices(store) if choice[0] not in member_ids],
        field_labels=labels,
        custom_rows=custom_rows,
        new_field=new_field,
    )
    return html, status


@contacts.get("/<int:contact_id>")
def detail(contact_id: int) -> tuple[str, int]:
    return _render_detail(_contact_or_404(contact_id))


@contacts.post("/<int:contact_id>/edit")
def edit(contact_id: int) -> BaseResponse | tuple[str, int]:
    store = _store()
    contact = _contact_or_404(contact_id)
    values = _contact_form(request.form)
    try:
        changed = edit_contact(
            store,
            contact,
            first_name=values["first_name"],
            last_name=values["last_name"],
            company=values["company"],
            audience_type=values["audience_type"],
            clock=app_clock(current_app),
        )
    except ContactError as error:
        store.rollback()
        flash("Nothing was saved: see the field marked below.", "error")
        message = str(error).split(":", 1)[-1].strip()
        return _render_detail(
            contact, values=values, errors={_error_field(str(error)): message}, status=400
        )
    store.commit()
    flash(
        "Contact saved." if changed else "Nothing to save: the fields are unchanged.",
        "success" if changed else "info",
    )
    return redirect(url_for("contacts.detail", contact_id=contact.id))


def _posted_custom_fields(form: MultiDict[str, str]) -> list[CustomFieldRow]:
    """The shown fields as posted (``key-N`` and ``value-N``, in the page's
    order), so a refused form shows every value as typed."""
    numbers = sorted(int(name[4:]) for name in form if CUSTOM_KEY.fullmatch(name))
    return [
        CustomFieldRow(
            form[f"key-{number}"],
            form.get(f"value-{number}", ""),
            placeholder_for(form[f"key-{number}"]),
        )
        for number in numbers
    ]


@contacts.post("/<int:contact_id>/custom-fields")
def custom_fields(contact_id: int) -> BaseResponse | tuple[str, int]:
    store = _store()
    contact = _contact_or_404(contact_id)
    rows = _posted_custom_fields(request.form)
    new_field = {
        "name": request.form.get("new_name", ""),
        "value": request.form.get("new_value", ""),
    }
    edit = CustomFieldEdit(
        values={row.key: row.text for row in rows},
        new_name=new_field["name"],
        new_value=new_field["value"],
    )
    try:
        changes = edit_custom_fields(store, contact, edit, app_clock(current_app))
    except CustomFieldErrors as error:
        store.rollback()
        errors = {
            f"value-{index}": error.fields[row.key]
            for index, row in enumerate(rows)
            if row.key in error.fields
        }
        errors |= {f"new_{part}": message for part, message in error.new.items()}
        flash("No custom field was saved: see the fields marked below.", "error")
        return _render_detail(contact, errors=errors, custom=(rows, new_field), status=400)
    store.commit()
    flash(_custom_fields_message(changes), "success" if changes else "info")
    return redirect(url_for("contacts.detail", contact_id=contact.id, _anchor="custom-title"))


def _custom_fields_message(changes: CustomFieldChanges) -> str:
    if not changes:
        return "Nothing to save: the custom fields are unchanged."
    parts = [
        f"{verb} {', '.join(keys)}"
        for verb, keys in (
            ("added", changes.added),
            ("changed", changes.changed),
            ("removed", changes.removed),
        )
        if keys
    ]
    return "Custom fields saved: " + "; ".join(parts) + "."


@contacts.post("/<int:contact_id>/address")
def address(contact_id: int) -> BaseResponse | tuple[str, int]:
    store = _store()
    contact = _contact_or_404(contact_id)
    new_address = request.form.get("email", "")[:1000]
    old = contact.email
    try:
        saved = change_address(
            store, contact, new_address, app_clock(current_app), _own_addresses()
        )
    except (InvalidAddress, ContactError) as error:
        store.rollback()
        store.refresh(contact)
        flash("The address was not changed: see the field marked below.", "error")
        message = str(error).removeprefix("email: ")
        return _render_detail(
            contact, errors={"email": message}, address_value=new_address, status=400
        )
    store.commit()
    flash(f"The address {old} is now {saved.contact.email}.", "success")
    for warning in saved.warnings:
        flash(f"Check the address: {warning}", "info")
    return redirect(url_for("contacts.detail", contact_id=contact.id))


def _opt(contact_id: int, opted_out: bool) -> BaseResponse:
    store = _store()
    contact = _contact_or_404(contact_id)
    source = f"web: {web_user().email}"
    changed = change_opt_out(store, contact, opted_out, source, app_clock(current_app))
    store.commit()
    if not changed:
        flash(
            f"{contact.email or 'The contact'} was already opted {'out' if opted_out else 'in'}.",
            "info",
        )
    elif opted_out:
        flash(f"{contact.email or 'The contact'} is opted out of mass email.", "success")
    else:
        flash(f"{contact.email or 'The contact'} is opted in to mass email again.", "success")
    return redirect(url_for("contacts.detail", contact_id=contact.id))


@contacts.post("/<int:contact_id>/opt-out")
def opt_out(contact_id: int) -> BaseResponse:
    return _opt(contact_id, True)


@contacts.post("/<int:contact_id>/opt-in")
def opt_in(contact_id: int) -> BaseResponse:
    return _opt(contact_id, False)


@contacts.post("/<int:contact_id>/delete")
def delete(contact_id: int) -> BaseResponse:
    store = _store()
    contact = _contact_or_404(contact_id)
    shown = contact.email or f"contact {contact.id}"
    delete_contact(store, contact)
    store.commit()
    flash(f"Contact {shown} deleted. Its past mail stays in the campaign logs.", "success")
    return redirect(url_for("contacts.index"))


@contacts.post("/<int:contact_id>/lists")
def add_to_list(contact_id: int) -> BaseResponse:
    store = _store()
    contact = _contact_or_404(contact_id)
    try:
        target_list = target_list_by_id(store, request.form.get("target_list", type=int) or 0)
    except LookupError:
        flash("Not added: choose a list.", "error")
        return redirect(url_for("contacts.detail", contact_id=contact.id))
    added = add_members(store, target_list, [contact.id], app_clock(current_app))
    store.commit()
    if added:
        flash(f"Added to list {target_list.name}.", "success")
    else:
        flash(f"Already on list {target_list.name}.", "info")
    return redirect(url_for("contacts.detail", contact_id=contact.id))


@contacts.post("/<int:contact_id>/lists/<int:list_id>/remove")
def remove_from_list(contact_id: int, list_id: int) -> BaseResponse:
    store = _store()
    contact = _contact_or_404(contact_id)
    try:
        target_list = target_list_by_id(store, list_id)
    except LookupError:
        abort(404)
    removed = remove_members(store, target_list, [contact.id], app_clock(current_app))
    store.commit()
    if removed:
        flash(f"Removed from list {target_list.name}.", "success")
    else:
        flash(f"Not on list {target_list.name}.", "info")
    return redirect(url_for("contacts.detail", contact_id=contact.id))


# ------------------------------------------------------------------ CSV import


def _inline_max_bytes() -> int:
    return app_settings(current_app).import_inline_max_kilobytes * 1024


def _import_max_bytes() -> int:
    return app_settings(current_app).import_max_megabytes * 1024 * 1024


def _render_import(
    values: dict[str, Any], errors: dict[str, str], status: int = 200
) -> tuple[str, int]:
    store = _store()
    html = render_template(
        "ui/contacts/import.html",
        values=values,
        errors=errors,
        encodings=ENCODING_CHOICES,
        lists=list_choices(store),
        imports=recent_imports(store),
        active=active_imports(store),
        progress_of=describe_progress,
        percent_of=progress_percent,
        inline_size=megabytes(_inline_max_bytes()),
        max_size=megabytes(_import_max_bytes()),
        live_interval=LIVE_INTERVAL_SECONDS,
    )
    return html, status


IMPORT_LABELS = {
    "file": "CSV file",
    "list_name": "Target list",
    "default_type": "Type for rows without one",
    "encoding": "Encoding",
}
_NO_VALUES = {"list_name": "", "default_type": "", "encoding": DETECT, "update": False}


@contacts.get("/import")
def import_form() -> tuple[str, int]:
    return _render_import(dict(_NO_VALUES), {})


@contacts.post("/import")
def import_upload() -> BaseResponse | tuple[str, int]:
    """Small files are imported while the request waits (their report at
    once); bigger ones are stored for the runner's contact-import job."""
    list_name = request.form.get("list_name", "")[:1000]
    default_type = request.form.get("default_type", "")[:1000]
    encoding = request.form.get("encoding", DETECT)[:50]
    update = "update" in request.form
    values: dict[str, Any] = {
        "list_name": list_name,
        "default_type": default_type,
        "encoding": encoding,
        "update": update,
    }
    errors: dict[str, str] = {}
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        errors["file"] = "choose a CSV file"
    if not list_name.strip():
        errors["list_name"] = "name the list the contacts go on (a new name creates it)"
    if errors:
        flash("Nothing was imported: see the fields marked below.", "error")
        return _render_import(values, errors, 400)
    assert upload is not None
    choices = ImportRequest(
        upload.filename or "", list_name, update, default_type or None, encoding
    )
    store = _store()
    try:
        if upload_size(upload.stream) > _inline_max_bytes():
            return _queue_upload(upload, choices)
        return _import_now(upload, choices)
    except UploadError as error:
        errors[error.field] = str(error)
    except ImportFileError as error:
        errors["file"] = web_message(str(error)) + "; nothing was imported"
    except ContactError as error:
        head = str(error).split(":", 1)[0]
        field = "list_name" if head == "list name" else "default_type"
        errors[field] = str(error).split(":", 1)[-1].strip()
    store.rollback()
    flash("Nothing was imported: see the fields marked below.", "error")
    return _render_import(values, errors, 400)


def _import_now(upload: FileStorage, choices: ImportRequest) -> BaseResponse:
    done = run_import(
        _store(),
        upload.stream.read(_inline_max_bytes() + 1),
        file_name=choices.file_name,
        list_name=choices.list_name,
        update=choices.update,
        default_type=choices.default_type,
        encoding=choices.encoding,
        clock=app_clock(current_app),
        own_addresses=_own_addresses(),
        max_bytes=_inline_max_bytes(),
    )
    summary = done.summary
    flash(
        f"Imported {summary.rows:,} row(s) into list {summary.list_name}: "
        f"{summary.created:,} created, {summary.updated:,} updated, "
        f"{summary.unchanged:,} unchanged, {summary.merged:,} merged, "
        f"{summary.rejected:,} rejected; {summary.warnings:,} warning(s).",
        "success" if not summary.rejected else "info",
    )
    return redirect(
        url_for("contacts.import_report", import_id=summary.import_id, encoding=done.encoding)
    )


def _queue_upload(upload: FileStorage, choices: ImportRequest) -> BaseResponse:
    record = queue_import(
        _store(),
        upload.stream,
        choices,
        folder=imports_folder(current_app.instance_path),
        max_bytes=_import_max_bytes(),
        clock=app_clock(current_app),
    )
    flash(
        f"{record.file_name} ({megabytes(record.file_size)}) is imported in the background: "
        "its progress is shown below, and its report once it is done.",
        "success",
    )
    return redirect(url_for("contacts.import_form"))


@contacts.errorhandler(RequestEntityTooLarge)
def _too_large(error: RequestEntityTooLarge) -> tuple[str, int]:
    # Raised while the CSRF check reads the form, before the log-in check:
    # only a logged-in user sees the page (with the lists and imports).
    if not current_user.is_authenticated:
        return "The request is too large.", 413
    limit = int(current_app.config[LARGE_UPLOAD_CONFIG_KEY]) - 1024 * 1024
    message = (
        f"the upload is larger than {megabytes(limit)}, the most the browser imports; "
        + COMMAND_LINE_HINT
    )
    flash("Nothing was imported: the file is too large.", "error")
    return _render_import(dict(_NO_VALUES), {"file": message}, 413)


@contacts.get("/imports/live")
def imports_live() -> BaseResponse:
    """The background imports waiting or running, for import.js."""
    return jsonify(
        {
            "imports": [
                {
                    "id": record.id,
                    "state": record.state.value,
                    "progress": describe_progress(record),
                    "done": record.bytes_done,
                    "total": record.file_size,
                }
                for record in active_imports(_store())
            ]
        }
    )


@contacts.get("/imports/<int:import_id>")
def import_report(import_id: int) -> str:
    store = _store()
    try:
        record = import_by_id(store, import_id)
    except LookupError:
        abort(404)
    rejected = problems_page(
        store, import_id, ImportProblemKind.REJECTED, after=request.args.get("after", type=int)
    )
    warnings = problems_page(
        store, import_id, ImportProblemKind.WARNING, after=request.args.get("wafter", type=int)
    )
    encoding = record.encoding if record.background else request.args.get("encoding", "")
    return render_template(
        "ui/contacts/import_report.html",
        record=record,
        rejected=rejected,
        warnings=warnings,
        message_of=problem_message,
        encoding=encoding_label(encoding) if encoding and encoding != DETECT else "",
        progress_of=describe_progress,
        percent_of=progress_percent,
        live_interval=LIVE_INTERVAL_SECONDS,
    )


@contacts.get("/imports/<int:import_id>/rejected.csv")
def rejected_csv(import_id: int) -> Response:
    store = _store()
    try:
        record = import_by_id(store, import_id)
    except LookupError:
        abort(404)

    name = f"import-{import_id}.rejected.csv"
    # Streamed: a background import's rejected rows may be many megabytes.
    return Response(
        stream_with_context(rejected_rows_csv(store, record)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
