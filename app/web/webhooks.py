"""Blueprint ``webhooks``: ``POST /webhooks/<provider>`` for relays'
delivery events (``app.services.webhooks`` holds the rules).

No session, no cookie, no CSRF token: a relay authenticates by signature
(or Postmark's basic credentials), checked against the raw body before
anything is read. Answers JSON: 200 with what was applied, 400 for a body
that is not the provider's JSON, 403 for a bad signature, 404 for a
provider that is not configured, 413 for an oversized body; nothing is
changed unless the answer is 200.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from app import app_settings
from app.context import app_clock
from app.extensions import current_session
from app.services.webhooks import (
    MAX_BODY_BYTES,
    Provider,
    SnsWeb,
    WebhookConfig,
    WebhookRefused,
    WebhookRequest,
    receive,
)

webhooks = Blueprint("webhooks", __name__, url_prefix="/webhooks")

# Tests put an ``SnsWeb`` here that trusts their local HTTPS server.
SNS_WEB_KEY = "sluice_sns_web"


def webhook_config(app: Flask) -> WebhookConfig:
    settings = app_settings(app)
    return WebhookConfig(
        ses_topic_arns=frozenset(
            arn.strip() for arn in settings.webhook_ses_topic_arns.split(",") if arn.strip()
        ),
        sendgrid_public_key=settings.webhook_sendgrid_public_key,
        mailgun_signing_key=settings.webhook_mailgun_signing_key,
        postmark_credentials=settings.webhook_postmark_credentials,
    )


def sns_web(app: Flask) -> SnsWeb:
    web = app.extensions.get(SNS_WEB_KEY)
    if not isinstance(web, SnsWeb):
        web = app.extensions[SNS_WEB_KEY] = SnsWeb()
    return web


@webhooks.post("/<provider>")
def receive_events(provider: str) -> tuple[Response, int]:
    try:
        chosen = Provider(provider)
    except ValueError:
        return jsonify(error=f"no webhook for {provider!r}"), 404
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return jsonify(error=f"the body is larger than {MAX_BODY_BYTES:,} bytes"), 413
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    body = request.stream.read(MAX_BODY_BYTES + 1)
    webhook_request = WebhookRequest(
        body=body, headers={name.lower(): value for name, value in request.headers.items()}
    )
    try:
        outcome = receive(
            current_session(),
            chosen,
            webhook_request,
            config=webhook_config(app),
            sns=sns_web(app),
            clock=app_clock(app),
        )
    except WebhookRefused as refused:
        current_session().rollback()
        return jsonify(error=str(refused)), refused.status
    return jsonify(outcome.summary()), 200
