"""The services behind the template and campaign pages: sender profile
edits, template deletion, campaign copies, the editor's preview and the
keyset-paged lists (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import BounceDigestState, Campaign, EmailTemplate, MassEmailStatus, SenderProfile
from app.services.campaign_pages import campaigns_page, templates_page
from app.services.campaigns import (
    CampaignError,
    TemplateInput,
    add_tracking_url,
    copy_campaign,
    create_campaign,
    create_sender_profile,
    delete_campaign,
    delete_sender_profile,
    delete_template,
    save_template,
    sender_profile_users,
    update_sender_profile,
)
from app.services.public_links import PublicLinks
from app.services.rendering import TemplateSource
from app.services.runtime_settings import RuntimeSettings
from app.services.template_editor import (
    PreviewContactError,
    preview_contact,
    preview_source,
)
from app.services.tokens import LinkSigner
from tests.conftest import TEST_SECRET_KEY, add_contact
from tests.service.test_queue_build import make_mass_email, make_scene, schedule

LINKS = PublicLinks("https://mail.example.com", LinkSigner(TEST_SECRET_KEY), "")


def campaign_from(session: Session, clock: FixedClock, name: str, profile_id: int) -> Campaign:
    return create_campaign(
        session,
        name=name,
        type="email",
        target_list_ids=[],
        excluding_list_ids=[],
        sender_profile_id=profile_id,
        clock=clock,
    )


def test_a_sender_profile_is_not_deleted_while_a_campaign_uses_it(
    session: Session, clock: FixedClock
) -> None:
    profile = create_sender_profile(session, "News", "News", "news@example.com", "")
    names = [f"Campaign {number:02d}" for number in range(12)]
    campaigns = [campaign_from(session, clock, name, profile.id) for name in reversed(names)]

    assert [name for _, name in sender_profile_users(session, profile)] == names
    with pytest.raises(CampaignError) as refused:
        delete_sender_profile(session, profile)

    listed = ", ".join(repr(name) for name in names[:10])
    assert refused.value.message == (
        f"campaign(s) {listed} and 2 more use it: choose another sender profile for them first"
    )
    assert session.get(SenderProfile, profile.id) is not None
    for campaign in campaigns[1:]:
        delete_campaign(session, campaign, clock)
    with pytest.raises(CampaignError, match=r"^sender_profile: campaign\(s\) 'Campaign 11' use"):
        delete_sender_profile(session, profile)


def test_deleting_a_sender_profile_clears_deleted_campaigns_and_its_digest_progress(
    session: Session, clock: FixedClock
) -> None:
    profile = create_sender_profile(session, "News", "News", "news@example.com", "a@example.com")
    other = create_sender_profile(session, "Sales", "Sales", "sales@example.com", "")
    gone = campaign_from(session, clock, "Old", profile.id)
    kept = campaign_from(session, clock, "Sales", other.id)
    delete_campaign(session, gone, clock)
    session.add(
        BounceDigestState(
            sender_profile_id=profile.id, last_sent_at=clock.now(), covered_until=clock.now()
        )
    )
    session.commit()

    delete_sender_profile(session, profile)
    session.commit()
    session.expire_all()

    assert session.get(SenderProfile, profile.id) is None
    assert session.get(Campaign, gone.id).sender_profile_id is None  # type: ignore[union-attr]
    assert session.get(Campaign, kept.id).sender_profile_id == other.id  # type: ignore[union-attr]
    assert session.scalars(select(BounceDigestState)).all() == []


def test_a_sender_profile_is_updated_all_or_nothing(session: Session) -> None:
    profile = create_sender_profile(session, "News", "News", "news@example.com", "")
    create_sender_profile(session, "Sales", "Sales", "sales@example.com", "")

    with pytest.raises(CampaignError) as taken:
        update_sender_profile(
            session,
            profile,
            name="Sales",
            from_name="X",
            from_address="x@example.com",
            reply_to_address="",
        )
    with pytest.raises(CampaignError) as bad:
        update_sender_profile(
            session,
            profile,
            name="News 2",
            from_name="X",
            from_address="nope",
            reply_to_address="",
        )

    assert taken.value.field == "name" and bad.value.field == "from_address"
    assert (profile.name, profile.from_name, profile.from_address) == (
        "News",
        "News",
        "news@example.com",
    )
    update_sender_profile(
        session,
        profile,
        name="News",
        from_name="The News",
        from_address="News@Example.com",
        reply_to_address="help@example.com",
    )
    assert (profile.from_name, profile.from_address, profile.reply_to_address) == (
        "The News",
        "news@example.com",
        "help@example.com",
    )


def test_a_template_in_use_by_a_draft_is_not_deleted_but_a_snapshot_frees_it(
    app: object, session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    mass_email = make_mass_email(session, scene, clock)

    with pytest.raises(CampaignError) as refused:
        delete_template(session, scene.template)
    assert refused.value.field == "template_id"
    assert "Spring campaign" in refused.value.message

    schedule(app, session, clock, mass_email)  # type: ignore[arg-type]
    delete_template(session, scene.template)

    session.expire_all()
    assert session.scalars(select(EmailTemplate)).all() == []
    assert mass_email.template_id is None
    assert mass_email.subject == "Spring sale for {{ FIRST_NAME }}"  # the snapshot stays


def test_a_campaign_copy_takes_its_settings_and_tracking_urls_not_its_mass_emails(
    session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    original = make_mass_email(session, scene, clock, name="April").campaign
    add_tracking_url(session, original, "shop", "https://example.com/shop", clock)

    copy = copy_campaign(session, original, clock)

    assert copy.id != original.id
    assert (copy.name, copy.type) == ("Copy of April", original.type)
    assert copy.target_lists == original.target_lists
    assert copy.excluding_lists == original.excluding_lists
    assert copy.sender_profile_id == original.sender_profile_id
    assert [(t.name, t.url) for t in copy.tracking_urls] == [("shop", "https://example.com/shop")]
    assert copy.mass_emails == []
    delete_campaign(session, original, clock)
    with pytest.raises(CampaignError):
        copy_campaign(session, original, clock)


def test_the_preview_renders_for_the_contact_with_the_layout(
    session: Session, runtime: RuntimeSettings, clock: FixedClock
) -> None:
    add_contact(session, clock, "zoe@example.org", first_name="Zoe")
    source = TemplateSource("Hi {{ first_name }}", "<p>Dear {{ first_name }}</p>", None, "", "Why")

    preview = preview_source(
        source, preview_contact(session, "zoe@EXAMPLE.org"), runtime=runtime, links=LINKS
    )

    assert preview.ok
    assert preview.subject == "Hi Zoe"
    assert "Dear Zoe" in preview.html and "Why" in preview.html
    assert runtime.company_name in preview.html
    assert "/t/o/" not in preview.html  # no open pixel in a preview
    assert "Dear Zoe" in preview.text
    with pytest.raises(PreviewContactError, match="no contact has the address"):
        preview_contact(session, "nobody@example.org")
    with pytest.raises(PreviewContactError, match="not an email address"):
        preview_contact(session, "nobody")
    assert preview_contact(session, "") is not None  # the first contact


def test_the_preview_lists_every_problem_with_its_line(
    session: Session, runtime: RuntimeSettings
) -> None:
    source = TemplateSource("{{ x", "<p>\n{% if %}", None, "ftp://logo", "")
    empty_footer = type(runtime)(**{**runtime.__dict__, "company_name": " "})

    preview = preview_source(source, None, runtime=empty_footer, links=LINKS)

    assert not preview.ok
    found = {(problem.field, problem.line) for problem in preview.problems}
    assert {("subject", 1), ("body_html", 2), ("header_logo_url", None)} <= found
    assert ("company_name", None) in found


def test_lists_page_by_keyset_newest_first(session: Session, clock: FixedClock) -> None:
    scene = make_scene(session, clock)
    for number in range(5):
        make_mass_email(session, scene, clock, name=f"C{number}")
    deleted = make_mass_email(session, scene, clock, name="gone").campaign
    delete_campaign(session, deleted, clock)
    save_template(session, TemplateInput("Other", "S", "<p>x</p>"), clock)

    first = campaigns_page(session, None, limit=3)
    second = campaigns_page(session, first.next_after, limit=3)

    assert [row.campaign.name for row in first.items] == ["C4", "C3", "C2"]
    assert [row.campaign.name for row in second.items] == ["C1", "C0"]
    assert second.next_after is None
    assert first.items[0].sender == "News"
    assert first.items[0].mass_emails == {MassEmailStatus.DRAFT: 1}
    assert [t.name for t in templates_page(session).items] == ["Other", "Spring"]
    assert session.scalars(select(Campaign)).all()  # the deleted one stays stored
