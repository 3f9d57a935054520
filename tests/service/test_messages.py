"""The message glue on both databases: content choice, sender headers,
placeholders, signed links, List-Unsubscribe, Send Test marks, DKIM, the
errors that name the problem, the preview's default contact, and "view
online" through the Flask test client."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from urllib.parse import urlsplit

import dkim  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.models import (
    Campaign,
    CampaignLogEntry,
    CampaignLogEvent,
    CampaignType,
    Contact,
    EmailTemplate,
    MassEmail,
    MassEmailStatus,
    QueueItem,
    QueueItemStatus,
    SenderProfile,
    TargetList,
    TargetListMember,
    TrackedLink,
)
from app.services.campaigns import add_tracking_url, remove_tracking_url
from app.services.composition import DkimKey
from app.services.contacts import set_opt_out
from app.services.dkim_keys import dns_txt_record
from app.services.mass_email_status import transition
from app.services.messages import (
    MessageError,
    MessageFactory,
    OutgoingMessage,
    RecipientError,
    mass_email_source,
    preview,
)
from app.services.runtime_settings import (
    RuntimeSettings,
    seed_runtime_settings,
    update_runtime_settings,
)
from app.services.snapshots import take_snapshot
from app.services.tokens import LinkSigner
from bounce import verp
from config import Settings
from tests.conftest import TEST_SECRET_KEY, add_contact

SITE = "https://sluice.example.com"
LINKS = ("https://www.example.com/news", "https://www.example.com/shop?a=1&b=2")
SUBJECT = "{{ FIRST_NAME }}, spring news from {{ COMPANY }}"
BODY_HTML = """\
<h1>Hello {{ first_name }} {{ LAST_NAME }},</h1>
<p>Your plan: {{ plan }} in {{ custom['Home City'] }}.</p>
<p><a href="https://www.example.com/news">Read the news</a>
and <a href="https://www.example.com/shop?a=1&amp;b=2">visit the shop</a>.</p>
<p><a href="{{ view_online_url }}">View online</a> - sent to {{ EMAIL }}</p>
"""
signer = LinkSigner(TEST_SECRET_KEY)


@dataclass(frozen=True)
class Setup:
    campaign: Campaign
    mass_email: MassEmail
    template: EmailTemplate
    profile: SenderProfile
    contact: Contact


def seed_https_runtime(app: Flask, session: Session, clock: FixedClock) -> RuntimeSettings:
    """The runtime settings as ``sluice init`` seeds them, on an HTTPS site."""
    seed_runtime_settings(session, app_settings(app), clock)
    return update_runtime_settings(session, {"site_url": SITE}, clock)


@pytest.fixture
def runtime(app: Flask, session: Session, clock: FixedClock) -> RuntimeSettings:
    return seed_https_runtime(app, session, clock)


@pytest.fixture
def settings(app: Flask) -> Settings:
    return app_settings(app)


def make_campaign(session: Session, clock: FixedClock) -> Setup:
    """A campaign with a sender profile, a template, one target list holding
    Ann, and a draft mass email using the template."""
    now = clock.now()
    contact = add_contact(
        session,
        clock,
        "ann.smith@example.com",
        first_name="Ann",
        last_name="Smith",
        company="Acme",
        custom_fields={"plan": "pro", "Home City": "Denver"},
    )
    profile = SenderProfile(
        name="News",
        from_name="Example News",
        from_address="news@example.com",
        reply_to_address="maria@example.com",
    )
    template = EmailTemplate(
        name="Spring", subject=SUBJECT, body_html=BODY_HTML, created_at=now, updated_at=now
    )
    targets = TargetList(name="Subscribers", created_at=now, updated_at=now)
    session.add_all((profile, template, targets))
    session.flush()
    session.add(TargetListMember(target_list_id=targets.id, contact_id=contact.id, added_at=now))
    campaign = Campaign(
        name="Spring newsletter",
        type=CampaignType.NEWSLETTER,
        sender_profile_id=profile.id,
        created_at=now,
        target_lists=[targets],
    )
    mass_email = MassEmail(campaign=campaign, name="March", template_id=template.id, created_at=now)
    session.add_all((campaign, mass_email))
    session.flush()
    return Setup(campaign, mass_email, template, profile, contact)


@pytest.fixture
def setup(session: Session, clock: FixedClock, runtime: RuntimeSettings) -> Setup:
    return make_campaign(session, clock)


def factory_for(
    session: Session,
    setup: Setup,
    runtime: RuntimeSettings,
    settings: Settings,
    dkim_key: DkimKey | None = None,
) -> MessageFactory:
    return MessageFactory.for_mass_email(
        session,
        setup.mass_email,
        runtime=runtime,
        settings=settings,
        secret_key=TEST_SECRET_KEY,
        dkim_key=dkim_key,
    )


def store_tracked_links(session: Session, mass_email: MassEmail, factory: MessageFactory) -> None:
    """What the snapshot stores when the mass email leaves draft."""
    session.add_all(
        TrackedLink(mass_email_id=mass_email.id, link_id=link_id, url=url)
        for link_id, url in enumerate(factory.compiled.links)
    )
    session.flush()


def queue_sent_item(
    session: Session, clock: FixedClock, setup: Setup, email: str | None = None
) -> QueueItem:
    """A queue item for Ann, already sent (as if dispatched)."""
    item = QueueItem(
        mass_email_id=setup.mass_email.id,
        contact_id=setup.contact.id,
        email=email if email is not None else setup.contact.email,
        status=QueueItemStatus.SENT,
        created_at=clock.now(),
        sent_at=clock.now(),
    )
    session.add(item)
    session.flush()
    return item


def parse(message: OutgoingMessage) -> EmailMessage:
    parsed = message_from_bytes(message.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def part(parsed: EmailMessage, subtype: str) -> str:
    body = parsed.get_body(preferencelist=(subtype,))
    assert body is not None
    content = body.get_content()
    assert isinstance(content, str)
    return content


def build(
    factory: MessageFactory, setup: Setup, clock: FixedClock, **extra: object
) -> OutgoingMessage:
    values: dict[str, object] = {
        "queue_item_id": 42,
        "contact": setup.contact,
        "to_address": "ann.smith@example.com",
        "now": clock.now(),
    }
    values.update(extra)
    return factory.build(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------- headers


def test_a_built_message_carries_the_sender_profile_and_the_contacts_placeholders(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    message = build(factory_for(session, setup, runtime, settings), setup, clock)
    parsed = parse(message)

    assert parsed["From"] == "Example News <news@example.com>"
    assert parsed["Reply-To"] == "maria@example.com"
    assert parsed["To"] == "Ann Smith <ann.smith@example.com>"
    assert parsed["Subject"] == "Ann, spring news from Acme"
    campaign, mass_email = setup.campaign, setup.mass_email
    assert parsed["List-Id"] == f"Spring newsletter <c{campaign.id}.example.com>"
    assert parsed["Feedback-ID"] == f"{mass_email.id}:{campaign.id}:newsletter:sluice"
    assert parsed["X-Sluice-Queue-Item"] == "42"
    assert parsed["Message-ID"].startswith("<q42.") and parsed["Message-ID"].endswith(
        "@example.com>"
    )
    assert "X-Sluice-Test" not in parsed
    html, text = part(parsed, "html"), part(parsed, "plain")
    assert "Hello Ann Smith," in html and "Hello Ann Smith," in text
    assert "Your plan: pro in Denver." in html
    assert "sent to ann.smith@example.com" in html
    assert "Example Corp" in html and "1 Example Street, Springfield" in html  # CAN-SPAM footer
    assert message.recipient == "ann.smith@example.com"
    # VERP (on by default): the return path names queue item 42.
    assert message.envelope_from == verp.encode(
        42, local="bounces", domain="bounce.example.com", secret=TEST_SECRET_KEY
    )
    assert message.empty_placeholders == frozenset()


def test_click_urls_verify_and_lead_to_the_stored_links(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    factory = factory_for(session, setup, runtime, settings)
    store_tracked_links(session, setup.mass_email, factory)
    parsed = parse(build(factory, setup, clock))

    html = part(parsed, "html")
    tokens = re.findall(rf'href="{re.escape(SITE)}/t/c/([^"]+)"', html)
    assert [signer.verify_click(token) for token in tokens] == [(42, 0), (42, 1)]
    stored = session.scalars(
        select(TrackedLink.url)
        .where(TrackedLink.mass_email_id == setup.mass_email.id)
        .order_by(TrackedLink.link_id)
    ).all()
    assert tuple(stored) == LINKS
    for original in LINKS:
        assert original not in html
    # The text part carries the same tracked URLs, never the originals.
    text = part(parsed, "plain")
    assert all(f"{SITE}/t/c/{token}" in text for token in tokens)
    view_token = re.search(rf'href="{re.escape(SITE)}/v/([^"]+)"', html)
    assert view_token is not None and signer.verify_item("view", view_token[1]) == 42


def test_list_unsubscribe_points_at_the_items_opt_out_url(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    parsed = parse(build(factory_for(session, setup, runtime, settings), setup, clock))

    https_url, mailto = re.findall(r"<([^>]+)>", parsed["List-Unsubscribe"])
    assert https_url.startswith(f"{SITE}/u/")
    assert signer.verify_item("opt_out", https_url.rsplit("/", 1)[1]) == 42
    assert https_url in part(parsed, "html")  # the footer's link is the same URL
    assert mailto.startswith("mailto:bounces+unsubscribe-") and "@bounce.example.com" in mailto
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # HTTPS site


def test_the_test_flag_marks_subject_and_header(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    factory = factory_for(session, setup, runtime, settings)
    parsed = parse(
        build(factory, setup, clock, queue_item_id=0, test=True, to_address="qa@example.net")
    )

    assert parsed["Subject"] == "[TEST] Ann, spring news from Acme"
    assert parsed["To"] == "qa@example.net"  # the tester, not the contact's name
    assert "sent to ann.smith@example.com" in part(parsed, "html")  # as the contact sees it
    assert parsed["X-Sluice-Test"] == "yes"
    assert parsed["X-Sluice-Queue-Item"] == "0"


def test_the_envelope_sender_is_the_verp_address_else_the_bounce_address_else_from(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    verp_on = factory_for(session, setup, runtime, settings)
    verp_off = factory_for(session, setup, replace(runtime, verp_enabled=False), settings)
    elsewhere = factory_for(
        session, setup, replace(runtime, bounce_domain="returns.example.net"), settings
    )
    without_bounce = factory_for(session, setup, runtime, replace(settings, bounce_address=""))

    assert build(verp_on, setup, clock).envelope_from == verp.encode(
        42, local="bounces", domain="bounce.example.com", secret=TEST_SECRET_KEY
    )
    assert build(verp_on, setup, clock, queue_item_id=0, test=True).envelope_from == (
        "bounces@bounce.example.com"  # a test message keeps the plain address
    )
    assert build(elsewhere, setup, clock).envelope_from.endswith("@returns.example.net")
    assert build(verp_off, setup, clock).envelope_from == "bounces@bounce.example.com"
    assert build(without_bounce, setup, clock).envelope_from == "news@example.com"
    given = "someone+else@bounce.example.com"
    assert build(verp_on, setup, clock, envelope_from=given).envelope_from == given
    # No bounce address, no mailto opt-out: the HTTPS URL alone.
    assert "mailto:" not in parse(build(without_bounce, setup, clock))["List-Unsubscribe"]


def test_a_bounce_address_too_long_for_verp_stops_the_mass_email_with_the_reason(
    session: Session, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    long_local = replace(settings, bounce_address="b" * 40 + "@bounce.example.com")

    with pytest.raises(MessageError, match=r"too long for VERP.*switch verp_enabled off"):
        factory_for(session, setup, runtime, long_local)
    assert factory_for(session, setup, replace(runtime, verp_enabled=False), long_local)


def test_a_message_is_dkim_signed_when_a_key_is_configured(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = DkimKey("mail2026", "example.com", pem)
    message = build(factory_for(session, setup, runtime, settings, key), setup, clock)

    assert message.data.startswith(b"DKIM-Signature:")
    record = dns_txt_record(key).encode()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail2026._domainkey.example.com."
        return record

    assert dkim.verify(message.data, dnsfunc=dns)


def test_a_contact_without_values_renders_empty_placeholders_and_lists_them(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    bob = add_contact(session, clock, "bob@example.org")
    factory = factory_for(session, setup, runtime, settings)
    message = factory.build(
        queue_item_id=7, contact=bob, to_address="bob@example.org", now=clock.now()
    )

    parsed = parse(message)
    assert parsed["To"] == "bob@example.org"
    assert parsed["Subject"] == ", spring news from"
    assert {"FIRST_NAME", "COMPANY", "plan", "custom['Home City']"} <= message.empty_placeholders


def test_a_recipient_address_that_cannot_be_written_is_a_recipient_error(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    factory = factory_for(session, setup, runtime, settings)
    with pytest.raises(RecipientError, match="To"):
        build(factory, setup, clock, to_address="ann@example.com\r\nBcc: x@evil.example")


# ------------------------------------------------------------------- content


def test_the_mass_emails_own_content_wins_over_its_template(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    mass_email, template = setup.mass_email, setup.template
    assert mass_email_source(mass_email, template).subject == SUBJECT
    mass_email.subject = "Own subject for {{ first_name }}"
    mass_email.body_html = "<p>Own body</p>"
    source = mass_email_source(mass_email, template)
    assert (source.subject, source.body_html, source.body_text) == (
        "Own subject for {{ first_name }}",
        "<p>Own body</p>",
        None,
    )
    parsed = parse(build(factory_for(session, setup, runtime, settings), setup, clock))
    assert parsed["Subject"] == "Own subject for Ann"
    assert "Own body" in part(parsed, "html")


# -------------------------------------------------------------------- errors


def test_a_campaign_without_sender_profile_cannot_send(
    session: Session, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    setup.campaign.sender_profile_id = None
    session.flush()
    with pytest.raises(MessageError, match="has no sender profile"):
        factory_for(session, setup, runtime, settings)


@pytest.mark.parametrize("field", ["company_name", "postal_address"])
def test_an_empty_company_name_or_postal_address_stops_sending(
    session: Session,
    clock: FixedClock,
    setup: Setup,
    runtime: RuntimeSettings,
    settings: Settings,
    field: str,
) -> None:
    empty = update_runtime_settings(session, {field: ""}, clock)
    with pytest.raises(MessageError, match=rf"CAN-SPAM.*sluice settings set {field}="):
        factory_for(session, setup, empty, settings)


def test_a_template_that_fails_validation_is_named(
    session: Session, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    setup.template.body_html = "<p>Hello {{ first_name </p>"
    with pytest.raises(MessageError, match=r"has a problem: body_html line 1"):
        factory_for(session, setup, runtime, settings)


def test_a_mass_email_without_content_is_named(
    session: Session, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    setup.mass_email.template_id = None
    session.flush()
    session.expire(setup.mass_email, ["template"])
    with pytest.raises(MessageError, match="has no content: choose a template"):
        factory_for(session, setup, runtime, settings)


def test_a_sender_address_that_cannot_be_used_is_named(
    session: Session, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    setup.profile.from_address = "news@exa mple.com"
    with pytest.raises(MessageError, match="sender profile 'News'"):
        factory_for(session, setup, runtime, settings)


def test_a_rendering_factory_cannot_build(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    factory = MessageFactory.for_rendering(
        setup.mass_email,
        runtime=runtime,
        links=factory_for(session, setup, runtime, settings).links,
    )
    with pytest.raises(MessageError, match="renders only"):
        build(factory, setup, clock)


# ------------------------------------------------------------------- preview


def test_the_preview_shows_the_campaigns_first_recipient_by_default(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    # Ann (the lowest id) opts out: she is no longer a recipient.
    set_opt_out(session, "ann.smith@example.com", True, "test", clock)
    later = [
        add_contact(session, clock, f"{name.lower()}@example.org", first_name=name)
        for name in ("Carla", "Bruno")
    ]
    targets = setup.campaign.target_lists[0]
    session.add_all(
        TargetListMember(target_list_id=targets.id, contact_id=contact.id, added_at=clock.now())
        for contact in later
    )
    session.flush()

    shown = preview(
        session,
        setup.mass_email,
        None,
        runtime=runtime,
        settings=settings,
        secret_key=TEST_SECRET_KEY,
    )
    assert shown.subject.startswith("Carla, ")
    chosen = preview(
        session,
        setup.mass_email,
        setup.contact.id,
        runtime=runtime,
        settings=settings,
        secret_key=TEST_SECRET_KEY,
    )
    assert chosen.subject == "Ann, spring news from Acme"
    # Preview links are the test item's: following them records nothing.
    token = re.search(rf'{re.escape(SITE)}/t/c/([^"]+)"', shown.html)
    assert token is not None and signer.verify_click(token[1]) == (0, 0)


def test_a_preview_without_recipients_renders_empty_placeholders(
    session: Session, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    setup.campaign.target_lists = []
    session.flush()
    shown = preview(
        session,
        setup.mass_email,
        None,
        runtime=runtime,
        settings=settings,
        secret_key=TEST_SECRET_KEY,
    )
    assert shown.subject.strip() == ", spring news from"
    assert "FIRST_NAME" in shown.empty_placeholders


def test_a_preview_of_an_unknown_contact_is_named(
    session: Session, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    with pytest.raises(MessageError, match="no contact with id 999"):
        preview(
            session,
            setup.mass_email,
            999,
            runtime=runtime,
            settings=settings,
            secret_key=TEST_SECRET_KEY,
        )


# --------------------------------------------------------------- view online


def test_view_online_shows_the_message_as_sent_for_the_recipient(
    app: Flask,
    session: Session,
    clock: FixedClock,
    setup: Setup,
    runtime: RuntimeSettings,
    settings: Settings,
) -> None:
    # Open tracking on: the mail carries a pixel, the page does not.
    runtime = update_runtime_settings(session, {"open_tracking": True}, clock)
    factory = factory_for(session, setup, runtime, settings)
    store_tracked_links(session, setup.mass_email, factory)
    snapshot = mass_email_source(setup.mass_email, setup.template)
    setup.mass_email.subject = snapshot.subject  # the snapshot taken when it left draft
    setup.mass_email.body_html = snapshot.body_html
    item = queue_sent_item(session, clock, setup)
    sent_html = part(parse(build(factory, setup, clock, queue_item_id=item.id)), "html")
    setup.template.body_html = "<p>Edited after sending</p>"  # must not show
    session.commit()
    app.config[CLOCK_CONFIG_KEY] = clock
    client = app.test_client()

    response = client.get(urlsplit(factory.links.view_online_url(item.id)).path)

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Hello Ann Smith," in page and "Edited after sending" not in page
    pixel = re.compile(rf'<img src="{re.escape(factory.links.open_pixel_url(item.id))}"[^>]*>')
    assert pixel.search(sent_html)
    assert page == pixel.sub("", sent_html).replace("\r\n", "\n")  # QP carried CRLF
    click = re.search(rf'href="{re.escape(SITE)}(/t/c/[^"]+)"', page)
    assert click is not None
    followed = client.get(click[1])
    assert (followed.status_code, followed.headers["Location"]) == (302, LINKS[0])


def test_view_online_needs_no_sender_profile(
    app: Flask, session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings
) -> None:
    item = queue_sent_item(session, clock, setup, email="ann.smith@example.com")
    setup.campaign.sender_profile_id = None
    session.commit()
    token = signer.item_token("view", item.id)
    response = app.test_client().get(f"/v/{token}")
    assert response.status_code == 200
    assert "Hello Ann Smith," in response.get_data(as_text=True)


# --------------------------------------------------------------- named tracking URLs

PROMO = "https://shop.example.com/promo?src=mail"
DOCS = "https://docs.example.com/start"
# In HTML and text alike, {trackingUrl:promo} is EspoCRM's {{ tracking_url('promo') }}.
TRACKING_FORMS = ("{{ tracking_url('promo') }}", "{trackingUrl:promo}")


def use_tracking_url(setup: Setup, form: str) -> None:
    """The template links to tracking URL promo in the HTML and the text."""
    setup.template.body_html = BODY_HTML + f'<p><a href="{form}">Spring promo</a></p>\n'
    setup.template.body_text = f"Hello {{{{ first_name }}}}, see {form}"


def add_tracking_urls(session: Session, clock: FixedClock, setup: Setup) -> None:
    """docs first, then promo: link ids 2 and 3, after the template's 0 and 1."""
    add_tracking_url(session, setup.campaign, "docs", DOCS, clock)
    add_tracking_url(session, setup.campaign, "promo", PROMO, clock)


def send_scheduled(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings
) -> QueueItem:
    """Take the snapshot and leave draft as scheduling does, and queue Ann."""
    take_snapshot(session, setup.mass_email, runtime)
    transition(setup.mass_email, MassEmailStatus.PENDING, clock)
    return queue_sent_item(session, clock, setup)


def click_tokens(content: str) -> list[str]:
    return re.findall(rf"{re.escape(SITE)}/t/c/([A-Za-z0-9_.-]+)", content)


def link_ids(content: str) -> list[int]:
    ids = []
    for token in click_tokens(content):
        verified = signer.verify_click(token)
        assert verified is not None
        ids.append(verified[1])
    return ids


@pytest.mark.parametrize("form", TRACKING_FORMS)
def test_a_tracking_url_is_a_signed_click_link_to_the_named_url(
    app: Flask,
    session: Session,
    clock: FixedClock,
    setup: Setup,
    runtime: RuntimeSettings,
    settings: Settings,
    form: str,
) -> None:
    use_tracking_url(setup, form)
    add_tracking_urls(session, clock, setup)
    item = send_scheduled(session, clock, setup, runtime)
    parsed = parse(
        build(factory_for(session, setup, runtime, settings), setup, clock, queue_item_id=item.id)
    )

    html, text = part(parsed, "html"), part(parsed, "plain")
    assert link_ids(html) == [0, 1, 3]  # the template's links, then promo
    promo_token = click_tokens(html)[2]
    assert signer.verify_click(promo_token) == (item.id, 3)
    assert f'href="{SITE}/t/c/{promo_token}"' in html
    assert f"see {SITE}/t/c/{promo_token}" in text  # the same tracked URL in the text part
    assert PROMO not in html and PROMO not in text
    session.commit()
    app.config[CLOCK_CONFIG_KEY] = clock

    response = app.test_client().get(f"/t/c/{promo_token}", headers={"User-Agent": "Mail/1"})

    assert (response.status_code, response.headers["Location"]) == (302, PROMO)
    session.expire_all()
    clicked = session.scalars(
        select(CampaignLogEntry).where(CampaignLogEntry.event == CampaignLogEvent.CLICKED)
    ).all()
    assert [(entry.queue_item_id, entry.detail) for entry in clicked] == [
        (item.id, {"link_id": 3, "url": PROMO, "name": "promo"})
    ]


def test_a_scheduled_mass_email_keeps_the_tracking_urls_of_its_snapshot(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    use_tracking_url(setup, TRACKING_FORMS[0])
    add_tracking_urls(session, clock, setup)
    item = send_scheduled(session, clock, setup, runtime)
    before = part(
        parse(
            build(
                factory_for(session, setup, runtime, settings), setup, clock, queue_item_id=item.id
            )
        ),
        "html",
    )
    # Editing the campaign's list after scheduling changes nothing sent.
    remove_tracking_url(session, setup.campaign, "docs")
    remove_tracking_url(session, setup.campaign, "promo")
    add_tracking_url(session, setup.campaign, "promo", "https://example.com/other", clock)

    after = part(
        parse(
            build(
                factory_for(session, setup, runtime, settings), setup, clock, queue_item_id=item.id
            )
        ),
        "html",
    )
    assert link_ids(after) == [0, 1, 3]
    assert click_tokens(after) == click_tokens(before)


def test_an_unknown_tracking_url_renders_empty(
    session: Session, clock: FixedClock, setup: Setup, runtime: RuntimeSettings, settings: Settings
) -> None:
    setup.template.body_html = BODY_HTML + '<p><a href="{trackingUrl:nope}">x</a></p>'
    setup.template.body_text = "Text: [{{ tracking_url('nope') }}] [{{ tracking_url(7) }}]"
    add_tracking_urls(session, clock, setup)
    parsed = parse(build(factory_for(session, setup, runtime, settings), setup, clock))
    assert '<a href="">x</a>' in part(parsed, "html")
    assert "Text: [] []" in part(parsed, "plain")


def test_a_draft_resolves_the_campaigns_current_tracking_urls_for_test_mail(
    app: Flask,
    session: Session,
    clock: FixedClock,
    setup: Setup,
    runtime: RuntimeSettings,
    settings: Settings,
) -> None:
    """Before any snapshot, preview and Send Test number the campaign's
    tracking URLs as the snapshot will; their clicks (item 0) record nothing."""
    use_tracking_url(setup, TRACKING_FORMS[1])
    add_tracking_urls(session, clock, setup)
    shown = preview(
        session,
        setup.mass_email,
        None,
        runtime=runtime,
        settings=settings,
        secret_key=TEST_SECRET_KEY,
    )
    tested = build(
        factory_for(session, setup, runtime, settings),
        setup,
        clock,
        queue_item_id=0,
        test=True,
        to_address="qa@example.net",
    )
    promo_token = click_tokens(shown.html)[2]
    assert signer.verify_click(promo_token) == (0, 3)
    assert promo_token in part(parse(tested), "html")
    session.commit()
    app.config[CLOCK_CONFIG_KEY] = clock

    response = app.test_client().get(f"/t/c/{promo_token}")

    assert response.status_code == 200 and "test message" in response.get_data(as_text=True)
    session.expire_all()
    assert session.scalars(select(CampaignLogEntry)).all() == []
    assert session.scalars(select(TrackedLink)).all() == []  # nothing stored for a draft


def test_view_online_renders_the_tracking_url_as_sent(
    app: Flask,
    session: Session,
    clock: FixedClock,
    setup: Setup,
    runtime: RuntimeSettings,
    settings: Settings,
) -> None:
    use_tracking_url(setup, TRACKING_FORMS[1])
    add_tracking_urls(session, clock, setup)
    item = send_scheduled(session, clock, setup, runtime)
    factory = factory_for(session, setup, runtime, settings)
    sent_html = part(parse(build(factory, setup, clock, queue_item_id=item.id)), "html")
    remove_tracking_url(session, setup.campaign, "promo")  # after sending: no effect
    session.commit()
    app.config[CLOCK_CONFIG_KEY] = clock
    client = app.test_client()

    response = client.get(urlsplit(factory.links.view_online_url(item.id)).path)

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert click_tokens(page) == click_tokens(sent_html)
    assert page == sent_html.replace("\r\n", "\n")
    followed = client.get(f"/t/c/{click_tokens(page)[2]}")
    assert (followed.status_code, followed.headers["Location"]) == (302, PROMO)
