"""Blueprint ``dev_mail``: the mail the development catcher caught, at
``/dev/mail`` (``app.services.mail_catcher``, started by ``sluice run``).

Rules kept here (the folder's rules are in ``app.services.caught_mail``):

- **Only with a catcher.** The pages exist only while
  ``app.config[MAIL_CATCHER_DIR_KEY]`` names a folder, read at each request
  (``sluice run`` sets it when it starts the catcher); otherwise every
  ``/dev/mail`` URL is a 404, so a production server shows nothing.
- **Mail HTML never runs.** A message's HTML part is served on its own URL
  with a CSP ``sandbox`` and ``default-src 'none'`` (no script, no remote
  image, font or stylesheet: looking at a message must not fetch tracking
  pixels or anything else), and shown in an ``<iframe sandbox>``. Every
  other value (subject, headers, text part) is HTML-escaped by Jinja.
- **Behind the log-in**, like every page of the UI (``app.web.access``).
- **Clearing is a POST** (a link scanner or prefetch must not empty the
  folder) with the UI's CSRF token (``app.web.security``).
- Ids are validated by ``caught_mail``: anything else is a 404.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from app.services import caught_mail

MAIL_CATCHER_DIR_KEY = "MAIL_CATCHER_DIR"

dev_mail = Blueprint("dev_mail", __name__, url_prefix="/dev/mail")

# Our own pages: no scripts at all; the app's stylesheet; frames only from
# ourselves (the HTML part).
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# A caught message's HTML: a sandbox (unique origin, no scripts, no forms),
# inline images and styles only, framed only by our message page.
MESSAGE_HTML_POLICY = (
    "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)


def catcher_directory() -> Path | None:
    configured = current_app.config.get(MAIL_CATCHER_DIR_KEY)
    return Path(configured) if configured else None


def _directory() -> Path:
    directory = catcher_directory()
    if directory is None:
        abort(404)
    return directory


@dev_mail.before_request
def _only_with_a_catcher() -> None:
    _directory()


@dev_mail.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _page_number() -> int:
    raw = request.args.get("page", "1")
    if not re.fullmatch(r"[0-9]{1,9}", raw, re.ASCII) or int(raw) < 1:
        abort(400, description="page: expected a whole number of at least 1")
    return int(raw)


@dev_mail.get("")
def message_list() -> str:
    page = caught_mail.list_messages(_directory(), _page_number())
    return render_template("dev_mail/list.html", page=page)


@dev_mail.post("/clear")
def clear() -> BaseResponse:
    caught_mail.clear_all(_directory())
    return redirect(url_for("dev_mail.message_list"), code=303)


def _message(message_id: str) -> caught_mail.CaughtMessage:
    message = caught_mail.read_message(_directory(), message_id)
    if message is None:
        abort(404)
    return message


@dev_mail.get("/<message_id>")
def message_detail(message_id: str) -> str:
    return render_template("dev_mail/message.html", message=_message(message_id))


@dev_mail.get("/<message_id>/html")
def message_html(message_id: str) -> Response:
    html = _message(message_id).html
    if html is None:
        abort(404)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = MESSAGE_HTML_POLICY
    return response


@dev_mail.get("/<message_id>/raw")
def message_raw(message_id: str) -> Response:
    response = Response(_message(message_id).raw, mimetype="message/rfc822")
    response.headers["Content-Disposition"] = f'attachment; filename="{message_id}.eml"'
    return response
