"""The bounce digest (SPEC §5): a sender profile's point of contact receives,
at most daily, the new hard bounces, drops and complaints of each mass email
sent with that profile, with links to the contacts to fix.

Rules:

- **Who.** Every sender profile with a point of contact (its Reply-To
  address); a profile without one gets no digest.
- **How often.** At most once in ``DIGEST_INTERVAL`` per profile (the
  ``bounce-digest`` job looks every hour). A digest covers the time since
  the end of the previous one (the first: the last ``DIGEST_INTERVAL``), so
  nothing is told twice and nothing is skipped.
- **What.** Per mass email of the profile's campaigns whose queue was built
  in the last ``LOOKBACK`` (bounces arrive within days): hard bounces and
  complaints (the campaign log), recipients dropped at send time (the
  campaign log) and at queue build (queue items ``dropped`` because their
  address is suppressed). Counts, and the first ``MAX_LISTED`` of each kind
  with the reason and a link to the contact's page.
- **Nothing new, no mail**; the profile's state is left as it is.
- **Only what the relay accepted counts.** The state moves on (committed)
  once the relay accepts the digest; a refusal or a lost connection leaves
  it, and the next run tries again with the same period and more.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, aliased

from app.clock import Clock
from app.models import (
    BounceDigestState,
    Campaign,
    CampaignLogEntry,
    CampaignLogEvent,
    MassEmail,
    QueueItem,
    QueueItemStatus,
    SenderProfile,
)
from app.services.transport import Transport

log = logging.getLogger(__name__)

DIGEST_INTERVAL = timedelta(hours=24)
LOOKBACK = timedelta(days=30)
MAX_LISTED = 50  # addresses listed per kind and mass email; the rest are counted

HARD, COMPLAINT, DROPPED = "hard bounces", "complaints", "drops"
KINDS = (HARD, COMPLAINT, DROPPED)
_KIND_OF_EVENT = {
    CampaignLogEvent.BOUNCED_HARD: HARD,
    CampaignLogEvent.COMPLAINT: COMPLAINT,
    CampaignLogEvent.DROPPED: DROPPED,
}
_ADVICE = {
    HARD: "the address does not exist: correct it or remove the contact; "
    "it stays suppressed until you do",
    COMPLAINT: "the recipient reported the mail as spam and has been opted out",
    DROPPED: "not sent: the address is on the suppression list",
}


@dataclass(frozen=True)
class DigestEntry:
    address: str
    contact_id: int | None
    reason: str


@dataclass
class MassEmailDigest:
    mass_email_id: int
    campaign_name: str
    mass_email_name: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    listed: dict[str, list[DigestEntry]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, entry: DigestEntry) -> None:
        self.counts[kind] += 1
        if len(self.listed[kind]) < MAX_LISTED:
            self.listed[kind].append(entry)


@dataclass(frozen=True)
class Digest:
    profile_id: int
    profile_name: str
    from_address: str
    to_address: str
    since: datetime
    until: datetime
    mass_emails: list[MassEmailDigest]

    def total(self, kind: str) -> int:
        return sum(mass_email.counts[kind] for mass_email in self.mass_emails)


@dataclass
class DigestRun:
    sent: list[int] = field(default_factory=list)  # sender profile ids
    failed: list[str] = field(default_factory=list)  # why, per profile

    def describe(self) -> str:
        line = f"digests sent {len(self.sent)}"
        if self.failed:
            line += f", not sent {len(self.failed)}: " + "; ".join(self.failed)
        return line


# ----------------------------------------------------------------- collecting


def due_digests(session: Session, now: datetime) -> list[Digest]:
    """The digests due now, with something to tell (see the module's rules)."""
    states = {
        state.sender_profile_id: state for state in session.scalars(select(BounceDigestState))
    }
    digests = []
    for profile in session.scalars(
        select(SenderProfile).where(SenderProfile.reply_to_address != "").order_by(SenderProfile.id)
    ):
        state = states.get(profile.id)
        if state is not None and now - state.last_sent_at < DIGEST_INTERVAL:
            continue
        since = state.covered_until if state is not None else now - DIGEST_INTERVAL
        mass_emails = _collect(session, profile.id, since, now)
        if mass_emails:
            digests.append(
                Digest(
                    profile.id,
                    profile.name,
                    profile.from_address,
                    profile.reply_to_address,
                    since,
                    now,
                    mass_emails,
                )
            )
    return digests


def _collect(
    session: Session, profile_id: int, since: datetime, until: datetime
) -> list[MassEmailDigest]:
    found = {
        mass_email_id: MassEmailDigest(mass_email_id, campaign_name, mass_email_name)
        for mass_email_id, campaign_name, mass_email_name in session.execute(
            select(MassEmail.id, Campaign.name, MassEmail.name)
            .join(Campaign, MassEmail.campaign_id == Campaign.id)
            .where(
                Campaign.sender_profile_id == profile_id,
                MassEmail.queue_built_at >= until - LOOKBACK,
            )
            .order_by(MassEmail.id)
        )
    }
    if not found:
        return []
    for mass_email_id, kind, entry in _events(session, list(found), since, until):
        found[mass_email_id].add(kind, entry)
    return [digest for digest in found.values() if any(digest.counts.values())]


def _events(
    session: Session, mass_email_ids: list[int], since: datetime, until: datetime
) -> Iterable[tuple[int, str, DigestEntry]]:
    """Each hard bounce, complaint and drop of the mass emails in the period,
    oldest first: the campaign log's, then the queue build's drops."""
    logged = session.execute(
        select(
            CampaignLogEntry.mass_email_id,
            CampaignLogEntry.event,
            CampaignLogEntry.contact_id,
            CampaignLogEntry.detail,
            QueueItem.email,
        )
        .join(QueueItem, CampaignLogEntry.queue_item_id == QueueItem.id)
        .where(
            CampaignLogEntry.mass_email_id.in_(mass_email_ids),
            CampaignLogEntry.event.in_(list(_KIND_OF_EVENT)),
            CampaignLogEntry.occurred_at > since,
            CampaignLogEntry.occurred_at <= until,
        )
        .order_by(CampaignLogEntry.occurred_at, CampaignLogEntry.id)
        .execution_options(yield_per=1000)
    )
    for mass_email_id, event, contact_id, detail, email in logged:
        if mass_email_id is not None:
            yield (
                mass_email_id,
                _KIND_OF_EVENT[event],
                DigestEntry(email, contact_id, _reason(detail)),
            )
    dropped_log = aliased(CampaignLogEntry)
    built = session.execute(
        select(
            QueueItem.mass_email_id, QueueItem.contact_id, QueueItem.email, QueueItem.skip_reason
        )
        .where(
            QueueItem.mass_email_id.in_(mass_email_ids),
            QueueItem.status == QueueItemStatus.DROPPED,
            QueueItem.created_at > since,
            QueueItem.created_at <= until,
            ~exists().where(
                and_(
                    dropped_log.queue_item_id == QueueItem.id,
                    dropped_log.event == CampaignLogEvent.DROPPED,
                )
            ),
        )
        .order_by(QueueItem.id)
        .execution_options(yield_per=1000)
    )
    for mass_email_id, contact_id, email, skip_reason in built:
        yield mass_email_id, DROPPED, DigestEntry(email, contact_id, skip_reason or "")


def _reason(detail: object) -> str:
    """The status code and diagnostic (or reason) a campaign-log row keeps."""
    if not isinstance(detail, dict):
        return ""
    parts = [detail.get("status"), detail.get("diagnostic") or detail.get("reason")]
    return " ".join(str(part) for part in parts if part)[:300]


# ----------------------------------------------------------------- the message


def compose(digest: Digest, *, site_url: str, envelope_domain: str, now: datetime) -> bytes:
    """The digest as a plain-text message to the point of contact."""
    totals = ", ".join(f"{digest.total(kind)} {kind}" for kind in KINDS if digest.total(kind))
    message = EmailMessage()
    message["From"] = digest.from_address
    message["To"] = digest.to_address
    message["Subject"] = f"Sluice digest for {digest.profile_name}: {totals}"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid("digest", domain=envelope_domain or None)
    # RFC 3834 §5: machine-made; auto-responders must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(_body(digest, site_url.rstrip("/")))
    return message.as_bytes(policy=SMTP)  # CRLF line ends (RFC 5322 §2.1)


def _body(digest: Digest, site_url: str) -> str:
    lines = [
        f"Since {digest.since:%Y-%m-%d %H:%M} UTC, the mass emails sent as "
        f'"{digest.profile_name}" had {", ".join(f"{digest.total(k)} {k}" for k in KINDS)}.',
        "",
    ]
    for mass_email in digest.mass_emails:
        lines.append(
            f'Campaign "{mass_email.campaign_name}", mass email "{mass_email.mass_email_name}"'
        )
        for kind in KINDS:
            count = mass_email.counts[kind]
            if not count:
                continue
            lines.append(f"  {count} {kind} ({_ADVICE[kind]}):")
            for entry in mass_email.listed[kind]:
                link = f" {site_url}/contacts/{entry.contact_id}" if entry.contact_id else ""
                reason = f" ({entry.reason})" if entry.reason else ""
                lines.append(f"    {entry.address}{reason}{link}")
            if count > len(mass_email.listed[kind]):
                lines.append(f"    … and {count - len(mass_email.listed[kind])} more")
        lines.append("")
    lines.append("You receive this as the point of contact of this sender profile in Sluice.")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- sending


def send_digests(
    session: Session,
    transport_factory: Callable[[], Transport],
    clock: Clock,
    *,
    site_url: str,
    bounce_address: str,
) -> DigestRun:
    """Send every due digest (see the module's rules); commits each one's
    new state once the relay accepted it."""
    run = DigestRun()
    now = clock.now()
    digests = due_digests(session, now)
    session.commit()
    if not digests:
        return run
    transport = transport_factory()
    try:
        for digest in digests:
            envelope_from = bounce_address or digest.from_address
            data = compose(
                digest,
                site_url=site_url,
                envelope_domain=envelope_from.rpartition("@")[2],
                now=now,
            )
            result = transport.send(data, envelope_from, digest.to_address)
            if not result.accepted:
                run.failed.append(
                    f"{digest.profile_name}: {result.code or ''} {result.reply}".strip()
                )
                continue
            _record(session, digest)
            session.commit()
            run.sent.append(digest.profile_id)
    finally:
        transport.close()
    return run


def _record(session: Session, digest: Digest) -> None:
    state = session.get(BounceDigestState, digest.profile_id)
    if state is None:
        state = BounceDigestState(sender_profile_id=digest.profile_id)
        session.add(state)
    state.last_sent_at = digest.until
    state.covered_until = digest.until
