"""Campaign editing: sender profiles, templates, campaigns, mass emails,
copies, scheduling (SPEC §2, §3).

Rules:

- Every refusal is a ``CampaignError`` naming the field (and, for a
  template or a pre-flight, every problem). Names, From names and subjects
  are single lines: a CR or LF is refused, never folded away silently.
- Sender profile addresses are normalised like contacts'; the From
  address's local part must be ASCII (SMTPUTF8 is not supported yet).
- Templates: unique names; saved only when ``validate_template`` finds no
  problem (all of them are reported, with field and line); the logo is an
  http(s) URL. A template is deleted for good (nothing sent refers to it:
  a scheduled mass email holds a snapshot), but not while a mass email
  still takes its content from it.
- A campaign's target lists, excluding lists, type and sender profile are
  fixed while one of its mass emails is scheduled, sending or paused: the
  pre-flight that let it be scheduled checked them. Unschedule first.
- Deleting is soft (``deleted_at``) for campaigns and mass emails alike: they
  leave the lists, while their queue items, tracked links, snapshot and log
  rows stay, so links in mail already sent keep working. Deleting one that
  may still send (pending, in progress, paused) cancels it first, so the
  dispatcher never sends something no longer shown.
- A sender profile is deleted for good, but not while a campaign that is
  not deleted uses it (its mail takes the From from the profile when it is
  sent); deleted campaigns lose the reference, which their sent mail does
  not need.
- Tracking URLs (EspoCRM's): a campaign's named URLs that templates use as
  ``{{ tracking_url('name') }}`` or ``{trackingUrl:name}``. A name is 1 to
  ``TRACKING_URL_NAME_MAX_LENGTH`` letters, digits, ``_``, ``.`` or ``-``
  (what ``{trackingUrl:…}`` accepts), unique in the campaign (letter case
  counts); the URL an absolute http(s) URL with a host, without spaces or
  control characters (it becomes a ``Location`` header), at most
  ``URL_MAX_LENGTH`` characters. They may change at any time: a mass email
  keeps those its snapshot stored when it left draft.
- A mass email takes a template or content of its own, not both. Its start
  time is "now" (``send_now``), a future time, or none yet; a time in the
  past is refused, except within ``START_GRACE`` of now (a form submitted
  "now" reaches the server a moment later), which counts as now. Only
  drafts are edited.
- Copy: a new draft in the same campaign with the original's content in its
  own columns and the subject ``COPY #n <subject>``, n counting the copies
  of that mass email (deleted ones included, so no number repeats). A copy
  of a copy counts its own copies: ``COPY #1 COPY #2 Newsletter``.
  Recipients are not carried over: the copy has no queue. A campaign's
  copy takes its settings and tracking URLs, not its mass emails.
- Scheduling needs the marketer's confirmation that subject and content meet
  CAN-SPAM and a pre-flight without errors; it records the confirmation,
  takes the content snapshot (with the footer and tracking settings it
  shows: ``snapshots``), sets the start time (None: now) and moves the
  draft to pending. Unscheduling returns it to draft and withdraws the
  confirmation (the content may change before it is given again); the
  snapshot stays as the mass email's own content, its settings are
  forgotten (a draft shows the current ones).
- Every status change goes through ``mass_email_status.transition``.

The functions flush; the caller commits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import (
    Campaign,
    CampaignTrackingUrl,
    CampaignType,
    EmailTemplate,
    MassEmail,
    MassEmailStatus,
    SenderProfile,
    TargetList,
)
from app.models.campaigns import (
    SUBJECT_MAX_LENGTH,
    TRACKING_URL_NAME_MAX_LENGTH,
    URL_MAX_LENGTH,
)
from app.services.addresses import InvalidAddress, normalise_address
from app.services.dkim_keys import DkimKey
from app.services.mass_email_status import (
    ACTIVE_STATUSES,
    IllegalTransition,
    resume_status,
    transition,
)
from app.services.messages import MessageError, mass_email_source
from app.services.preflight import Finding, errors, preflight
from app.services.rendering import TemplateProblem, TemplateSource, validate_template
from app.services.runtime_settings import RuntimeSettings
from app.services.snapshots import SnapshotError, clear_settings, take_snapshot
from config import Settings

NAME_MAX_LENGTH = 200
# What EspoCRM's {trackingUrl:ID} accepts (rendering_html), so every name
# works in both template forms.
TRACKING_URL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
START_GRACE = timedelta(minutes=1)
# A refusal names at most this many campaigns (the page lists them all).
USERS_NAMED = 10
S = MassEmailStatus


class CampaignError(ValueError):
    """A campaign edit is refused. ``field`` names what to fix; ``problems``
    lists every problem when there are several (a template, a pre-flight)."""

    def __init__(
        self,
        field: str,
        message: str,
        problems: Sequence[str] = (),
        template_problems: Sequence[TemplateProblem] = (),
    ) -> None:
        self.field = field
        self.message = message
        self.problems = tuple(problems)
        # A template's problems as found (field and line), for a form to
        # show each next to its field; ``problems`` has them as text.
        self.template_problems = tuple(template_problems)
        text = f"{field}: {message}"
        if self.problems:
            text += "".join(f"\n- {problem}" for problem in self.problems)
        super().__init__(text)


# ------------------------------------------------------------------ text rules


def _line(field: str, value: str, *, max_length: int, required: bool = True) -> str:
    """A trimmed single line of at most ``max_length`` characters."""
    text = value.strip()
    if required and not text:
        raise CampaignError(field, "must not be empty")
    if "\r" in text or "\n" in text:
        raise CampaignError(field, "must be a single line")
    if "\x00" in text:
        raise CampaignError(field, "must not contain a NUL character")
    if len(text) > max_length:
        raise CampaignError(field, f"at most {max_length} characters (got {len(text)})")
    return text


def _address(field: str, value: str) -> str:
    try:
        return normalise_address(value)[0]
    except InvalidAddress as error:
        raise CampaignError(field, str(error)) from None


# ------------------------------------------------------------------ sender profiles


def create_sender_profile(
    session: Session, name: str, from_name: str, from_address: str, reply_to_address: str
) -> SenderProfile:
    """A sender profile: a unique name, a From name and address, and the
    point of contact who receives replies (Reply-To, may be empty)."""
    profile = SenderProfile()
    _fill_sender_profile(
        session,
        profile,
        name=name,
        from_name=from_name,
        from_address=from_address,
        reply_to_address=reply_to_address,
    )
    session.add(profile)
    session.flush()
    return profile


def update_sender_profile(
    session: Session,
    profile: SenderProfile,
    *,
    name: str,
    from_name: str,
    from_address: str,
    reply_to_address: str,
) -> SenderProfile:
    """Replace a sender profile's fields under the rules of
    ``create_sender_profile``. Mass emails already sent keep what they
    sent; those still to send use the new From (the pre-flight that
    scheduled them checked the old one, so a change is the marketer's
    decision, as in EspoCRM)."""
    _fill_sender_profile(
        session,
        profile,
        name=name,
        from_name=from_name,
        from_address=from_address,
        reply_to_address=reply_to_address,
    )
    session.flush()
    return profile


def _fill_sender_profile(
    session: Session,
    profile: SenderProfile,
    *,
    name: str,
    from_name: str,
    from_address: str,
    reply_to_address: str,
) -> None:
    """Check every field, then set them all (nothing is set when one is refused)."""
    name = _line("name", name, max_length=NAME_MAX_LENGTH)
    same_name = session.scalar(select(SenderProfile.id).where(SenderProfile.name == name))
    if same_name is not None and same_name != profile.id:
        raise CampaignError("name", f"a sender profile named {name!r} already exists")
    clean_from_name = _line("from_name", from_name, max_length=NAME_MAX_LENGTH, required=False)
    sender = _address("from_address", from_address)
    if not sender.rpartition("@")[0].isascii():
        # Composition refuses such addresses (docs/messages.md): say so now.
        raise CampaignError("from_address", "the part before @ must be ASCII (no SMTPUTF8 yet)")
    reply_to = _address("reply_to_address", reply_to_address) if reply_to_address.strip() else ""
    profile.name = name
    profile.from_name = clean_from_name
    profile.from_address = sender
    profile.reply_to_address = reply_to


def sender_profile_users(session: Session, profile: SenderProfile) -> list[tuple[int, str]]:
    """The campaigns (not deleted) whose mail is from ``profile``: id and
    name, by name."""
    rows = session.execute(
        select(Campaign.id, Campaign.name)
        .where(Campaign.sender_profile_id == profile.id, Campaign.deleted_at.is_(None))
        .order_by(Campaign.name, Campaign.id)
    )
    return [(campaign_id, name) for campaign_id, name in rows]


def delete_sender_profile(session: Session, profile: SenderProfile) -> None:
    """Delete the profile for good. Refused with a ``CampaignError`` naming
    the campaigns while one that is not deleted uses it: the From of its
    mass emails (sending, or still to come) is read from the profile when
    they are sent. A deleted campaign never sends again and the links in
    its sent mail do not read the profile, so it only loses the reference
    (``ON DELETE SET NULL``); the profile's bounce-digest progress goes
    with it (``ON DELETE CASCADE``)."""
    users = sender_profile_users(session, profile)
    if users:
        names = ", ".join(repr(name) for _, name in users[:USERS_NAMED])
        more = f" and {len(users) - USERS_NAMED} more" if len(users) > USERS_NAMED else ""
        raise CampaignError(
            "sender_profile",
            f"campaign(s) {names}{more} use it: choose another sender profile for them first",
        )
    session.delete(profile)
    session.flush()


def sender_profiles(session: Session) -> Sequence[SenderProfile]:
    """Every sender profile, by name."""
    return session.scalars(select(SenderProfile).order_by(SenderProfile.name)).all()


# ------------------------------------------------------------------ templates


@dataclass(frozen=True)
class TemplateInput:
    name: str
    subject: str
    body_html: str
    body_text: str | None = None  # None or blank: derived from the HTML
    header_logo_url: str = ""
    footer_html: str = ""


def _checked_content(source: TemplateSource) -> TemplateSource:
    """``source`` trimmed where it is a line, or ``CampaignError`` listing
    every problem (field and line) found in it."""
    found = []
    subject = source.subject.strip()
    if not subject:
        found.append(TemplateProblem("subject", None, "must not be empty"))
    elif "\r" in subject or "\n" in subject:
        found.append(TemplateProblem("subject", None, "must be a single line"))
    elif len(subject) > SUBJECT_MAX_LENGTH:
        found.append(TemplateProblem("subject", None, f"at most {SUBJECT_MAX_LENGTH} characters"))
    logo = source.header_logo_url.strip()
    if len(logo) > URL_MAX_LENGTH:
        found.append(
            TemplateProblem("header_logo_url", None, f"at most {URL_MAX_LENGTH} characters")
        )
    body_text = source.body_text if source.body_text and source.body_text.strip() else None
    cleaned = TemplateSource(subject, source.body_html, body_text, logo, source.footer_html)
    found += validate_template(cleaned)
    if found:
        raise CampaignError(
            found[0].field,
            "the content cannot be saved",
            [str(problem) for problem in found],
            found,
        )
    return cleaned


def save_template(
    session: Session, data: TemplateInput, clock: Clock, template_id: int | None = None
) -> EmailTemplate:
    """Create a template, or replace template ``template_id``'s name and
    content. Names are unique; the content must pass ``validate_template``.
    Mass emails already scheduled keep their snapshot."""
    name = _line("name", data.name, max_length=NAME_MAX_LENGTH)
    template = None
    if template_id is not None:
        template = session.get(EmailTemplate, template_id)
        if template is None:
            raise CampaignError("template_id", f"no template with id {template_id}")
    same_name = session.scalar(select(EmailTemplate.id).where(EmailTemplate.name == name))
    if same_name is not None and same_name != template_id:
        raise CampaignError("name", f"a template named {name!r} already exists")
    content = _checked_content(
        TemplateSource(
            data.subject, data.body_html, data.body_text, data.header_logo_url, data.footer_html
        )
    )
    now = clock.now()
    if template is None:
        template = EmailTemplate(created_at=now)
        session.add(template)
    template.name = name
    template.subject = content.subject
    template.body_html = content.body_html
    template.body_text = content.body_text
    template.header_logo_url = content.header_logo_url
    template.footer_html = content.footer_html
    template.updated_at = now
    session.flush()
    return template


def template_users(session: Session, template_id: int) -> Sequence[MassEmail]:
    """The mass emails (not deleted) whose content is still template
    ``template_id``'s: those without content of their own or a snapshot."""
    return session.scalars(
        select(MassEmail)
        .where(
            MassEmail.template_id == template_id,
            MassEmail.subject.is_(None),
            MassEmail.deleted_at.is_(None),
        )
        .order_by(MassEmail.id)
    ).all()


def delete_template(session: Session, template: EmailTemplate) -> None:
    """Delete a template (for good: nothing sent refers to it). Refused
    while a mass email not deleted still takes its content from it; mass
    emails that were scheduled keep their snapshot and lose only the
    reference."""
    users = template_users(session, template.id)
    if users:
        names = ", ".join(f"{user.name!r} (id {user.id})" for user in users[:5])
        more = f" and {len(users) - 5} more" if len(users) > 5 else ""
        raise CampaignError(
            "template_id",
            f"the template is the content of mass email(s) {names}{more}: "
            "choose another template for them or delete them first",
        )
    session.delete(template)
    session.flush()


# ------------------------------------------------------------------ campaigns


def _target_lists(session: Session, field: str, ids: Sequence[int]) -> list[TargetList]:
    wanted = list(dict.fromkeys(ids))
    found = {
        target.id: target
        for target in session.scalars(select(TargetList).where(TargetList.id.in_(wanted)))
    }
    missing = [list_id for list_id in wanted if list_id not in found]
    if missing:
        raise CampaignError(field, f"no target list with id {', '.join(map(str, missing))}")
    return [found[list_id] for list_id in wanted]


def _campaign_type(value: CampaignType | str) -> CampaignType:
    try:
        return CampaignType(value)
    except ValueError:
        choices = ", ".join(kind.value for kind in CampaignType)
        raise CampaignError("type", f"must be one of {choices}") from None


def _sender_profile_id(session: Session, profile_id: int | None) -> int | None:
    if profile_id is not None and session.get(SenderProfile, profile_id) is None:
        raise CampaignError("sender_profile_id", f"no sender profile with id {profile_id}")
    return profile_id


def create_campaign(
    session: Session,
    *,
    name: str,
    type: CampaignType | str,
    target_list_ids: Sequence[int],
    excluding_list_ids: Sequence[int],
    sender_profile_id: int | None,
    clock: Clock,
) -> Campaign:
    """A campaign: a name, a type (``email``/``newsletter``), target lists,
    excluding lists and a sender profile, each checked to exist. Lists and
    profile may be left empty for now; the pre-flight insists on them."""
    campaign = Campaign(
        name=_line("name", name, max_length=NAME_MAX_LENGTH),
        type=_campaign_type(type),
        sender_profile_id=_sender_profile_id(session, sender_profile_id),
        created_at=clock.now(),
        target_lists=_target_lists(session, "target_list_ids", target_list_ids),
        excluding_lists=_target_lists(session, "excluding_list_ids", excluding_list_ids),
    )
    session.add(campaign)
    session.flush()
    return campaign


def update_campaign(
    session: Session,
    campaign: Campaign,
    *,
    name: str,
    type: CampaignType | str,
    target_list_ids: Sequence[int],
    excluding_list_ids: Sequence[int],
    sender_profile_id: int | None,
) -> Campaign:
    """Replace the campaign's settings. Only its name may change while one
    of its mass emails is scheduled, sending or paused (see the rules)."""
    _require_not_deleted(campaign)
    new_name = _line("name", name, max_length=NAME_MAX_LENGTH)
    new_type = _campaign_type(type)
    profile_id = _sender_profile_id(session, sender_profile_id)
    targets = _target_lists(session, "target_list_ids", target_list_ids)
    excluding = _target_lists(session, "excluding_list_ids", excluding_list_ids)
    changed = _changed_audience_or_sender(campaign, new_type, profile_id, targets, excluding)
    if changed and _active_mass_email(campaign) is not None:
        raise CampaignError(
            changed,
            "cannot change while a mass email of the campaign is scheduled, sending or paused; "
            "unschedule it first",
        )
    campaign.name = new_name
    campaign.type = new_type
    campaign.sender_profile_id = profile_id
    campaign.target_lists = targets
    campaign.excluding_lists = excluding
    session.flush()
    return campaign


def _changed_audience_or_sender(
    campaign: Campaign,
    new_type: CampaignType,
    profile_id: int | None,
    targets: list[TargetList],
    excluding: list[TargetList],
) -> str:
    """The first field that the change alters among those fixed while a
    mass email may send, or ""."""
    if {target.id for target in targets} != {target.id for target in campaign.target_lists}:
        return "target_list_ids"
    if {item.id for item in excluding} != {item.id for item in campaign.excluding_lists}:
        return "excluding_list_ids"
    if profile_id != campaign.sender_profile_id:
        return "sender_profile_id"
    if new_type != campaign.type:
        return "type"
    return ""


def _active_mass_email(campaign: Campaign) -> MassEmail | None:
    for mass_email in campaign.mass_emails:
        if mass_email.deleted_at is None and mass_email.status in ACTIVE_STATUSES:
            return mass_email
    return None


COPY_OF_CAMPAIGN = "Copy of "


def copy_campaign(session: Session, campaign: Campaign, clock: Clock) -> Campaign:
    """A new campaign with the settings of ``campaign`` (type, target and
    excluding lists, sender profile, tracking URLs) named ``Copy of
    <name>``; its mass emails are not copied (each is one send: copy one
    with ``copy_mass_email``)."""
    _require_not_deleted(campaign)
    copy = Campaign(
        name=(COPY_OF_CAMPAIGN + campaign.name)[:NAME_MAX_LENGTH],
        type=campaign.type,
        sender_profile_id=campaign.sender_profile_id,
        created_at=clock.now(),
        target_lists=list(campaign.target_lists),
        excluding_lists=list(campaign.excluding_lists),
        tracking_urls=[
            CampaignTrackingUrl(name=tracking.name, url=tracking.url, created_at=clock.now())
            for tracking in campaign.tracking_urls
        ],
    )
    session.add(copy)
    session.flush()
    return copy


def delete_campaign(session: Session, campaign: Campaign, clock: Clock) -> None:
    """Soft-delete the campaign and its mass emails (those that may still
    send are canceled first); nothing else is removed."""
    if campaign.deleted_at is not None:
        return
    for mass_email in campaign.mass_emails:
        _soft_delete(mass_email, clock)
    campaign.deleted_at = clock.now()
    session.flush()


def _require_not_deleted(campaign: Campaign) -> None:
    if campaign.deleted_at is not None:
        raise CampaignError("campaign", f"campaign {campaign.id} is deleted")


# ------------------------------------------------------------------ tracking URLs


def _tracking_url_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise CampaignError("name", "must not be empty")
    if len(name) > TRACKING_URL_NAME_MAX_LENGTH:
        raise CampaignError(
            "name", f"at most {TRACKING_URL_NAME_MAX_LENGTH} characters (got {len(name)})"
        )
    if not TRACKING_URL_NAME.fullmatch(name):
        raise CampaignError(
            "name",
            f"only letters, digits, '_', '.' and '-' (as in {{trackingUrl:name}}); got {name!r}",
        )
    return name


def _is_space_or_control(char: str) -> bool:
    # Cf: invisible format characters (bidi overrides, zero-width spaces).
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf")


def _tracking_url_target(value: str) -> str:
    """An absolute http(s) URL the click endpoint will redirect to."""
    url = value.strip()
    if not url:
        raise CampaignError("url", "must not be empty")
    if len(url) > URL_MAX_LENGTH:
        raise CampaignError("url", f"at most {URL_MAX_LENGTH} characters (got {len(url)})")
    if any(_is_space_or_control(char) for char in url):
        raise CampaignError("url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise CampaignError("url", f"{url!r} is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise CampaignError("url", "must be an http:// or https:// URL with a host")
    return url


def tracking_urls(campaign: Campaign) -> list[CampaignTrackingUrl]:
    """The campaign's tracking URLs in creation order (the order the
    snapshot numbers them in)."""
    return list(campaign.tracking_urls)


def add_tracking_url(
    session: Session, campaign: Campaign, name: str, url: str, clock: Clock
) -> CampaignTrackingUrl:
    """Add tracking URL ``name`` → ``url`` to the campaign (see the rules)."""
    _require_not_deleted(campaign)
    name = _tracking_url_name(name)
    target = _tracking_url_target(url)
    if any(existing.name == name for existing in campaign.tracking_urls):
        raise CampaignError("name", f"the campaign already has a tracking URL named {name!r}")
    tracking = CampaignTrackingUrl(name=name, url=target, created_at=clock.now())
    campaign.tracking_urls.append(tracking)
    session.flush()
    return tracking


def remove_tracking_url(session: Session, campaign: Campaign, name: str) -> None:
    """Remove tracking URL ``name`` from the campaign. Mass emails already
    scheduled or sent keep it in their snapshot; a draft using it no longer
    passes the pre-flight."""
    _require_not_deleted(campaign)
    wanted = name.strip()
    for tracking in campaign.tracking_urls:
        if tracking.name == wanted:
            campaign.tracking_urls.remove(tracking)  # delete-orphan: the row goes
            session.flush()
            return
    raise CampaignError("name", f"the campaign has no tracking URL named {wanted!r}")


# ------------------------------------------------------------------ mass emails


def _start_time(start_at: datetime | None, send_now: bool, clock: Clock) -> datetime | None:
    """``send_now`` → now; a future time as given; a time within
    ``START_GRACE`` before now → now; earlier → refused."""
    now = clock.now()
    if send_now:
        if start_at is not None:
            raise CampaignError("start_at", "give a start time or send now, not both")
        return now
    if start_at is None:
        return None
    if start_at.tzinfo is None:
        raise CampaignError("start_at", "must carry a time zone")
    if start_at < now - START_GRACE:
        # Said in the zone the time was given in (the user's, from the web).
        raise CampaignError("start_at", f"{start_at.isoformat()} is in the past")
    return max(start_at, now).astimezone(UTC)


def _template_id(session: Session, template_id: int | None) -> int | None:
    if template_id is not None and session.get(EmailTemplate, template_id) is None:
        raise CampaignError("template_id", f"no template with id {template_id}")
    return template_id


def _set_content(
    session: Session, mass_email: MassEmail, template_id: int | None, content: TemplateSource | None
) -> None:
    """A template or content of its own, exactly one; content of its own is
    checked like a template's."""
    if (template_id is None) == (content is None):
        raise CampaignError("template_id", "choose a template or write content of its own")
    mass_email.template_id = _template_id(session, template_id)
    own = None if content is None else _checked_content(content)
    mass_email.subject = None if own is None else own.subject
    mass_email.body_html = "" if own is None else own.body_html
    mass_email.body_text = None if own is None else own.body_text
    mass_email.header_logo_url = "" if own is None else own.header_logo_url
    mass_email.footer_html = "" if own is None else own.footer_html


def _default_name(session: Session, template_id: int | None, content: TemplateSource | None) -> str:
    """A name from the subject, when none is given."""
    template = None if template_id is None else session.get(EmailTemplate, template_id)
    subject = content.subject if content is not None else template.subject if template else ""
    return " ".join(subject.split())[:NAME_MAX_LENGTH] or "Mass email"


def add_mass_email(
    session: Session,
    campaign: Campaign,
    *,
    template_id: int | None = None,
    content: TemplateSource | None = None,
    start_at: datetime | None = None,
    send_now: bool = False,
    name: str | None = None,
    clock: Clock,
) -> MassEmail:
    """A new draft of ``campaign`` (see the rules on content and start
    time); ``name`` defaults to the subject."""
    _require_not_deleted(campaign)
    mass_email = MassEmail(
        name=_line("name", name, max_length=NAME_MAX_LENGTH)
        if name is not None
        else _default_name(session, template_id, content),
        status=S.DRAFT,
        created_at=clock.now(),
        start_at=_start_time(start_at, send_now, clock),
    )
    _set_content(session, mass_email, template_id, content)
    # Attached only once valid: ``campaign=`` cascades the row into the
    # session, and a refused draft must never reach a later commit.
    mass_email.campaign = campaign
    session.add(mass_email)
    session.flush()
    return mass_email


def update_mass_email(
    session: Session,
    mass_email: MassEmail,
    *,
    template_id: int | None = None,
    content: TemplateSource | None = None,
    start_at: datetime | None = None,
    send_now: bool = False,
    name: str | None = None,
    clock: Clock,
) -> MassEmail:
    """Replace a draft's content, start time and (when given) name."""
    _require_draft(mass_email, "edited")
    mass_email.start_at = _start_time(start_at, send_now, clock)
    _set_content(session, mass_email, template_id, content)
    if name is not None:
        mass_email.name = _line("name", name, max_length=NAME_MAX_LENGTH)
    session.flush()
    return mass_email


def _require_draft(mass_email: MassEmail, verb: str) -> None:
    _require_not_deleted(mass_email.campaign)
    if mass_email.deleted_at is not None:
        raise CampaignError("mass_email", f"mass email {mass_email.id} is deleted")
    if mass_email.status != S.DRAFT:
        raise CampaignError(
            "status", f"only a draft can be {verb}; this mass email is {mass_email.status}"
        )


def delete_mass_email(session: Session, mass_email: MassEmail, clock: Clock) -> None:
    """Soft-delete the mass email (canceling it first when it may still
    send); its queue items, tracked links, snapshot and log rows stay."""
    _soft_delete(mass_email, clock)
    session.flush()


def _soft_delete(mass_email: MassEmail, clock: Clock) -> None:
    if mass_email.deleted_at is not None:
        return
    if mass_email.status in ACTIVE_STATUSES:
        transition(mass_email, S.CANCELED, clock)
    mass_email.deleted_at = clock.now()


# ------------------------------------------------------------------ copies

COPY_PREFIX = "COPY #{number} "


def copy_mass_email(session: Session, mass_email: MassEmail, clock: Clock) -> MassEmail:
    """A new draft copying ``mass_email``'s content (see the rules)."""
    _require_not_deleted(mass_email.campaign)
    if mass_email.deleted_at is not None:
        raise CampaignError("mass_email", f"mass email {mass_email.id} is deleted")
    _lock(session, mass_email)  # two copies at once must not share a number
    try:
        source = mass_email_source(
            mass_email, mass_email.template if mass_email.subject is None else None
        )
    except MessageError as error:
        raise CampaignError("mass_email", f"nothing to copy: {error}") from None
    number = _next_copy_number(session, mass_email.id)
    prefix = COPY_PREFIX.format(number=number)
    if len(prefix) + len(source.subject) > SUBJECT_MAX_LENGTH:
        raise CampaignError(
            "subject", f"too long to add {prefix.strip()!r}: shorten the original's subject"
        )
    copy = MassEmail(
        campaign_id=mass_email.campaign_id,
        template_id=mass_email.template_id,
        name=(prefix + mass_email.name)[:NAME_MAX_LENGTH],
        status=S.DRAFT,
        created_at=clock.now(),
        start_at=None,
        subject=prefix + source.subject,
        body_html=source.body_html,
        body_text=source.body_text,
        header_logo_url=source.header_logo_url,
        footer_html=source.footer_html,
        copy_of_id=mass_email.id,
        copy_number=number,
    )
    session.add(copy)
    session.flush()
    return copy


def _next_copy_number(session: Session, mass_email_id: int) -> int:
    highest = session.scalar(
        select(func.max(MassEmail.copy_number)).where(MassEmail.copy_of_id == mass_email_id)
    )
    return (highest or 0) + 1


def _lock(session: Session, mass_email: MassEmail) -> None:
    """Re-read the row under ``FOR UPDATE`` (PostgreSQL; SQLite serialises
    writers anyway), so a concurrent change is seen, not overwritten."""
    session.refresh(mass_email, with_for_update=True)


# ------------------------------------------------------------------ status changes


def schedule_mass_email(
    session: Session,
    mass_email: MassEmail,
    *,
    start_at: datetime | None,
    can_spam_confirmed: bool,
    runtime: RuntimeSettings,
    settings: Settings,
    secret_key: str,
    clock: Clock,
    dkim_key: DkimKey | None = None,
) -> list[Finding]:
    """Schedule a draft (see the rules); returns the pre-flight's findings
    (warnings and info: errors refuse). The spam check is left to the
    pre-flight the marketer runs: it never blocks, and takes seconds."""
    _lock(session, mass_email)
    _require_draft(mass_email, "scheduled")
    if not can_spam_confirmed:
        raise CampaignError(
            "can_spam_confirmed",
            "confirm that the subject and content meet CAN-SPAM before scheduling",
        )
    start = _start_time(start_at, start_at is None, clock)
    findings = preflight(
        session,
        mass_email,
        runtime=runtime,
        settings=settings,
        secret_key=secret_key,
        clock=clock,
        spam_check=False,
        dkim_key=dkim_key,
    )
    blocking = errors(findings)
    if blocking:
        raise CampaignError(
            "preflight",
            "the pre-flight check found errors",
            [finding.message for finding in blocking],
        )
    try:
        take_snapshot(session, mass_email, runtime)
    except SnapshotError as error:
        raise CampaignError("content", str(error)) from None
    mass_email.can_spam_confirmed_at = clock.now()
    mass_email.start_at = start
    _transition(mass_email, S.PENDING, clock)
    session.flush()
    return findings


def unschedule_mass_email(session: Session, mass_email: MassEmail, clock: Clock) -> None:
    """Pending → draft; the CAN-SPAM confirmation is withdrawn and the
    snapshot's settings forgotten (scheduling again takes them anew)."""
    _lock(session, mass_email)
    _transition(mass_email, S.DRAFT, clock)
    mass_email.can_spam_confirmed_at = None
    clear_settings(mass_email)
    session.flush()


def pause_mass_email(session: Session, mass_email: MassEmail, clock: Clock) -> None:
    """Pending or in progress → paused: no further portion is sent."""
    _lock(session, mass_email)
    _transition(mass_email, S.PAUSED, clock)
    session.flush()


def resume_mass_email(session: Session, mass_email: MassEmail, clock: Clock) -> MassEmailStatus:
    """Paused → where it came from (``mass_email_status.resume_status``);
    returns the new status."""
    _lock(session, mass_email)
    if mass_email.status != S.PAUSED:
        raise CampaignError(
            "status", f"only a paused mass email resumes; this one is {mass_email.status}"
        )
    target = resume_status(mass_email)
    _transition(mass_email, target, clock)
    session.flush()
    return target


def cancel_mass_email(session: Session, mass_email: MassEmail, clock: Clock) -> None:
    """Draft, pending, in progress or paused → canceled (final)."""
    _lock(session, mass_email)
    _transition(mass_email, S.CANCELED, clock)
    session.flush()


def _transition(mass_email: MassEmail, new_status: MassEmailStatus, clock: Clock) -> None:
    try:
        transition(mass_email, new_status, clock)
    except IllegalTransition as error:
        raise CampaignError("status", str(error)) from None


# ------------------------------------------------------------------ lists


def active_campaigns(session: Session) -> Sequence[Campaign]:
    """Campaigns not deleted, newest first."""
    return session.scalars(
        select(Campaign).where(Campaign.deleted_at.is_(None)).order_by(Campaign.id.desc())
    ).all()
