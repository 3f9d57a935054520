"""View online: a recipient's message re-rendered from the mass email's
snapshot.

Rendering is deterministic, so re-rendering the content the mass email
held when it was sent, for the same contact, shows the message as sent
(docs/messages.md). The rendering is ``app.services.messages``' — the same
glue the dispatcher and Send Test use — so both always render alike. Links
in the page are the recipient's own tracked links, so a click there counts
like a click in the mail. No open pixel: looking at the page online is not
counted as an open. No sender profile is needed: mail already sent stays
viewable after its campaign loses one.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from app.models import Contact, MassEmail, QueueItem
from app.services.messages import MessageError, MessageFactory
from app.services.public_links import PublicLinks
from app.services.runtime_settings import get_runtime_settings

log = logging.getLogger(__name__)


def render_view_online(session: Session, item: QueueItem, links: PublicLinks) -> str | None:
    """The HTML of ``item``'s message, or None when there is nothing to show
    (no content, or content that no longer compiles or renders)."""
    mass_email = session.get(MassEmail, item.mass_email_id)
    if mass_email is None:
        return None
    runtime = get_runtime_settings(session)
    contact = None if item.contact_id is None else session.get(Contact, item.contact_id)
    try:
        factory = MessageFactory.for_rendering(
            mass_email, runtime=runtime, links=links, open_pixel=False
        )
        return factory.render_for(queue_item_id=item.id, contact=contact, address=item.email).html
    except MessageError as error:
        log.warning("view online: queue item %s cannot be rendered: %s", item.id, error)
        return None
