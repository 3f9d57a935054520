"""The glue from a mass email to one message per recipient (docs/messages.md).

``MessageFactory`` does everything that is the same for every recipient once
per mass email — compile the template (``rendering.compile_template``), build
the MIME skeleton (``composition.build_skeleton``), parse the DKIM key — and
then builds each recipient's bytes with only the per-recipient work: the
placeholders, the signed links, one render and one compose. Send Test, the
preview, "view online" and the dispatcher all go through it, so a message
looks the same wherever it is shown.

Rules:
- Content: the mass email's own columns (its content, or the snapshot taken
  when it left draft) once ``subject`` is set, else its template's; neither
  is a ``MessageError``.
- Sender: the campaign's sender profile gives From (name and address) and
  Reply-To; ``List-Id`` is ``<campaign name> <c<campaign id>.<sending
  domain>>`` (RFC 2919) and ``Feedback-ID`` ``<mass email id>:<campaign
  id>:<campaign type>:sluice``, the sending domain being the From address's.
  A campaign without a sender profile cannot send (``MessageError``); it can
  still be previewed and viewed online (``for_rendering``).
- Footer: the company name and postal address come from the runtime
  settings; compiling refuses while either is empty (CAN-SPAM), reported as
  a ``MessageError`` saying which setting to fill in.
- Settings as sent: once a mass email is scheduled, its snapshot's
  company name, postal address, mandatory opt-out and open tracking
  (``settings_as_sent``) replace the runtime settings' in every factory
  made for it, so each portion the dispatcher sends, a Send Test, "view
  online" and the results' copy as sent all show what was sent. A draft,
  or a mass email scheduled before migration 0016, uses the current ones.
- Links: every URL in a message is signed for its queue item
  (``PublicLinks``); ``List-Unsubscribe`` carries the item's opt-out URL and,
  with a bounce address, its mailto address. Queue item 0 is a test message:
  the public endpoints record nothing for it.
- Named tracking URLs (``{{ tracking_url('name') }}``, EspoCRM's
  ``{trackingUrl:name}``): the campaign's tracking URLs, each a tracked
  link whose id follows the template's links (``len(compiled.links) + i``,
  i counting the campaign's tracking URLs in creation order). Once the mass
  email has left draft the names and ids are those its snapshot stored in
  ``tracked_links``, so the dispatcher and "view online" sign the ids the
  click endpoint resolves; a draft (no snapshot yet, or an outdated one
  after unscheduling) numbers the campaign's current ones the same way the
  next snapshot will. An unknown name renders empty (the pre-flight reports
  it as an error).
- Placeholders: the contact's fields (``CONTACT_FIELDS``) and custom
  fields; ``email`` is the address the message goes to (a Send Test shows
  the contact's own), so "view online" renders the queue item's address.
- Envelope sender: the queue item's VERP address
  (``<local>+<item>.<mac>@<bounce domain>``, ``bounce.verp``) when the
  runtime setting ``verp_enabled`` is on and a bounce address is
  configured; else ``settings.bounce_address``, else the From address;
  a test message (item 0) always gets the plain one; a caller may pass
  its own. A bounce address VERP cannot extend is a ``MessageError``.
- Send Test goes out at once, outside statistics and quota: no queue item,
  no campaign-log row, nothing written at all; the subject gets ``[TEST] ``
  and the header ``X-Sluice-Test: yes``.
- Errors are values at the edge: a problem of the whole mass email is a
  ``MessageError``; a problem of one recipient's message (a render failure,
  an address that cannot be written) is a ``RecipientError`` (a subclass),
  so a dispatcher can record it for that recipient and go on.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from app.clock import Clock
from app.models import (
    Campaign,
    Contact,
    EmailTemplate,
    MassEmail,
    MassEmailStatus,
    SenderProfile,
    TrackedLink,
)
from app.services.addresses import InvalidAddress, normalise_address
from app.services.audience import AudienceCategory, audience_select
from app.services.composition import (
    DkimKey,
    DkimSigner,
    HeaderValueError,
    MessageSkeleton,
    RecipientHeaders,
    SenderHeaders,
    build_skeleton,
)
from app.services.composition_headers import header_domain
from app.services.engagement import TEST_QUEUE_ITEM_ID
from app.services.public_links import PublicLinks
from app.services.rendering import (
    CompiledTemplate,
    RecipientContext,
    RenderedMessage,
    RenderError,
    RenderPolicy,
    TemplateProblem,
    TemplateSource,
    compile_template,
    contact_placeholders,
    render,
)
from app.services.return_path import ReturnPathError, verp_codec
from app.services.runtime_settings import RuntimeSettings
from app.services.tokens import LinkSigner
from app.services.transport import SendResult, Transport
from bounce.verp import VerpCodec
from config import Settings

__all__ = [
    "TEST_QUEUE_ITEM_ID",
    "ContactFields",
    "MessageError",
    "MessageFactory",
    "NamedLink",
    "OutgoingMessage",
    "RecipientError",
    "campaign_named_links",
    "default_preview_contact",
    "mass_email_source",
    "preview",
    "render_policy",
    "send_test",
    "settings_as_sent",
    "tracking_link_ids",
]

_T = TypeVar("_T")

# Compiled contents kept for the next factory (see _compiled).
COMPILED_CACHE_SIZE = 16
# The contact fields every template can use, besides the custom fields.
CONTACT_FIELDS = ("email", "first_name", "last_name", "company", "audience_type")
_SETTING_HINTS = {
    "company_name": "set it with `sluice settings set company_name=...`",
    "postal_address": "set it with `sluice settings set postal_address=...`",
}


class ContactFields(Protocol):
    """What a message needs of a contact: a ``Contact`` has it, and so has
    the dispatcher's lighter snapshot of one."""

    @property
    def email(self) -> str | None: ...
    @property
    def first_name(self) -> str: ...
    @property
    def last_name(self) -> str: ...
    @property
    def company(self) -> str: ...
    @property
    def audience_type(self) -> str: ...
    @property
    def custom_fields(self) -> Mapping[str, Any]: ...


class MessageError(ValueError):
    """A mass email that cannot be turned into messages; the text names the
    problem (and what to do about it) for the person who sees it."""


class RecipientError(MessageError):
    """One recipient's message cannot be built; the others can."""


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for ``Transport.send``."""

    data: bytes
    envelope_from: str
    recipient: str
    empty_placeholders: frozenset[str]
    # A line of ``data`` starts with "." (SMTP doubles it): False spares the
    # transport scanning the message for such lines.
    dot_lines: bool = True


# ----------------------------------------------------------------- content


def mass_email_source(mass_email: MassEmail, template: EmailTemplate | None) -> TemplateSource:
    """The content ``mass_email`` sends: its own columns (its content or its
    snapshot) when ``subject`` is set, else ``template``'s. Raises
    ``MessageError`` when it has neither."""
    if mass_email.subject is not None:
        return TemplateSource(
            subject=mass_email.subject,
            body_html=mass_email.body_html,
            body_text=mass_email.body_text,
            header_logo_url=mass_email.header_logo_url,
            footer_html=mass_email.footer_html,
        )
    if template is None:
        raise MessageError(
            f"mass email {mass_email.id} ({mass_email.name!r}) has no content: choose a template"
        )
    return TemplateSource(
        subject=template.subject,
        body_html=template.body_html,
        body_text=template.body_text,
        header_logo_url=template.header_logo_url,
        footer_html=template.footer_html,
    )


def settings_as_sent(mass_email: MassEmail, runtime: RuntimeSettings) -> RuntimeSettings:
    """``runtime`` with the settings ``mass_email``'s snapshot froze (see
    the module's rules); a value the snapshot lacks (a draft, or a snapshot
    taken before migration 0016) stays the current one."""
    return dataclasses.replace(
        runtime,
        company_name=_frozen(mass_email.snapshot_company_name, runtime.company_name),
        postal_address=_frozen(mass_email.snapshot_postal_address, runtime.postal_address),
        mandatory_opt_out=_frozen(mass_email.snapshot_mandatory_opt_out, runtime.mandatory_opt_out),
        open_tracking=_frozen(mass_email.snapshot_open_tracking, runtime.open_tracking),
    )


def _frozen(snapshot: _T | None, current: _T) -> _T:
    return current if snapshot is None else snapshot


def render_policy(runtime: RuntimeSettings) -> RenderPolicy:
    """The layout and tracking rules the runtime settings ask for."""
    return RenderPolicy(
        company_name=runtime.company_name,
        postal_address=runtime.postal_address,
        mandatory_opt_out=runtime.mandatory_opt_out,
        open_tracking=runtime.open_tracking,
    )


def public_links(runtime: RuntimeSettings, settings: Settings, secret_key: str) -> PublicLinks:
    """The site's link builder: ``runtime.site_url``, tokens signed with
    ``secret_key``, the mailto opt-out at ``settings.bounce_address``."""
    return PublicLinks(runtime.site_url, LinkSigner(secret_key), settings.bounce_address)


def _compile(mass_email: MassEmail, policy: RenderPolicy) -> CompiledTemplate:
    """Compile the mass email's content once, problems as ``MessageError``."""
    template = mass_email.template if mass_email.subject is None else None
    source = mass_email_source(mass_email, template)
    try:
        return _compiled(source, policy)
    except TemplateProblem as problem:
        hint = _SETTING_HINTS.get(problem.field)
        if hint is not None:
            raise MessageError(f"cannot send without a footer: {problem.message}; {hint}") from None
        raise MessageError(
            f"the content of mass email {mass_email.id} has a problem: {problem}"
        ) from None


@functools.lru_cache(maxsize=COMPILED_CACHE_SIZE)
def _compiled(source: TemplateSource, policy: RenderPolicy) -> CompiledTemplate:
    """``compile_template``, remembered: the same content under the same
    policy compiles to the same templates, and compiling takes ~40 ms (the
    dispatcher makes a factory per mass email per tick; previews repeat)."""
    return compile_template(source, policy)


# ----------------------------------------------------------------- named tracking URLs


@dataclass(frozen=True)
class NamedLink:
    """A campaign tracking URL as a tracked link of one mass email."""

    name: str
    link_id: int
    url: str


def campaign_named_links(campaign: Campaign, first_link_id: int) -> list[NamedLink]:
    """The campaign's current tracking URLs numbered from ``first_link_id``
    (the number of the template's links) in creation order: what a snapshot
    stores, and what a draft renders with."""
    return [
        NamedLink(tracking.name, first_link_id + index, tracking.url)
        for index, tracking in enumerate(campaign.tracking_urls)
    ]


def tracking_link_ids(mass_email: MassEmail, compiled: CompiledTemplate) -> dict[str, int]:
    """Name → link id of ``mass_email``'s named tracking URLs (see the
    module's rules): its snapshot's once it has left draft, else the
    campaign's current ones numbered after ``compiled.links``."""
    if mass_email.status == MassEmailStatus.DRAFT:
        named = campaign_named_links(mass_email.campaign, len(compiled.links))
        return {link.name: link.link_id for link in named}
    session = object_session(mass_email)
    if session is None:
        raise MessageError(f"mass email {mass_email.id} is not attached to a database session")
    stored = session.execute(
        select(TrackedLink.name, TrackedLink.link_id).where(
            TrackedLink.mass_email_id == mass_email.id, TrackedLink.name.is_not(None)
        )
    )
    return {name: link_id for name, link_id in stored if name is not None}


def _placeholders(contact: ContactFields | None, address: str) -> dict[str, object]:
    """A contact's placeholder values, ``email`` being ``address`` when
    given (the address the message goes to), else the contact's own;
    without a contact every other field is empty."""
    if contact is None:
        fields: dict[str, object] = dict.fromkeys(CONTACT_FIELDS, "")
        custom: Mapping[str, object] = {}
    else:
        fields = {name: getattr(contact, name) for name in CONTACT_FIELDS}
        custom = contact.custom_fields or {}
    if address:
        fields["email"] = address
    return contact_placeholders(fields, custom)


def _display_name(contact: ContactFields | None) -> str:
    if contact is None:
        return ""
    return " ".join(part for part in (contact.first_name, contact.last_name) if part).strip()


# ----------------------------------------------------------------- sending side


@dataclass(frozen=True)
class _Sending:
    """What building bytes needs beyond rendering. ``verp``: the return
    path codec (its key derived once per factory), None when VERP is off."""

    skeleton: MessageSkeleton
    signer: DkimSigner | None
    envelope_from: str
    verp: VerpCodec | None = None

    def return_path(self, queue_item_id: int, test: bool) -> str:
        """The envelope sender of queue item ``queue_item_id``'s message: its
        VERP address, or the plain one for a test message (item 0)."""
        if self.verp is None or test or queue_item_id == TEST_QUEUE_ITEM_ID:
            return self.envelope_from
        return self.verp.encode(queue_item_id)


def sender_headers(
    campaign: Campaign, mass_email: MassEmail, profile: SenderProfile
) -> SenderHeaders:
    """The headers the campaign's sender profile gives every message (see
    the module's rules). Raises ``MessageError`` for an unusable address."""
    domain = profile.from_address.rpartition("@")[2]
    try:
        sending_domain = header_domain("From", domain)
    except HeaderValueError as error:
        raise MessageError(f"sender profile {profile.name!r}: {error}") from None
    return SenderHeaders(
        from_name=profile.from_name,
        from_address=profile.from_address,
        reply_to=profile.reply_to_address,
        list_id=f"{campaign.name} <c{campaign.id}.{sending_domain}>",
        feedback_id=f"{mass_email.id}:{campaign.id}:{campaign.type.value}:sluice",
        message_id_domain=sending_domain,
    )


def _sending(
    session: Session,
    mass_email: MassEmail,
    settings: Settings,
    dkim_key: DkimKey | None,
    *,
    runtime: RuntimeSettings,
    secret_key: str,
) -> _Sending:
    campaign = mass_email.campaign
    profile = (
        None
        if campaign.sender_profile_id is None
        else session.get(SenderProfile, campaign.sender_profile_id)
    )
    if profile is None:
        raise MessageError(
            f"campaign {campaign.id} ({campaign.name!r}) has no sender profile: choose one"
        )
    try:
        skeleton = build_skeleton(sender_headers(campaign, mass_email, profile))
    except HeaderValueError as error:
        raise MessageError(f"sender profile {profile.name!r}: {error}") from None
    signer = None if dkim_key is None else DkimSigner(dkim_key)
    try:
        verp = verp_codec(
            settings.bounce_address,
            runtime.bounce_domain,
            secret_key,
            enabled=runtime.verp_enabled,
        )
    except ReturnPathError as error:
        raise MessageError(str(error)) from None
    return _Sending(skeleton, signer, settings.bounce_address or profile.from_address, verp)


# ----------------------------------------------------------------- the factory


class MessageFactory:
    """One mass email's messages: compiled once, built per recipient."""

    def __init__(
        self,
        compiled: CompiledTemplate,
        links: PublicLinks,
        *,
        open_tracking: bool,
        sending: _Sending | None = None,
        tracking_links: Mapping[str, int] | None = None,
    ) -> None:
        self.compiled = compiled
        self.links = links
        self.tracking_links: Mapping[str, int] = dict(tracking_links or {})
        self._open_tracking = open_tracking
        self._sending = sending

    @classmethod
    def for_mass_email(
        cls,
        session: Session,
        mass_email: MassEmail,
        *,
        runtime: RuntimeSettings,
        settings: Settings,
        secret_key: str,
        dkim_key: DkimKey | None,
    ) -> MessageFactory:
        """A factory that renders and builds sendable messages. Raises
        ``MessageError`` for missing content, a template that does not
        compile, an empty company name or postal address, a campaign
        without a sender profile, or a sender address that cannot be used.
        The snapshot's settings replace ``runtime``'s (``settings_as_sent``)."""
        runtime = settings_as_sent(mass_email, runtime)
        compiled = _compile(mass_email, render_policy(runtime))
        return cls(
            compiled,
            public_links(runtime, settings, secret_key),
            open_tracking=runtime.open_tracking,
            sending=_sending(
                session, mass_email, settings, dkim_key, runtime=runtime, secret_key=secret_key
            ),
            tracking_links=tracking_link_ids(mass_email, compiled),
        )

    @classmethod
    def for_rendering(
        cls,
        mass_email: MassEmail,
        *,
        runtime: RuntimeSettings,
        links: PublicLinks,
        open_pixel: bool = True,
    ) -> MessageFactory:
        """A factory that only renders (preview, view online): no sender
        profile needed, so mail already sent stays viewable after the
        campaign loses its sender. ``build`` raises ``MessageError``. The
        snapshot's settings replace ``runtime``'s (``settings_as_sent``);
        ``open_pixel`` false leaves the open pixel out whatever they say
        (a page shown online is not an open)."""
        runtime = settings_as_sent(mass_email, runtime)
        if not open_pixel:
            runtime = dataclasses.replace(runtime, open_tracking=False)
        compiled = _compile(mass_email, render_policy(runtime))
        return cls(
            compiled,
            links,
            open_tracking=runtime.open_tracking,
            tracking_links=tracking_link_ids(mass_email, compiled),
        )

    def render_for(
        self, *, queue_item_id: int, contact: ContactFields | None, address: str = ""
    ) -> RenderedMessage:
        """The rendered subject, HTML and text of queue item
        ``queue_item_id``'s message for ``contact`` (None: placeholders
        empty); ``address``, when given, is the ``email`` placeholder.
        Raises ``RecipientError``."""
        return self._render(queue_item_id, contact, address, self.links.opt_out_url(queue_item_id))

    def _render(
        self, queue_item_id: int, contact: ContactFields | None, address: str, opt_out_url: str
    ) -> RenderedMessage:
        links = self.links
        recipient = RecipientContext(
            placeholders=_placeholders(contact, address),
            opt_out_url=opt_out_url,
            view_online_url=links.view_online_url(queue_item_id),
            open_pixel_url=links.open_pixel_url(queue_item_id) if self._open_tracking else "",
            click_url=partial(links.click_url, queue_item_id),
            tracking_url=partial(self._tracking_url, queue_item_id),
        )
        try:
            return render(self.compiled, recipient)
        except RenderError as error:
            raise RecipientError(f"queue item {queue_item_id}: {error}") from None

    def _tracking_url(self, queue_item_id: int, name: object) -> str:
        """The tracked URL of tracking URL ``name`` for the item; empty for
        a name the campaign does not have (the pre-flight reports it)."""
        link_id = self.tracking_links.get(name) if isinstance(name, str) else None
        return "" if link_id is None else self.links.click_url(queue_item_id, link_id)

    def build(
        self,
        *,
        queue_item_id: int,
        contact: ContactFields | None,
        to_address: str,
        now: datetime,
        test: bool = False,
        envelope_from: str | None = None,
    ) -> OutgoingMessage:
        """The complete (DKIM-signed, when a key is configured) message of
        queue item ``queue_item_id`` to ``to_address``, dated ``now``.
        Raises ``RecipientError`` when this recipient's message cannot be
        built, ``MessageError`` when the factory only renders."""
        sending = self._sending
        if sending is None:
            raise MessageError("this message factory renders only; it cannot build messages")
        opt_out_url = self.links.opt_out_url(queue_item_id)
        placeholder_address = "" if test and contact is not None else to_address
        rendered = self._render(queue_item_id, contact, placeholder_address, opt_out_url)
        headers = RecipientHeaders(
            to_name="" if test else _display_name(contact),  # a tester is not the contact
            to_address=to_address,
            queue_item_id=queue_item_id,
            list_unsubscribe_url=opt_out_url,
            list_unsubscribe_mailto=self.links.unsubscribe_mailto(queue_item_id),
            date=now,
            test=test,
        )
        try:
            data, dot_lines = sending.skeleton.compose_for_smtp(rendered, headers)
        except HeaderValueError as error:
            raise RecipientError(f"queue item {queue_item_id}: {error}") from None
        if sending.signer is not None:
            data = sending.signer.sign(data)
        return OutgoingMessage(
            data=data,
            envelope_from=envelope_from or sending.return_path(queue_item_id, test),
            recipient=to_address,
            empty_placeholders=rendered.empty_placeholders,
            dot_lines=dot_lines,
        )


# ----------------------------------------------------------------- preview and Send Test


def default_preview_contact(session: Session, campaign: Campaign) -> Contact | None:
    """The campaign's first recipient: the audience member of category
    ``recipient`` with the lowest contact id; None when there is none."""
    audience = audience_select(
        (target.id for target in campaign.target_lists),
        (excluded.id for excluded in campaign.excluding_lists),
    ).subquery("audience")
    first = session.scalar(
        select(audience.c.contact_id)
        .where(audience.c.category == AudienceCategory.RECIPIENT.value)
        .order_by(audience.c.contact_id)
        .limit(1)
    )
    return None if first is None else session.get(Contact, first)


def _chosen_contact(
    session: Session, mass_email: MassEmail, contact_id: int | None
) -> Contact | None:
    """The contact asked for (``MessageError`` when it does not exist), or
    the campaign's first recipient."""
    if contact_id is None:
        return default_preview_contact(session, mass_email.campaign)
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise MessageError(f"no contact with id {contact_id}")
    return contact


def preview(
    session: Session,
    mass_email: MassEmail,
    contact_id: int | None,
    *,
    runtime: RuntimeSettings,
    settings: Settings,
    secret_key: str,
) -> RenderedMessage:
    """``mass_email`` rendered for contact ``contact_id``, by default the
    campaign's first recipient; with nobody to show, placeholders render
    empty. Links are those of the test item 0. Raises ``MessageError``."""
    contact = _chosen_contact(session, mass_email, contact_id)
    factory = MessageFactory.for_rendering(
        mass_email, runtime=runtime, links=public_links(runtime, settings, secret_key)
    )
    return factory.render_for(queue_item_id=TEST_QUEUE_ITEM_ID, contact=contact)


def send_test(
    session: Session,
    mass_email: MassEmail,
    to_address: str,
    contact_id: int | None,
    transport: Transport,
    *,
    clock: Clock,
    runtime: RuntimeSettings,
    settings: Settings,
    secret_key: str,
    dkim_key: DkimKey | None,
) -> SendResult:
    """Send ``mass_email`` to ``to_address`` at once as a test, rendered for
    contact ``contact_id`` (by default the campaign's first recipient).

    Outside statistics and quota: queue item 0, nothing written to the
    database; ``[TEST] `` subject prefix and ``X-Sluice-Test: yes``. Raises
    ``MessageError`` for an invalid address or a mass email that cannot be
    sent; the relay's answer, accepted or not, is the ``SendResult``."""
    try:
        address = normalise_address(to_address)[0]
    except InvalidAddress as error:
        raise MessageError(f"cannot send a test to {to_address.strip()!r}: {error}") from None
    contact = _chosen_contact(session, mass_email, contact_id)
    factory = MessageFactory.for_mass_email(
        session,
        mass_email,
        runtime=runtime,
        settings=settings,
        secret_key=secret_key,
        dkim_key=dkim_key,
    )
    message = factory.build(
        queue_item_id=TEST_QUEUE_ITEM_ID,
        contact=contact,
        to_address=address,
        now=clock.now(),
        test=True,
    )
    return transport.send(message.data, message.envelope_from, message.recipient)
