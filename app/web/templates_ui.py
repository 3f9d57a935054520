"""Blueprint ``email_templates`` (``/templates``): the email templates'
list, editor (placeholder helper, live preview, errors with their line),
and deletion. Named so as not to clash with Flask's ``templates`` folder.

Rules kept here (the content rules are ``app.services.campaigns``' and
``app.services.template_editor``'s):

- **The preview never runs the mail's HTML in the app's origin.** It is
  served on its own URL with ``PREVIEW_POLICY`` (a CSP ``sandbox``, no
  script, no form, framed only by our pages) and shown in an
  ``<iframe sandbox>`` without ``allow-scripts`` — as ``/dev/mail`` does.
  Images may load (the template's logo is an http(s) URL); the preview has
  no open pixel, and its links are those of the test item 0, which record
  nothing.
- **Live preview** of content not yet saved: the editor's form is posted
  (with its CSRF token) to ``/templates/preview`` into the frames, at
  desktop and mobile width; ``templates_editor.js`` does so as one types,
  the "Preview" button without it.
- Saving reports every problem next to its field, with its line; nothing
  is saved while one remains.
"""

from __future__ import annotations

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
from werkzeug.wrappers import Response as BaseResponse

from app import app_settings
from app.context import app_clock
from app.extensions import current_session
from app.models import EmailTemplate
from app.services.campaign_pages import templates_page
from app.services.campaigns import (
    CampaignError,
    TemplateInput,
    delete_template,
    save_template,
    template_users,
)
from app.services.messages import public_links
from app.services.rendering import TemplateProblem, TemplateSource
from app.services.runtime_settings import RuntimeSettings, get_runtime_settings
from app.services.template_editor import (
    PLACEHOLDERS,
    Preview,
    PreviewContactError,
    footer_problems,
    preview_contact,
    preview_source,
)

email_templates = Blueprint("email_templates", __name__, url_prefix="/templates")

# A rendered message: a sandbox (unique origin, no script, no form, no
# navigation of the page around it), its own inline styles, images from
# anywhere (the logo), framed only by our pages.
PREVIEW_POLICY = (
    "default-src 'none'; img-src data: http: https:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)
SETTINGS_MISSING = TemplateProblem("settings", None, "missing: run `sluice init` first")
TEMPLATE_FIELDS = ("name", "subject", "body_html", "body_text", "header_logo_url", "footer_html")
LABELS = {
    "name": "Name",
    "subject": "Subject",
    "body_html": "HTML body",
    "body_text": "Text body",
    "header_logo_url": "Logo URL",
    "footer_html": "Footer text",
    "template_id": "Template",
    "preview_contact": "Preview for",
}


# ------------------------------------------------------------------ shared helpers


def runtime_settings() -> RuntimeSettings | None:
    """The runtime settings, or None (with a flash saying what to do) when
    ``sluice init`` has not seeded them."""
    try:
        return get_runtime_settings(current_session())
    except LookupError:
        flash("The settings are missing: run `sluice init` first.", "error")
        return None


def after_argument() -> int | None:
    """The keyset pagination's ``after`` argument; 400 when malformed."""
    raw = request.args.get("after", "")
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        abort(400, description="after: expected a whole number")
    return int(raw)


def preview_response(preview: Preview, status: int = 200) -> Response:
    """A preview for a frame, under ``PREVIEW_POLICY``: the message's HTML,
    or a page listing the problems that stop it."""
    if preview.ok:
        body = preview.html
    else:
        body = render_template(
            "ui/email_templates/preview_problems.html", problems=preview.problems
        )
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_POLICY
    response.headers["Cache-Control"] = "no-store"
    return response


def problem_errors(problems: tuple[TemplateProblem, ...]) -> dict[str, str]:
    """Field → its problems as one text ("line 3: …; line 9: …")."""
    errors: dict[str, list[str]] = {}
    for problem in problems:
        text = problem.message
        if problem.line is not None:
            text = f"line {problem.line}: {text}"
        errors.setdefault(problem.field, []).append(text)
    return {field: "; ".join(texts) for field, texts in errors.items()}


def _contact_address() -> str:
    return (request.values.get("preview_contact") or "")[:320]


def _preview(source: TemplateSource) -> Preview:
    runtime = runtime_settings()
    if runtime is None:
        return Preview(problems=(SETTINGS_MISSING,))
    try:
        contact = preview_contact(current_session(), _contact_address())
    except PreviewContactError as error:
        return Preview(problems=(TemplateProblem("preview_contact", None, str(error)),))
    links = public_links(runtime, app_settings(current_app), str(current_app.config["SECRET_KEY"]))
    return preview_source(source, contact, runtime=runtime, links=links)


# ------------------------------------------------------------------ pages


@email_templates.get("")
def template_list() -> str:
    page = templates_page(current_session(), after_argument())
    return render_template("ui/email_templates/list.html", page=page)


def _form_values() -> dict[str, str]:
    return {name: request.form.get(name, "") for name in TEMPLATE_FIELDS}


def _template_values(template: EmailTemplate) -> dict[str, str]:
    return {
        "name": template.name,
        "subject": template.subject,
        "body_html": template.body_html,
        "body_text": template.body_text or "",
        "header_logo_url": template.header_logo_url,
        "footer_html": template.footer_html,
    }


def _render_editor(
    template: EmailTemplate | None,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> tuple[str, int]:
    runtime = runtime_settings()
    page = render_template(
        "ui/email_templates/edit.html",
        template=template,
        values=values,
        errors=errors,
        labels=LABELS,
        placeholders=PLACEHOLDERS,
        footer_problems=[] if runtime is None else footer_problems(runtime),
        preview_contact=_contact_address(),
        users=[] if template is None else template_users(current_session(), template.id),
    )
    return page, status


def _template(template_id: int) -> EmailTemplate:
    template = current_session().get(EmailTemplate, template_id)
    if template is None:
        abort(404)
    return template


@email_templates.get("/new")
def new_template() -> tuple[str, int]:
    empty = dict.fromkeys(TEMPLATE_FIELDS, "")
    empty["body_html"] = "<p>Hello {{ first_name }},</p>\n"
    return _render_editor(None, empty, {})


@email_templates.post("/new")
def create_template() -> BaseResponse | tuple[str, int]:
    return _save(None)


@email_templates.get("/<int:template_id>")
def edit_template(template_id: int) -> tuple[str, int]:
    template = _template(template_id)
    return _render_editor(template, _template_values(template), {})


@email_templates.post("/<int:template_id>")
def update_template(template_id: int) -> BaseResponse | tuple[str, int]:
    return _save(_template(template_id))


def _save(template: EmailTemplate | None) -> BaseResponse | tuple[str, int]:
    values = _form_values()
    store = current_session()
    data = TemplateInput(
        name=values["name"],
        subject=values["subject"],
        body_html=values["body_html"],
        body_text=values["body_text"] or None,
        header_logo_url=values["header_logo_url"],
        footer_html=values["footer_html"],
    )
    try:
        saved = save_template(
            store, data, app_clock(current_app), None if template is None else template.id
        )
    except CampaignError as error:
        store.rollback()
        errors = (
            problem_errors(error.template_problems)
            if error.template_problems
            else {error.field: error.message}
        )
        flash("The template was not saved: see the fields marked below.", "error")
        current = None if template is None else store.get(EmailTemplate, template.id)
        return _render_editor(current, values, errors, 400)
    store.commit()
    flash(f"Template {saved.name!r} saved.", "success")
    return redirect(url_for("email_templates.edit_template", template_id=saved.id))


@email_templates.get("/<int:template_id>/delete")
def confirm_delete(template_id: int) -> str:
    template = _template(template_id)
    return render_template(
        "ui/email_templates/delete.html",
        template=template,
        users=template_users(current_session(), template.id),
    )


@email_templates.post("/<int:template_id>/delete")
def delete(template_id: int) -> BaseResponse:
    store = current_session()
    template = _template(template_id)
    name = template.name
    try:
        delete_template(store, template)
    except CampaignError as error:
        store.rollback()
        flash(f"The template was not deleted: {error.message}.", "error")
        return redirect(url_for("email_templates.edit_template", template_id=template_id))
    store.commit()
    flash(f"Template {name!r} deleted.", "success")
    return redirect(url_for("email_templates.template_list"))


# ------------------------------------------------------------------ previews


@email_templates.get("/<int:template_id>/preview")
def saved_preview(template_id: int) -> Response:
    """The saved template, rendered for ``?preview_contact=``."""
    template = _template(template_id)
    values = _template_values(template)
    return preview_response(_preview(_source(values)))


@email_templates.post("/preview")
def live_preview() -> Response:
    """The editor's content as posted (not saved), rendered for the form's
    ``preview_contact``."""
    return preview_response(_preview(_source(_form_values())))


def _source(values: dict[str, Any]) -> TemplateSource:
    return TemplateSource(
        subject=values["subject"],
        body_html=values["body_html"],
        body_text=values["body_text"] or None,
        header_logo_url=values["header_logo_url"].strip(),
        footer_html=values["footer_html"],
    )
