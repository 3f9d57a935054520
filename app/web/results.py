"""Blueprint ``results`` (``/results``, administrators and marketers): a
mass email's results (SPEC §6). Views are thin: ``app.services.results``
counts, pages and renders; ``app.services.results_chart`` draws the chart;
``app.services.target_lists.target_list_from_results`` makes a list.

Rules kept here:

- **Unknown, deleted or draft mass emails and foreign recipients are a
  404**; a malformed filter or keyset is a 400 naming the parameter.
- **The message as sent never runs and never counts.** Its HTML is served
  on its own URL with a CSP ``sandbox`` (a unique origin, no script, no
  form) and shown in an ``<iframe sandbox>`` framed only by our own page;
  it carries the test item's links and no open pixel
  (``results.message_copy``), so looking or clicking records nothing.
- **The chart is an image**: an SVG without script (``results_chart``)
  served with a policy that allows no script, shown as ``<img>``, with the
  same numbers in a table on the page.
- **The CSV export streams** (``stream_with_context``): memory stays flat
  for any number of log rows.
- **"Make a target list from these"** is a POST (CSRF-checked like every
  form); a bad name shows next to its field and creates nothing.
"""

from __future__ import annotations

import re

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from app import app_settings
from app.context import app_clock
from app.extensions import current_session
from app.services.messages import public_links
from app.services.results import (
    FILTER_LABELS,
    RecipientFilter,
    ResultsError,
    campaign_log_csv,
    get_results_mass_email,
    mass_emails_with_results,
    message_copy,
    opens_and_clicks,
    parse_filter,
    recipient_detail,
    recipient_page,
    results_summary,
)
from app.services.results_chart import SIZES, timeline_svg, width_text
from app.services.runtime_settings import get_runtime_settings
from app.services.target_lists import TargetListError, target_list_from_results
from app.web.formatting import display_zone

results = Blueprint("results", __name__, url_prefix="/results")

INDEX_PAGE_SIZE = 25
DESCRIPTION_MAX_LENGTH = 2000
# The recipient's copy: sandboxed (no script, no form, a unique origin),
# the marketer's images and styles allowed, framed by our own page only.
MESSAGE_POLICY = (
    "sandbox; default-src 'none'; img-src http: https: data:; "
    "style-src 'unsafe-inline' http: https:; font-src http: https: data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
# The chart: pygal's inline <style>, nothing else.
CHART_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox"
_ID = re.compile(r"[0-9]{1,18}", re.ASCII)


def _id_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not _ID.fullmatch(raw):
        abort(400, description=f"{name}: expected a queue item id (a whole number)")
    return int(raw)


def _filter_arg() -> RecipientFilter:
    try:
        return parse_filter(request.args.get("status"))
    except ValueError as error:
        abort(400, description=str(error))


@results.errorhandler(ResultsError)
def _not_found(error: ResultsError) -> tuple[str, int]:
    return render_template("ui/results/not_found.html", reason=str(error)), 404


@results.get("")
def index() -> str:
    after = _id_arg("after")
    mass_emails = mass_emails_with_results(current_session(), after, INDEX_PAGE_SIZE + 1)
    return render_template(
        "ui/results/index.html",
        mass_emails=mass_emails[:INDEX_PAGE_SIZE],
        next_after=mass_emails[INDEX_PAGE_SIZE - 1].id
        if len(mass_emails) > INDEX_PAGE_SIZE
        else None,
        first_page=after is None,
    )


def _summary_page(
    mass_email_id: int,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    store = current_session()
    summary = results_summary(store, mass_email_id)
    timeline = opens_and_clicks(store, mass_email_id)
    return render_template(
        "ui/results/summary.html",
        summary=summary,
        timeline=timeline,
        width_text=width_text(timeline.width),
        filters=list(RecipientFilter),
        F=RecipientFilter,
        labels=FILTER_LABELS,
        errors=errors or {},
        form=form or {"status": RecipientFilter.EVER_CLICKED.value, "name": "", "description": ""},
    ), status


@results.get("/<int:mass_email_id>")
def summary(mass_email_id: int) -> tuple[str, int]:
    return _summary_page(mass_email_id)


@results.get("/<int:mass_email_id>/chart.svg")
def chart(mass_email_id: int) -> Response:
    store = current_session()
    mass_email = get_results_mass_email(store, mass_email_id)
    size = request.args.get("size", "wide")
    if size not in SIZES:
        abort(400, description=f"size: one of {', '.join(SIZES)}")
    title = f"Opens and clicks: {mass_email.name}"
    svg = timeline_svg(opens_and_clicks(store, mass_email_id), title, size, display_zone())
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = CHART_POLICY
    return response


@results.get("/<int:mass_email_id>/recipients")
def recipients(mass_email_id: int) -> str:
    chosen = _filter_arg()
    after, before = _id_arg("after"), _id_arg("before")
    store = current_session()
    # No counts here: the summary page has them, and a page of 50 must not
    # pay for a pass over the whole queue (bench/ui_results.py).
    mass_email = get_results_mass_email(store, mass_email_id)
    page = recipient_page(store, mass_email_id, chosen, after=after, before=before)
    return render_template(
        "ui/results/recipients.html",
        mass_email=mass_email,
        page=page,
        filters=list(RecipientFilter),
        F=RecipientFilter,
        labels=FILTER_LABELS,
        first_page=after is None and before is None,
    )


@results.get("/<int:mass_email_id>/recipients/<int:item_id>")
def recipient(mass_email_id: int, item_id: int) -> str:
    store = current_session()
    return render_template(
        "ui/results/recipient.html",
        mass_email=get_results_mass_email(store, mass_email_id),
        detail=recipient_detail(store, mass_email_id, item_id),
    )


@results.get("/<int:mass_email_id>/recipients/<int:item_id>/message")
def message(mass_email_id: int, item_id: int) -> Response:
    store = current_session()
    runtime = get_runtime_settings(store)
    links = public_links(runtime, app_settings(current_app), current_app.config["SECRET_KEY"])
    html = message_copy(store, mass_email_id, item_id, links)
    if html is None:
        html = render_template("ui/results/message_unavailable.html")
        response = Response(html, status=404, mimetype="text/html")
    else:
        response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = MESSAGE_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@results.get("/<int:mass_email_id>/log.csv")
def export_log(mass_email_id: int) -> Response:
    store = current_session()
    get_results_mass_email(store, mass_email_id)  # a 404 before streaming starts
    response = Response(
        stream_with_context(campaign_log_csv(store, mass_email_id)),
        mimetype="text/csv",
    )
    response.headers["Content-Disposition"] = (
        f'attachment; filename="mass-email-{mass_email_id}-campaign-log.csv"'
    )
    return response


@results.post("/<int:mass_email_id>/target-list")
def make_target_list(mass_email_id: int) -> BaseResponse | tuple[str, int]:
    store = current_session()
    get_results_mass_email(store, mass_email_id)
    form = {
        "status": request.form.get("status", ""),
        "name": request.form.get("name", ""),
        "description": request.form.get("description", ""),
    }
    errors: dict[str, str] = {}
    chosen = RecipientFilter.ALL
    try:
        chosen = parse_filter(form["status"] or None)
    except ValueError:
        errors["status"] = "choose one of the listed recipients"
    if len(form["description"]) > DESCRIPTION_MAX_LENGTH:
        errors["description"] = f"at most {DESCRIPTION_MAX_LENGTH} characters"
    if not errors:
        try:
            target_list, added = target_list_from_results(
                store,
                mass_email_id,
                chosen,
                name=form["name"],
                description=form["description"],
                clock=app_clock(current_app),
            )
        except TargetListError as error:
            store.rollback()
            field = "description" if str(error).startswith("description") else "name"
            errors[field] = str(error).removeprefix("list name: ").removeprefix("description: ")
        else:
            store.commit()
            flash(
                f"Target list “{target_list.name}” created with {added} contact(s) "
                f"({FILTER_LABELS[chosen].lower()}).",
                "success",
            )
            return redirect(url_for("results.summary", mass_email_id=mass_email_id), code=303)
    flash("No target list was created: see the fields marked below.", "error")
    form["name"] = form["name"][:300]
    form["description"] = form["description"][: DESCRIPTION_MAX_LENGTH + 100]
    return _summary_page(mass_email_id, errors, form, 400)
