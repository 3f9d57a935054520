"""The runtime settings a message shows (company name, postal address,
mandatory opt-out link, open pixel) are frozen in the mass email's snapshot
when it is scheduled, on SQLite and PostgreSQL: every portion the
dispatcher sends to the test SMTP server, "view online" and the results'
copy as sent keep them after the administrator changes the settings, while
a mass email scheduled afterwards takes the new ones. A mass email
scheduled before migration 0016 (nothing frozen) shows the current ones."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.models import MassEmail, QueueItem
from app.services.campaigns import unschedule_mass_email
from app.services.messages import preview, public_links
from app.services.public_links import PublicLinks
from app.services.results import message_copy
from app.services.view_online import render_view_online
from tests.conftest import TEST_SECRET_KEY
from tests.integration.test_dispatch import World, addresses, make_world
from tests.smtp_server import RunningServer, smtp_server

OLD_COMPANY, OLD_ADDRESS = "Example Corp", "1 Example Street, Springfield"
NEW_COMPANY, NEW_ADDRESS = "Renamed Holdings", "9 New Road, Shelbyville"


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def world(app: Flask, session: Session, clock: FixedClock, server: RunningServer) -> World:
    world = make_world(app, session, clock, server)
    assert (world.runtime.company_name, world.runtime.postal_address) == (OLD_COMPANY, OLD_ADDRESS)
    assert world.runtime.mandatory_opt_out and not world.runtime.open_tracking
    return world


def change_everything(world: World) -> None:
    """The administrator changes every setting the snapshot froze."""
    world.set(
        company_name=NEW_COMPANY,
        postal_address=NEW_ADDRESS,
        mandatory_opt_out=False,
        open_tracking=True,
    )


def links_of(world: World) -> PublicLinks:
    return public_links(world.runtime, app_settings(world.app), TEST_SECRET_KEY)


def html_and_text(data: bytes) -> tuple[str, str]:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    return html_part.get_content(), text_part.get_content()


def assert_old_footer(html: str) -> None:
    assert OLD_COMPANY in html and OLD_ADDRESS in html, html
    assert NEW_COMPANY not in html and NEW_ADDRESS not in html


def assert_new_footer(html: str) -> None:
    assert NEW_COMPANY in html and NEW_ADDRESS in html, html
    assert OLD_COMPANY not in html and OLD_ADDRESS not in html


def sent_mass_email(world: World, name: str, recipients: list[str]) -> list[QueueItem]:
    mass_email = world.start(name, recipients)
    world.tick()
    items = world.items(mass_email)
    assert {item.status for item in items} == {"sent"}
    return items


def test_every_portion_is_sent_with_the_settings_it_was_scheduled_with(world: World) -> None:
    world.set(batch_size=2)
    mass_email = world.start("Portions", addresses("ann", 5))

    world.tick()
    assert len(world.server.handler.messages) == 2  # the first portion
    change_everything(world)
    world.set(batch_size=100)
    world.tick()

    world.assert_never_twice()
    assert len(world.server.handler.messages) == 5
    for received in world.server.handler.messages:
        html, text = html_and_text(received.data)
        # Each recipient got the same footer, opt-out link and no pixel.
        assert_old_footer(html)
        assert OLD_ADDRESS in text and NEW_ADDRESS not in text
        assert "/u/" in html and "/u/" in text  # mandatory opt-out, appended
        assert "/t/o/" not in html  # open tracking was off when scheduled
    # A mass email scheduled after the change takes the new settings.
    later = sent_mass_email(world, "Later", ["zed@example.org"])
    html, _ = html_and_text(world.server.handler.messages[-1].data)
    assert world.server.handler.messages[-1].recipients == ["zed@example.org"]
    assert_new_footer(html)
    assert "/u/" not in html  # the template has none, and none is required now
    assert "/t/o/" in html  # open tracking is on now
    assert later[0].mass_email_id != mass_email.id


def test_the_copy_as_sent_and_view_online_keep_the_footer_as_sent(world: World) -> None:
    [ann] = sent_mass_email(world, "Spring", ["ann@example.org"])
    sent_html, _ = html_and_text(world.server.handler.messages[0].data)
    change_everything(world)
    links = links_of(world)

    copy = message_copy(world.session, ann.mass_email_id, ann.id, links)
    online = render_view_online(world.session, ann, links)

    assert copy is not None and online is not None
    for html in (copy, online):
        assert_old_footer(html)
        assert "/u/" in html  # the opt-out link it was sent with
        assert "/t/o/" not in html  # looking at it is never an open
    # View online is the message as sent, with the recipient's own links.
    assert online == sent_html.replace("\r\n", "\n")
    # A mass email scheduled after the change shows the new footer.
    [zed] = sent_mass_email(world, "Summer", ["zed@example.org"])
    new_copy = message_copy(world.session, zed.mass_email_id, zed.id, links)
    new_online = render_view_online(world.session, zed, links)
    assert new_copy is not None and new_online is not None
    assert_new_footer(new_copy)
    assert_new_footer(new_online)
    assert "/t/o/" not in new_online  # open tracking on, yet no pixel online


def test_a_mass_email_scheduled_before_0016_shows_the_current_settings(world: World) -> None:
    [ann] = sent_mass_email(world, "Old", ["ann@example.org"])
    mass_email = world.session.get(MassEmail, ann.mass_email_id)
    assert mass_email is not None
    assert mass_email.snapshot_postal_address == OLD_ADDRESS
    # What migration 0016 leaves on a mass email scheduled before it.
    mass_email.snapshot_company_name = None
    mass_email.snapshot_postal_address = None
    mass_email.snapshot_mandatory_opt_out = None
    mass_email.snapshot_open_tracking = None
    world.session.commit()
    change_everything(world)

    copy = message_copy(world.session, ann.mass_email_id, ann.id, links_of(world))

    assert copy is not None
    assert_new_footer(copy)


def test_unscheduling_forgets_the_settings_and_scheduling_again_takes_them_anew(
    world: World,
) -> None:
    mass_email = world.start("Pending", ["ann@example.org"], build=False)
    change_everything(world)

    def previewed() -> str:
        return preview(
            world.session,
            mass_email,
            None,
            runtime=world.runtime,
            settings=app_settings(world.app),
            secret_key=TEST_SECRET_KEY,
        ).html

    assert_old_footer(previewed())  # scheduled: what it will send
    unschedule_mass_email(world.session, mass_email, world.clock)
    assert mass_email.snapshot_postal_address is None
    assert_new_footer(previewed())  # a draft: today's settings
