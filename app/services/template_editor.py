"""What the template editor shows besides the form: the placeholders a
template can use, and a preview of content not yet saved for one contact.

Rules:

- The preview renders exactly as a message does (``messages.MessageFactory``
  with the runtime settings' layout: logo, footer, company name and postal
  address, opt-out link), for the test queue item 0, whose links record
  nothing when followed. Open tracking is off in a preview: looking at it is
  not an open.
- Content with problems is not rendered: the preview lists every problem
  with its field and line (``validate_template``), and the footer settings
  the layout needs (CAN-SPAM: company name and postal address) when empty.
- A template belongs to no campaign, so ``tracking_url('name')`` renders
  empty in its preview (a mass email's preview resolves it).
- The contact is chosen by address; without one, the contact with the
  lowest id that has an address stands in, and with no contact at all the
  placeholders render empty.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Contact
from app.services.addresses import InvalidAddress
from app.services.contacts import find_contact
from app.services.engagement import TEST_QUEUE_ITEM_ID
from app.services.messages import MessageFactory, RecipientError, render_policy
from app.services.public_links import PublicLinks
from app.services.rendering import (
    TemplateProblem,
    TemplateSource,
    compile_template,
    validate_template,
)
from app.services.runtime_settings import RuntimeSettings


@dataclass(frozen=True)
class Placeholder:
    """One entry of the editor's placeholder helper: what it inserts."""

    code: str
    description: str


PLACEHOLDERS: tuple[Placeholder, ...] = (
    Placeholder("{{ first_name }}", "First name"),
    Placeholder("{{ last_name }}", "Last name"),
    Placeholder("{{ full_name }}", "First and last name"),
    Placeholder("{{ email }}", "Email address"),
    Placeholder("{{ company }}", "Company"),
    Placeholder("{{ audience_type }}", "Audience type"),
    Placeholder("{{ custom['Field name'] }}", "A custom field (change Field name)"),
    Placeholder("{{ opt_out_url }}", "Opt-out link (one is added to the footer otherwise)"),
    Placeholder("{{ view_online_url }}", "View-online link"),
    Placeholder("{{ tracking_url('name') }}", "A tracking URL of the campaign (change name)"),
)


class PreviewContactError(ValueError):
    """The contact asked for cannot be found; the text says why."""


@dataclass(frozen=True)
class Preview:
    """A rendered preview, or the problems that stop one."""

    subject: str = ""
    html: str = ""
    text: str = ""
    problems: tuple[TemplateProblem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def preview_contact(session: Session, address: str) -> Contact | None:
    """The contact at ``address`` (``PreviewContactError`` when there is
    none); for a blank address the first contact that has one, or None."""
    if address.strip():
        try:
            contact = find_contact(session, address)
        except InvalidAddress as error:
            raise PreviewContactError(
                f"{address.strip()!r} is not an email address: {error}"
            ) from None
        if contact is None:
            raise PreviewContactError(f"no contact has the address {address.strip()!r}")
        return contact
    return session.scalar(
        select(Contact).where(Contact.email_lower.is_not(None)).order_by(Contact.id).limit(1)
    )


def footer_problems(runtime: RuntimeSettings) -> list[TemplateProblem]:
    """The footer settings that stop any message being rendered (CAN-SPAM:
    company name and postal address), each saying who fixes it."""
    problems = []
    for field, label in (("company_name", "company name"), ("postal_address", "postal address")):
        if not str(getattr(runtime, field)).strip():
            problems.append(
                TemplateProblem(
                    field,
                    None,
                    f"the {label} for the footer is empty (CAN-SPAM): an administrator "
                    "sets it under Settings",
                )
            )
    return problems


def preview_source(
    source: TemplateSource,
    contact: Contact | None,
    *,
    runtime: RuntimeSettings,
    links: PublicLinks,
) -> Preview:
    """``source`` rendered for ``contact`` (see the module's rules)."""
    problems = validate_template(source) + footer_problems(runtime)
    if problems:
        return Preview(problems=tuple(problems))
    policy = render_policy(dataclasses.replace(runtime, open_tracking=False))
    try:
        compiled = compile_template(source, policy)
    except TemplateProblem as problem:  # e.g. a text part that cannot be derived
        return Preview(problems=(problem,))
    factory = MessageFactory(compiled, links, open_tracking=False)
    try:
        rendered = factory.render_for(queue_item_id=TEST_QUEUE_ITEM_ID, contact=contact)
    except RecipientError as error:
        return Preview(problems=(TemplateProblem("body_html", None, str(error)),))
    return Preview(subject=rendered.subject, html=rendered.html, text=rendered.text)
