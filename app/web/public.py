"""Blueprint ``public``: the links in sent mail. No login.

``/t/c/<token>`` click redirect, ``/t/o/<token>.gif`` open pixel,
``/u/<token>`` opt-out (GET confirmation page, POST opt-out, RFC 8058
one-click POST), ``/u/<token>/opt-in``, ``/v/<token>`` view online.

Rules kept here (the rest is in ``app.services.engagement``):

- The signed token is the only authority: a forged, tampered or unknown
  token is a 404, except for the pixel, which always answers with the image
  so that it does not tell which tokens are valid.
- A click redirects only to the URL stored for that mass email's link id,
  never to anything taken from the request (no ``?next=``, no Host header).
- GET never changes anything: mail-security scanners follow every link in a
  message, and an opt-out must not happen because one did.
- The POSTs come from mail clients and from our own confirmation page
  without a session: no cookie is ever set here and there is no CSRF token.
  When the UI adds CSRF protection, this blueprint must be exempted.
- Every page is HTML-escaped (Jinja autoescape), sent with
  ``Referrer-Policy: no-referrer`` (the token must not leak to the sites the
  recipient goes on to) and ``X-Robots-Tag: noindex``.
"""

from __future__ import annotations

import base64

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response as BaseResponse

from app import app_settings
from app.clock import Clock
from app.context import app_clock
from app.extensions import current_session
from app.services.engagement import (
    OptInResult,
    OptOutSource,
    find_recipient,
    is_test_item,
    mask_address,
    opt_in,
    opt_out,
    record_click,
    record_open,
)
from app.services.public_links import PublicLinks
from app.services.runtime_settings import get_runtime_settings
from app.services.tokens import ItemPurpose, LinkSigner
from app.services.view_online import render_view_online

public = Blueprint("public", __name__)

SIGNER_KEY = "sluice_link_signer"
# RFC 8058 §3.1: the one-click POST body is exactly this one field.
ONE_CLICK_FORM = {"List-Unsubscribe": ["One-Click"]}
# A form of one or two small fields; anything larger is not ours.
MAX_POST_BYTES = 4096
TRANSPARENT_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

# Our own pages: no scripts, no framing (the opt-in button must not be
# clickjacked), forms only to ourselves.
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The marketer's HTML shown online runs in a sandbox: a unique origin with
# no scripts, so it can never act on this site; links still open.
VIEW_ONLINE_POLICY = (
    "sandbox allow-popups allow-popups-to-escape-sandbox; "
    "default-src 'none'; img-src http: https: data:; style-src 'unsafe-inline' http: https:; "
    "font-src http: https: data:; frame-ancestors 'none'"
)


@public.record_once
def _make_signer(state: BlueprintSetupState) -> None:
    state.app.extensions[SIGNER_KEY] = LinkSigner(state.app.config["SECRET_KEY"])


@public.before_request
def _limit_body() -> None:
    request.max_content_length = MAX_POST_BYTES


@public.after_request
def _privacy_headers(response: Response) -> Response:
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@public.get("/t/c/<token>")
def click(token: str) -> BaseResponse | str:
    verified = _signer().verify_click(token)
    if verified is None:
        abort(404)
    item_id, link_id = verified
    if is_test_item(item_id):
        return render_template("public/test_message.html", company=_company_name())
    url = record_click(current_session(), item_id, link_id, _clock(), _user_agent())
    if url is None:
        abort(404)
    current_session().commit()
    return redirect(url, code=302)


@public.get("/t/o/<token>.gif")
def open_pixel(token: str) -> Response:
    item_id = _signer().verify_item("open", token)
    if item_id is not None and record_open(current_session(), item_id, _clock(), _user_agent()):
        current_session().commit()
    response = Response(TRANSPARENT_GIF, mimetype="image/gif")
    # Every load must reach us to be counted; image proxies that cache
    # anyway are a known limit of open tracking.
    response.headers["Cache-Control"] = "no-cache, no-store, must-revalidate, max-age=0"
    response.headers["Pragma"] = "no-cache"
    response.headers["Expires"] = "0"
    return response


@public.get("/u/<token>")
def opt_out_page(token: str) -> str:
    item_id = _verified_item("opt_out", token)
    return render_template(
        "public/opt_out.html",
        company=_company_name(),
        address=_masked_address(item_id),
        test=is_test_item(item_id),
        token=token,
    )


@public.post("/u/<token>")
def opt_out_submit(token: str) -> Response | str:
    item_id = _verified_item("opt_out", token)
    if request.form.to_dict(flat=False) == ONE_CLICK_FORM:
        # RFC 8058 §3.2: the mail client's one-click POST; no page, no redirect.
        _opt_out(item_id, OptOutSource.ONE_CLICK)
        return Response("You have been unsubscribed.\n", mimetype="text/plain")
    _opt_out(item_id, OptOutSource.LINK)
    return render_template(
        "public/opted_out.html",
        company=_company_name(),
        address=_masked_address(item_id),
        test=is_test_item(item_id),
        token=token,
    )


@public.post("/u/<token>/opt-in")
def opt_in_submit(token: str) -> str:
    item_id = _verified_item("opt_out", token)
    result = OptInResult.UNKNOWN
    if not is_test_item(item_id):
        result = opt_in(current_session(), item_id, _clock())
        current_session().commit()
    return render_template(
        "public/opted_in.html",
        company=_company_name(),
        result=result.value,
        test=is_test_item(item_id),
    )


@public.get("/v/<token>")
def view_online(token: str) -> Response | str:
    item_id = _verified_item("view", token)
    if is_test_item(item_id):
        return render_template("public/test_message.html", company=_company_name())
    item = find_recipient(current_session(), item_id)
    html = None if item is None else render_view_online(current_session(), item, _links())
    if html is None:
        abort(404)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = VIEW_ONLINE_POLICY
    return response


def _opt_out(item_id: int, source: OptOutSource) -> None:
    if is_test_item(item_id):
        return
    opt_out(current_session(), item_id, source, _clock())
    current_session().commit()


def _verified_item(purpose: ItemPurpose, token: str) -> int:
    """The queue item id of a valid token whose item exists (or the test
    item); 404 otherwise."""
    item_id = _signer().verify_item(purpose, token)
    if item_id is None:
        abort(404)
    if not is_test_item(item_id) and find_recipient(current_session(), item_id) is None:
        abort(404)
    return item_id


def _masked_address(item_id: int) -> str:
    item = find_recipient(current_session(), item_id)
    return "" if item is None else mask_address(item.email)


def _company_name() -> str:
    return get_runtime_settings(current_session()).company_name


def _links() -> PublicLinks:
    site_url = get_runtime_settings(current_session()).site_url
    return PublicLinks(site_url, _signer(), app_settings(current_app).bounce_address)


def _signer() -> LinkSigner:
    signer = current_app.extensions[SIGNER_KEY]
    assert isinstance(signer, LinkSigner)
    return signer


def _clock() -> Clock:
    return app_clock(current_app)


def _user_agent() -> str:
    return request.headers.get("User-Agent", "")
