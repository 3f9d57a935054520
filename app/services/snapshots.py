"""The content snapshot a mass email takes when it leaves draft.

Rules (docs/messages.md, "Data kept so that sent links keep working"):

- A mass email that uses its template (``subject`` is None) gets a copy of
  the template's subject, HTML, text and layout in its own columns; one with
  content of its own keeps it. From then on editing the template changes
  nothing this mass email sends, and "view online" re-renders the snapshot.
- The runtime settings a message shows are frozen with the content: the
  company name and postal address of the footer, whether the opt-out link
  is appended (``mandatory_opt_out``) and whether the open pixel is
  (``open_tracking``). Every message of the mass email is rendered with
  them (``messages.settings_as_sent``): all its recipients get the same
  footer however many portions it is sent in, and "view online" and the
  results' copy as sent show it later even after the administrator
  changes the settings. They are the settings the marketer saw and
  confirmed (CAN-SPAM) when scheduling; unscheduling clears them, so a
  draft shows the current ones and scheduling again takes them anew. Not
  frozen: the site URL (the links must reach the site where it is now)
  and the return-path settings (VERP, bounce domain), which are envelope,
  not message, and must follow the bounce mailbox.
- The snapshot is compiled with the policy of the runtime settings
  (``messages.render_policy``, the one the dispatcher uses), and the tracked
  links it yields replace the mass email's earlier ``tracked_links`` rows:
  link id n is ``compiled.links[n]``, the same numbering the dispatcher's
  compile of the same content produces (link ids depend only on the content
  and click tracking, never on the footer settings).
- Each of the campaign's tracking URLs is stored too, as a tracked link
  with its name, numbered after the template's links: link id
  ``len(compiled.links) + i``, i counting them in creation order
  (``messages.campaign_named_links``, which a draft renders with). From
  then on the mass email's messages resolve ``tracking_url('name')`` to
  these rows, so editing the campaign's tracking URLs changes nothing it
  sends.
- Refused once the mass email has a queue: mail already sent points at the
  stored link ids, which must never change under it.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.models import MassEmail, TrackedLink
from app.services.mass_email_status import has_queue
from app.services.messages import (
    MessageError,
    NamedLink,
    campaign_named_links,
    mass_email_source,
    render_policy,
)
from app.services.rendering import (
    CompiledTemplate,
    TemplateProblem,
    TemplateSource,
    compile_template,
)
from app.services.runtime_settings import RuntimeSettings


class SnapshotError(ValueError):
    """The snapshot cannot be taken; the message says why."""


def take_snapshot(
    session: Session, mass_email: MassEmail, runtime: RuntimeSettings
) -> CompiledTemplate:
    """Freeze ``mass_email``'s content and store its tracked links (see the
    module's rules); returns the compiled snapshot. Raises ``SnapshotError``
    when there is no content, it does not compile, or a queue exists."""
    if has_queue(session, mass_email.id):
        raise SnapshotError(
            f"mass email {mass_email.id} has a queue already: its content and links are fixed"
        )
    source = _source(mass_email)
    try:
        compiled = compile_template(source, render_policy(runtime))
    except TemplateProblem as problem:
        raise SnapshotError(f"the content cannot be compiled: {problem}") from None
    _store_content(mass_email, source)
    _store_settings(mass_email, runtime)
    named = campaign_named_links(mass_email.campaign, len(compiled.links))
    _replace_links(session, mass_email.id, compiled.links, named)
    return compiled


def _source(mass_email: MassEmail) -> TemplateSource:
    template = mass_email.template if mass_email.subject is None else None
    try:
        return mass_email_source(mass_email, template)
    except MessageError as error:
        raise SnapshotError(str(error)) from None


def _store_content(mass_email: MassEmail, source: TemplateSource) -> None:
    """The five content columns become the mass email's own (setting
    ``subject`` is what marks them so)."""
    mass_email.subject = source.subject
    mass_email.body_html = source.body_html
    mass_email.body_text = source.body_text
    mass_email.header_logo_url = source.header_logo_url
    mass_email.footer_html = source.footer_html


def _store_settings(mass_email: MassEmail, runtime: RuntimeSettings) -> None:
    """The runtime settings every message of the mass email shows."""
    mass_email.snapshot_company_name = runtime.company_name
    mass_email.snapshot_postal_address = runtime.postal_address
    mass_email.snapshot_mandatory_opt_out = runtime.mandatory_opt_out
    mass_email.snapshot_open_tracking = runtime.open_tracking


def clear_settings(mass_email: MassEmail) -> None:
    """Forget the frozen settings (unscheduling): a draft renders with the
    current ones until it is scheduled again."""
    mass_email.snapshot_company_name = None
    mass_email.snapshot_postal_address = None
    mass_email.snapshot_mandatory_opt_out = None
    mass_email.snapshot_open_tracking = None


def _replace_links(
    session: Session, mass_email_id: int, links: tuple[str, ...], named: list[NamedLink]
) -> None:
    session.execute(delete(TrackedLink).where(TrackedLink.mass_email_id == mass_email_id))
    session.add_all(
        TrackedLink(mass_email_id=mass_email_id, link_id=link_id, url=url)
        for link_id, url in enumerate(links)
    )
    session.add_all(
        TrackedLink(mass_email_id=mass_email_id, link_id=link.link_id, url=link.url, name=link.name)
        for link in named
    )
    session.flush()
