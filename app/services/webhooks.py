"""Delivery-event webhooks of relays (SPEC §5): Amazon SES through SNS,
SendGrid, Mailgun and Postmark, fed into the same campaign log as bounces
read from the group mailbox.

Rules:

- Nothing is read from an unauthenticated request: the signature (or
  Postmark's basic credentials) is checked first, against the raw body,
  and a failure changes nothing (``WebhookRefused``, 403). A provider that
  is not configured does not exist (404). SNS messages must also come from
  one of the configured SES topics: anyone can create an SNS topic, and AWS
  signs its messages too.
- SNS signing certificates and subscription confirmations are fetched only
  from ``https://sns.<region>.amazonaws.com/`` (``SnsWeb``).
- Each event is tied to the queue item it answers, in this order: the
  ``X-Sluice-Queue-Item`` header the relay reports back, Sluice's own
  Message-ID (``<q<item>.<random>@…>``), else the latest item sent to the
  reported address (Postmark reports neither header). The item's address
  must be the event's recipient, case-insensitively; otherwise the event
  is counted as unmatched and nothing is applied.
- Each matched event becomes a ``BounceReport`` (``bounce.relay_events.
  relay_report``: the relay's verdict and the rule table together) applied
  by ``bounces.apply_report``, which applies a report once only. One
  request is one transaction: all of its events or none, so a relay that
  retries after an error loses nothing.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import Contact, QueueItem, QueueItemStatus
from app.services import bounces
from app.services.addresses import InvalidAddress, normalise_address
from bounce.queue_ids import item_from_header, item_from_message_id
from bounce.relay_events import (
    RelayBatch,
    RelayEvent,
    mailgun_events,
    postmark_events,
    relay_report,
    sendgrid_events,
    ses_events,
)
from bounce.relay_signatures import (
    SignatureError,
    load_sendgrid_key,
    verify_basic_auth,
    verify_mailgun,
    verify_sendgrid,
    verify_sns,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024  # SendGrid batches up to ~1,000 events a request
SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
_SENT_STATUSES = (QueueItemStatus.SENT, QueueItemStatus.BOUNCED)


class Provider(enum.StrEnum):
    SES = "ses"
    SENDGRID = "sendgrid"
    MAILGUN = "mailgun"
    POSTMARK = "postmark"


class WebhookRefused(Exception):
    """The request is refused; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class WebhookConfig:
    """The boot-time webhook settings (``config.Settings.webhook_*``)."""

    ses_topic_arns: frozenset[str] = frozenset()
    sendgrid_public_key: str = ""
    mailgun_signing_key: str = ""
    postmark_credentials: str = ""  # "user:password"

    def configured(self, provider: Provider) -> bool:
        return bool(
            {
                Provider.SES: self.ses_topic_arns,
                Provider.SENDGRID: self.sendgrid_public_key,
                Provider.MAILGUN: self.mailgun_signing_key,
                Provider.POSTMARK: self.postmark_credentials,
            }[provider]
        )


@dataclass(frozen=True)
class WebhookRequest:
    body: bytes
    headers: Mapping[str, str]  # names lower-cased


@dataclass
class WebhookOutcome:
    applied: int = 0
    unmatched: int = 0
    ignored: int = 0
    skipped: list[str] = field(default_factory=list)
    subscription_confirmed: bool = False

    def summary(self) -> dict[str, object]:
        return {
            "applied": self.applied,
            "unmatched": self.unmatched,
            "ignored": self.ignored,
            "skipped": self.skipped[:20],
            "subscription_confirmed": self.subscription_confirmed,
        }


class SnsWeb:
    """Fetches SNS signing certificates (remembered by URL) and visits
    subscription-confirmation URLs, only on hosts ``host`` matches."""

    def __init__(
        self,
        host: re.Pattern[str] = SNS_HOST,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._host = host
        self._context = ssl_context
        self._timeout = timeout
        self._certificates: dict[str, bytes] = {}

    def certificate(self, url: str) -> bytes:
        self.check_url(url, what="SigningCertURL", suffix=".pem")
        if url not in self._certificates:
            if len(self._certificates) > 32:  # SNS rotates certificates rarely
                self._certificates.clear()
            self._certificates[url] = self._get(url, limit=64 * 1024)
        return self._certificates[url]

    def confirm_subscription(self, url: str) -> None:
        self.check_url(url, what="SubscribeURL")
        self._get(url, limit=64 * 1024)

    def check_url(self, url: str, *, what: str, suffix: str = "") -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme != "https" or not self._host.fullmatch(host) or parts.username:
            raise SignatureError(f"the {what} is not an https URL of Amazon SNS")
        if suffix and not parts.path.endswith(suffix):
            raise SignatureError(f"the {what} does not name a {suffix} file")

    def _get(self, url: str, *, limit: int) -> bytes:
        context = self._context or ssl.create_default_context()
        try:
            with urllib.request.urlopen(  # noqa: S310 - https only, host checked above
                url, timeout=self._timeout, context=context
            ) as response:
                data: bytes = response.read(limit + 1)
        except OSError as error:
            raise WebhookRefused(502, f"Amazon SNS could not be reached: {error}") from None
        if len(data) > limit:
            raise WebhookRefused(502, "Amazon SNS answered with an oversized document")
        return data


def receive(
    session: Session,
    provider: Provider,
    request: WebhookRequest,
    *,
    config: WebhookConfig,
    sns: SnsWeb,
    clock: Clock,
) -> WebhookOutcome:
    """Authenticate one webhook request, then apply its events and commit.
    Raises ``WebhookRefused`` (nothing changed)."""
    if not config.configured(provider):
        raise WebhookRefused(404, f"the {provider} webhook is not configured")
    if len(request.body) > MAX_BODY_BYTES:
        raise WebhookRefused(413, f"the body is larger than {MAX_BODY_BYTES:,} bytes")
    outcome = WebhookOutcome()
    try:
        batch = _authentic_batch(
            provider, request, config=config, sns=sns, clock=clock, outcome=outcome
        )
    except SignatureError as error:
        log.warning("%s webhook refused: %s", provider, error)
        raise WebhookRefused(403, str(error)) from None
    outcome.ignored += batch.ignored
    outcome.skipped += batch.skipped
    source = f"webhook {provider}"
    for event in batch.events:
        item = find_queue_item(session, event)
        if item is None:
            outcome.unmatched += 1
            continue
        report = relay_report(event, item.id)
        bounces.apply_report(session, report, clock=clock, source=source)
        outcome.applied += 1
    session.commit()
    return outcome


def _authentic_batch(
    provider: Provider,
    request: WebhookRequest,
    *,
    config: WebhookConfig,
    sns: SnsWeb,
    clock: Clock,
    outcome: WebhookOutcome,
) -> RelayBatch:
    """Check the request's signature, then read its events."""
    now = clock.now()
    if provider is Provider.POSTMARK:
        verify_basic_auth(request.headers.get("authorization"), config.postmark_credentials)
        return postmark_events(_json(request.body))
    if provider is Provider.SENDGRID:
        try:
            key: ec.EllipticCurvePublicKey = load_sendgrid_key(config.sendgrid_public_key)
        except ValueError as error:
            raise WebhookRefused(500, f"the SendGrid public key setting: {error}") from None
        verify_sendgrid(
            request.body,
            request.headers.get("x-twilio-email-event-webhook-signature"),
            request.headers.get("x-twilio-email-event-webhook-timestamp"),
            key,
            now,
        )
        return sendgrid_events(_json(request.body))
    payload = _json(request.body)
    if provider is Provider.MAILGUN:
        signature = payload.get("signature") if isinstance(payload, Mapping) else None
        verify_mailgun(signature, config.mailgun_signing_key, now)
        return mailgun_events(payload)
    return _ses_batch(payload, config, sns, clock, outcome)


def _ses_batch(
    envelope: object, config: WebhookConfig, sns: SnsWeb, clock: Clock, outcome: WebhookOutcome
) -> RelayBatch:
    if not isinstance(envelope, Mapping):
        raise WebhookRefused(400, "the body is not an SNS message")
    if envelope.get("TopicArn") not in config.ses_topic_arns:
        raise SignatureError("the SNS topic is not one of the configured SES topics")
    verify_sns(envelope, sns.certificate(str(envelope.get("SigningCertURL", ""))), clock.now())
    message_type = envelope.get("Type")
    if message_type == "SubscriptionConfirmation":
        sns.confirm_subscription(str(envelope.get("SubscribeURL", "")))
        outcome.subscription_confirmed = True
        return RelayBatch()
    if message_type != "Notification":
        return RelayBatch(ignored=1)
    return ses_events(envelope.get("Message"))


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WebhookRefused(400, f"the body is not JSON: {error}") from None
    except RecursionError:
        raise WebhookRefused(400, "the body is not JSON: nested too deeply") from None


def find_queue_item(session: Session, event: RelayEvent) -> QueueItem | None:
    """The queue item the event answers (see the module's matching rules),
    or None."""
    item_id = _item_id(event)
    if item_id is not None:
        item = session.get(QueueItem, item_id)
    else:
        item = _latest_sent_to(session, event.recipient)
    if item is None or item.email.lower() != event.recipient.lower():
        return None
    return item


def _item_id(event: RelayEvent) -> int | None:
    return item_from_header(event.queue_item_header) or item_from_message_id(event.message_id)


def _latest_sent_to(session: Session, address: str) -> QueueItem | None:
    """The item most recently sent to ``address``'s contact (through the
    contacts' unique ``email_lower`` index and the items' contact index)."""
    try:
        _, key = normalise_address(address)
    except InvalidAddress:
        return None
    contact_id = session.scalar(select(Contact.id).where(Contact.email_lower == key))
    if contact_id is None:
        return None
    return session.scalar(
        select(QueueItem)
        .where(QueueItem.contact_id == contact_id, QueueItem.status.in_(_SENT_STATUSES))
        .order_by(QueueItem.sent_at.desc(), QueueItem.id.desc())
        .limit(1)
    )
