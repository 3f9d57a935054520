"""Campaign editing: sender profiles, templates, campaigns, mass emails,
copies, soft deletes, scheduling and its snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.cli import ScriptInfo
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import app_settings
from app.cli import build_cli
from app.clock import FixedClock
from app.models import (
    Campaign,
    CampaignLogEntry,
    CampaignLogEvent,
    EmailTemplate,
    MassEmail,
    MassEmailStatus,
    QueueItem,
    SenderProfile,
    TrackedLink,
)
from app.services.addresses import normalise_address
from app.services.campaigns import (
    CampaignError,
    TemplateInput,
    add_mass_email,
    add_tracking_url,
    cancel_mass_email,
    copy_mass_email,
    create_campaign,
    create_sender_profile,
    delete_campaign,
    delete_mass_email,
    pause_mass_email,
    remove_tracking_url,
    resume_mass_email,
    save_template,
    schedule_mass_email,
    tracking_urls,
    unschedule_mass_email,
    update_campaign,
    update_mass_email,
)
from app.services.rendering import TemplateSource
from app.services.runtime_settings import (
    RuntimeSettings,
)
from app.services.target_lists import add_members, create_target_list
from tests.conftest import TEST_SECRET_KEY, add_contact

S = MassEmailStatus
BODY = (
    "<p>Hello {{ FIRST_NAME }},</p>\n"
    '<p><a href="https://example.com/sale">See the sale</a></p>\n'
    '<p><a href="https://example.com/shop">Shop</a></p>'
)


def template_input(name: str = "Spring", **changes: str | None) -> TemplateInput:
    values: dict[str, str | None] = {
        "subject": "Spring sale for {{ FIRST_NAME }}",
        "body_html": BODY,
        "body_text": None,
        "header_logo_url": "https://example.com/logo.png",
        "footer_html": "<p>Thanks for reading.</p>",
    }
    values.update(changes)
    return TemplateInput(name=name, **values)  # type: ignore[arg-type]


@dataclass
class Setup:
    profile: SenderProfile
    template: EmailTemplate
    campaign: Campaign
    mass_email: MassEmail


def make_setup(session: Session, clock: FixedClock, *, recipients: int = 2) -> Setup:
    """A sender profile, a template, a list of ``recipients`` contacts, a
    campaign on it and a draft mass email using the template."""
    profile = create_sender_profile(
        session, "News", "Example News", "news@example.com", "team@example.com"
    )
    template = save_template(session, template_input(), clock)
    target = create_target_list(session, "Customers", "", clock)
    contacts = [
        add_contact(session, clock, f"person{index}@example.org", first_name=f"P{index}")
        for index in range(recipients)
    ]
    add_members(session, target, [contact.id for contact in contacts], clock)
    campaign = create_campaign(
        session,
        name="Spring campaign",
        type="newsletter",
        target_list_ids=[target.id],
        excluding_list_ids=[],
        sender_profile_id=profile.id,
        clock=clock,
    )
    mass_email = add_mass_email(session, campaign, template_id=template.id, clock=clock)
    return Setup(profile, template, campaign, mass_email)


def schedule(
    session: Session,
    app: Flask,
    runtime: RuntimeSettings,
    clock: FixedClock,
    mass_email: MassEmail,
    *,
    start_at: datetime | None = None,
    confirmed: bool = True,
) -> None:
    schedule_mass_email(
        session,
        mass_email,
        start_at=start_at,
        can_spam_confirmed=confirmed,
        runtime=runtime,
        settings=app_settings(app),
        secret_key=TEST_SECRET_KEY,
        clock=clock,
    )


# ----------------------------------------------------------------------- sender profiles


def test_a_sender_profile_is_saved_with_normalised_addresses(session: Session) -> None:
    profile = create_sender_profile(
        session, "  News  ", "Example News", " News@EXAMPLE.com ", "Team@Example.COM"
    )
    assert (profile.name, profile.from_name) == ("News", "Example News")
    assert profile.from_address == normalise_address("News@EXAMPLE.com")[0]
    assert profile.reply_to_address == normalise_address("Team@Example.COM")[0]
    assert profile.from_address.endswith("@example.com")
    assert create_sender_profile(session, "Plain", "", "a@example.com", "").reply_to_address == ""


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (("", "News", "news@example.com", ""), "name"),
        (("Two\nlines", "News", "news@example.com", ""), "name"),
        (("News", "Evil\r\nBcc: x@example.com", "news@example.com", ""), "from_name"),
        (("News", "News", "not an address", ""), "from_address"),
        (("News", "News", "nüws@example.com", ""), "from_address"),
        (("News", "News", "news@example.com", "nobody@"), "reply_to_address"),
    ],
)
def test_a_sender_profile_is_refused_naming_the_field(
    session: Session, arguments: tuple[str, str, str, str], field: str
) -> None:
    with pytest.raises(CampaignError) as refused:
        create_sender_profile(session, *arguments)
    assert refused.value.field == field


def test_sender_profile_names_are_unique(session: Session) -> None:
    create_sender_profile(session, "News", "", "news@example.com", "")
    with pytest.raises(CampaignError, match="already exists"):
        create_sender_profile(session, "News", "", "other@example.com", "")


# ----------------------------------------------------------------------- templates


def test_a_template_is_saved_and_updated(session: Session, clock: FixedClock) -> None:
    template = save_template(session, template_input(body_text="  "), clock)
    assert template.body_text is None  # blank: derived from the HTML
    assert template.header_logo_url == "https://example.com/logo.png"
    clock.advance(timedelta(minutes=1))
    same = save_template(
        session, template_input("Spring v2", subject="New"), clock, template_id=template.id
    )
    assert same.id == template.id
    assert (same.name, same.subject, same.updated_at) == ("Spring v2", "New", clock.now())
    assert same.created_at == clock.now() - timedelta(minutes=1)


def test_a_template_with_syntax_errors_is_refused_with_every_problem_and_its_line(
    session: Session, clock: FixedClock
) -> None:
    broken = template_input(
        subject="Hello {{ FIRST_NAME",
        body_html="<p>one</p>\n<p>two</p>\n<p>{% if x %}three</p>",
        header_logo_url="ftp://example.com/logo.png",
    )
    with pytest.raises(CampaignError) as refused:
        save_template(session, broken, clock)
    problems = refused.value.problems
    assert refused.value.field == "subject"
    assert any(problem.startswith("subject line 1:") for problem in problems)
    assert any(problem.startswith("body_html line 3:") for problem in problems)
    assert any(problem.startswith("header_logo_url:") for problem in problems)
    assert "body_html line 3" in str(refused.value)
    assert session.scalar(select(func.count()).select_from(EmailTemplate)) == 0


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"subject": " "}, "subject: must not be empty"),
        ({"subject": "one\ntwo"}, "subject: must be a single line"),
        ({"header_logo_url": "javascript:alert(1)"}, "header_logo_url"),
    ],
)
def test_a_template_subject_and_logo_are_checked(
    session: Session, clock: FixedClock, changes: dict[str, str], problem: str
) -> None:
    with pytest.raises(CampaignError) as refused:
        save_template(session, template_input(**changes), clock)
    assert any(item.startswith(problem) for item in refused.value.problems)


def test_template_names_are_unique(session: Session, clock: FixedClock) -> None:
    first = save_template(session, template_input("Spring"), clock)
    save_template(session, template_input("Spring"), clock, template_id=first.id)  # itself
    with pytest.raises(CampaignError) as refused:
        save_template(session, template_input("Spring"), clock)
    assert refused.value.field == "name"
    with pytest.raises(CampaignError) as unknown:
        save_template(session, template_input("Other"), clock, template_id=999)
    assert unknown.value.field == "template_id"


# ----------------------------------------------------------------------- campaigns


def test_a_campaign_refuses_unknown_lists_types_and_profiles(
    session: Session, clock: FixedClock
) -> None:
    target = create_target_list(session, "Customers", "", clock)
    base = {
        "name": "Spring",
        "type": "email",
        "target_list_ids": [target.id],
        "excluding_list_ids": [],
        "sender_profile_id": None,
        "clock": clock,
    }
    for change, field in (
        ({"target_list_ids": [target.id, 77]}, "target_list_ids"),
        ({"excluding_list_ids": [78]}, "excluding_list_ids"),
        ({"type": "sms"}, "type"),
        ({"sender_profile_id": 79}, "sender_profile_id"),
        ({"name": "\n"}, "name"),
    ):
        with pytest.raises(CampaignError) as refused:
            create_campaign(session, **{**base, **change})  # type: ignore[arg-type]
        assert refused.value.field == field
    campaign = create_campaign(session, **base)  # type: ignore[arg-type]
    assert [item.id for item in campaign.target_lists] == [target.id]


def test_audience_and_sender_are_fixed_while_a_mass_email_is_scheduled(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    other = create_target_list(session, "Others", "", clock)
    schedule(session, app, runtime, clock, setup.mass_email)
    keep = {
        "type": "newsletter",
        "target_list_ids": [item.id for item in setup.campaign.target_lists],
        "excluding_list_ids": [],
        "sender_profile_id": setup.profile.id,
    }
    update_campaign(session, setup.campaign, name="Renamed", **keep)  # type: ignore[arg-type]
    assert setup.campaign.name == "Renamed"
    with pytest.raises(CampaignError) as refused:
        update_campaign(
            session,
            setup.campaign,
            name="Renamed",
            **{**keep, "excluding_list_ids": [other.id]},  # type: ignore[arg-type]
        )
    assert refused.value.field == "excluding_list_ids"
    unschedule_mass_email(session, setup.mass_email, clock)
    update_campaign(
        session,
        setup.campaign,
        name="Renamed",
        **{**keep, "excluding_list_ids": [other.id]},  # type: ignore[arg-type]
    )
    assert [item.id for item in setup.campaign.excluding_lists] == [other.id]


# ----------------------------------------------------------------------- mass emails


def test_a_mass_email_takes_a_template_or_content_of_its_own(
    session: Session, clock: FixedClock
) -> None:
    setup = make_setup(session, clock)
    assert setup.mass_email.status == S.DRAFT
    assert setup.mass_email.subject is None  # uses the template
    assert setup.mass_email.name == "Spring sale for {{ FIRST_NAME }}"
    own = add_mass_email(
        session,
        setup.campaign,
        content=TemplateSource("Own subject", "<p>Own body</p>"),
        name="Own",
        clock=clock,
    )
    assert (own.subject, own.body_html, own.template_id) == ("Own subject", "<p>Own body</p>", None)
    for arguments in ({}, {"template_id": setup.template.id, "content": TemplateSource("a", "b")}):
        with pytest.raises(CampaignError, match="template or write content"):
            add_mass_email(session, setup.campaign, clock=clock, **arguments)  # type: ignore[arg-type]
    with pytest.raises(CampaignError) as refused:
        add_mass_email(
            session, setup.campaign, content=TemplateSource("Hi", "<p>{{ x </p>"), clock=clock
        )
    assert refused.value.field == "body_html"


def test_a_mass_email_from_a_template_not_yet_loaded_in_the_session(
    session: Session, clock: FixedClock
) -> None:
    # As in a web request: the template is only known by id. Looking it up
    # must not flush the half-built mass email (an SAWarning, an error here).
    setup = make_setup(session, clock)
    session.commit()
    template_id, campaign_id = setup.template.id, setup.campaign.id
    session.expunge_all()
    campaign = session.get(Campaign, campaign_id)
    assert campaign is not None
    added = add_mass_email(session, campaign, template_id=template_id, clock=clock)
    assert (added.template_id, added.name) == (template_id, "Spring sale for {{ FIRST_NAME }}")


def test_a_refused_mass_email_never_reaches_the_database(
    session: Session, clock: FixedClock
) -> None:
    setup = make_setup(session, clock)
    session.commit()
    before = session.scalar(select(func.count()).select_from(MassEmail))
    with pytest.raises(CampaignError):
        add_mass_email(
            session, setup.campaign, content=TemplateSource("Hi", "<p>{{ x </p>"), clock=clock
        )
    session.commit()  # a caller that commits anyway must not store a ghost draft
    assert session.scalar(select(func.count()).select_from(MassEmail)) == before


def test_start_times(session: Session, clock: FixedClock) -> None:
    setup = make_setup(session, clock)
    now = clock.now()

    def start(start_at: datetime | None = None, send_now: bool = False) -> datetime | None:
        return add_mass_email(
            session,
            setup.campaign,
            template_id=setup.template.id,
            start_at=start_at,
            send_now=send_now,
            clock=clock,
        ).start_at

    assert start(send_now=True) == now
    assert start() is None
    assert start(start_at=now + timedelta(days=1)) == now + timedelta(days=1)
    assert start(start_at=now - timedelta(seconds=20)) == now  # submitted "now"
    with pytest.raises(CampaignError, match="in the past"):
        start(start_at=now - timedelta(hours=1))
    with pytest.raises(CampaignError, match="time zone"):
        start(start_at=datetime(2030, 1, 1))
    with pytest.raises(CampaignError, match="not both"):
        start(start_at=now + timedelta(days=1), send_now=True)


def test_only_drafts_are_edited(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    update_mass_email(
        session,
        setup.mass_email,
        content=TemplateSource("Changed", "<p>Changed</p>"),
        name="Changed",
        clock=clock,
    )
    assert (setup.mass_email.subject, setup.mass_email.template_id) == ("Changed", None)
    update_mass_email(session, setup.mass_email, template_id=setup.template.id, clock=clock)
    assert setup.mass_email.subject is None  # back to the template's content
    schedule(session, app, runtime, clock, setup.mass_email)
    with pytest.raises(CampaignError) as refused:
        update_mass_email(session, setup.mass_email, template_id=setup.template.id, clock=clock)
    assert refused.value.field == "status"


# ----------------------------------------------------------------------- copies


def test_copies_are_numbered_per_original(session: Session, clock: FixedClock) -> None:
    setup = make_setup(session, clock)
    first = copy_mass_email(session, setup.mass_email, clock)
    second = copy_mass_email(session, setup.mass_email, clock)
    assert first.subject == "COPY #1 Spring sale for {{ FIRST_NAME }}"
    assert second.subject == "COPY #2 Spring sale for {{ FIRST_NAME }}"
    assert (first.copy_number, second.copy_number) == (1, 2)
    assert first.copy_of_id == second.copy_of_id == setup.mass_email.id
    # A copy of a copy counts its own copies.
    copy_of_copy = copy_mass_email(session, second, clock)
    assert copy_of_copy.subject == "COPY #1 COPY #2 Spring sale for {{ FIRST_NAME }}"
    assert (copy_of_copy.copy_of_id, copy_of_copy.copy_number) == (second.id, 1)
    # A deleted copy keeps its number: numbers never repeat.
    delete_mass_email(session, second, clock)
    assert copy_mass_email(session, setup.mass_email, clock).copy_number == 3


def test_a_copy_is_a_draft_with_its_own_content_and_no_recipients(
    session: Session, clock: FixedClock
) -> None:
    setup = make_setup(session, clock)
    original = setup.mass_email
    original.status = S.COMPLETE  # fixture: a mass email that was sent
    session.add(QueueItem(mass_email_id=original.id, email="a@example.org", created_at=clock.now()))
    session.flush()
    copy = copy_mass_email(session, original, clock)
    assert copy.status == S.DRAFT
    assert copy.campaign_id == original.campaign_id
    assert copy.start_at is None and copy.can_spam_confirmed_at is None
    assert copy.body_html == setup.template.body_html
    assert copy.header_logo_url == setup.template.header_logo_url
    assert copy.footer_html == setup.template.footer_html
    assert copy.name == f"COPY #1 {original.name}"
    queued = session.scalar(
        select(func.count()).select_from(QueueItem).where(QueueItem.mass_email_id == copy.id)
    )
    assert queued == 0
    # The copy's content is its own: editing the template leaves it alone.
    save_template(
        session, template_input(body_html="<p>new</p>"), clock, template_id=setup.template.id
    )
    session.refresh(copy)
    assert copy.body_html == BODY


# ----------------------------------------------------------------------- soft delete


def add_sent_records(session: Session, clock: FixedClock, mass_email: MassEmail) -> None:
    item = QueueItem(mass_email_id=mass_email.id, email="a@example.org", created_at=clock.now())
    session.add(item)
    session.add(TrackedLink(mass_email_id=mass_email.id, link_id=0, url="https://example.com"))
    session.flush()
    session.add(
        CampaignLogEntry(
            mass_email_id=mass_email.id,
            queue_item_id=item.id,
            event=CampaignLogEvent.SENT,
            occurred_at=clock.now(),
            detail={},
        )
    )
    session.flush()


def kept_rows(session: Session, mass_email_id: int) -> tuple[int, int, int]:
    def count(model: type[QueueItem | TrackedLink | CampaignLogEntry]) -> int:
        return (
            session.scalar(
                select(func.count()).select_from(model).where(model.mass_email_id == mass_email_id)
            )
            or 0
        )

    return count(QueueItem), count(TrackedLink), count(CampaignLogEntry)


def test_deleting_a_mass_email_keeps_its_queue_links_and_log(
    session: Session, clock: FixedClock
) -> None:
    setup = make_setup(session, clock)
    mass_email = setup.mass_email
    mass_email.status = S.IN_PROGRESS  # fixture: sending
    add_sent_records(session, clock, mass_email)
    delete_mass_email(session, mass_email, clock)
    session.commit()
    assert mass_email.deleted_at == clock.now()
    assert mass_email.status == S.CANCELED  # it stops sending
    assert kept_rows(session, mass_email.id) == (1, 1, 1)
    with pytest.raises(CampaignError, match="deleted"):
        copy_mass_email(session, mass_email, clock)


def test_deleting_a_campaign_soft_deletes_its_mass_emails(
    session: Session, clock: FixedClock
) -> None:
    setup = make_setup(session, clock)
    draft = add_mass_email(session, setup.campaign, template_id=setup.template.id, clock=clock)
    sent = setup.mass_email
    sent.status = S.COMPLETE  # fixture: sent
    add_sent_records(session, clock, sent)
    delete_campaign(session, setup.campaign, clock)
    session.commit()
    assert setup.campaign.deleted_at == clock.now()
    assert draft.deleted_at == sent.deleted_at == clock.now()
    assert (draft.status, sent.status) == (S.DRAFT, S.COMPLETE)
    assert kept_rows(session, sent.id) == (1, 1, 1)
    with pytest.raises(CampaignError, match="deleted"):
        add_mass_email(session, setup.campaign, template_id=setup.template.id, clock=clock)


# ----------------------------------------------------------------------- scheduling


def test_scheduling_needs_the_can_spam_confirmation(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    with pytest.raises(CampaignError) as refused:
        schedule(session, app, runtime, clock, setup.mass_email, confirmed=False)
    assert refused.value.field == "can_spam_confirmed"
    assert setup.mass_email.status == S.DRAFT


def test_scheduling_is_refused_while_the_preflight_finds_errors(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    setup.campaign.sender_profile_id = None
    setup.campaign.target_lists = []
    session.flush()
    with pytest.raises(CampaignError) as refused:
        schedule(session, app, runtime, clock, setup.mass_email)
    assert refused.value.field == "preflight"
    assert any("sender profile" in problem for problem in refused.value.problems)
    assert any("target list" in problem for problem in refused.value.problems)
    assert setup.mass_email.status == S.DRAFT
    assert setup.mass_email.subject is None  # no snapshot taken
    assert setup.mass_email.can_spam_confirmed_at is None


def test_scheduling_takes_the_snapshot_and_stores_the_tracked_links(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    start = clock.now() + timedelta(days=2)
    schedule(session, app, runtime, clock, setup.mass_email, start_at=start)
    session.commit()
    mass_email = setup.mass_email
    assert mass_email.status == S.PENDING
    assert mass_email.start_at == start
    assert mass_email.can_spam_confirmed_at == clock.now()
    assert mass_email.subject == "Spring sale for {{ FIRST_NAME }}"
    assert mass_email.body_html == BODY
    assert mass_email.header_logo_url == "https://example.com/logo.png"
    links = session.scalars(
        select(TrackedLink)
        .where(TrackedLink.mass_email_id == mass_email.id)
        .order_by(TrackedLink.link_id)
    ).all()
    assert [(link.link_id, link.url) for link in links] == [
        (0, "https://example.com/sale"),
        (1, "https://example.com/shop"),
    ]
    # Editing the template no longer changes what this mass email sends.
    save_template(
        session, template_input(body_html="<p>new</p>"), clock, template_id=setup.template.id
    )
    session.refresh(mass_email)
    assert mass_email.body_html == BODY


def test_scheduling_without_a_start_time_starts_now(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    schedule(session, app, runtime, clock, setup.mass_email)
    assert setup.mass_email.start_at == clock.now()
    with pytest.raises(CampaignError) as refused:
        schedule(session, app, runtime, clock, setup.mass_email)
    assert refused.value.field == "status"


def test_unscheduling_returns_to_draft_and_rescheduling_replaces_the_links(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    mass_email = setup.mass_email
    schedule(session, app, runtime, clock, mass_email)
    unschedule_mass_email(session, mass_email, clock)
    assert mass_email.status == S.DRAFT
    assert mass_email.can_spam_confirmed_at is None
    update_mass_email(
        session,
        mass_email,
        content=TemplateSource("One link", '<a href="https://example.com/only">x</a>'),
        clock=clock,
    )
    schedule(session, app, runtime, clock, mass_email)
    session.commit()
    urls = session.scalars(
        select(TrackedLink.url).where(TrackedLink.mass_email_id == mass_email.id)
    ).all()
    assert urls == ["https://example.com/only"]


def test_pause_resume_and_cancel(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    mass_email = setup.mass_email
    schedule(session, app, runtime, clock, mass_email)
    pause_mass_email(session, mass_email, clock)
    assert mass_email.status == S.PAUSED
    assert resume_mass_email(session, mass_email, clock) == S.PENDING
    with pytest.raises(CampaignError, match="only a paused"):
        resume_mass_email(session, mass_email, clock)
    cancel_mass_email(session, mass_email, clock)
    assert MassEmailStatus(mass_email.status) == S.CANCELED
    with pytest.raises(CampaignError) as refused:
        unschedule_mass_email(session, mass_email, clock)
    assert refused.value.field == "status"


def test_a_start_time_in_the_past_cannot_be_scheduled(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    with pytest.raises(CampaignError) as refused:
        schedule(
            session,
            app,
            runtime,
            clock,
            setup.mass_email,
            start_at=datetime(2020, 1, 1, tzinfo=UTC),
        )
    assert refused.value.field == "start_at"


# ----------------------------------------------------------------------- CLI


def run_cli(app: Flask, *args: str) -> Result:
    return CliRunner().invoke(build_cli(), list(args), obj=ScriptInfo(create_app=lambda: app))


def test_the_campaigns_commands(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    session.commit()
    mass_email_id = str(setup.mass_email.id)

    listed = run_cli(app, "campaigns", "list")
    assert listed.exit_code == 0, listed.output
    assert "Spring campaign" in listed.output and "draft" in listed.output

    checked = run_cli(app, "campaigns", "preflight", mass_email_id, "--no-spam-check")
    assert checked.exit_code == 0, checked.output
    assert "recipients: 2 recipients" in checked.output

    copied = run_cli(app, "campaigns", "copy", mass_email_id)
    assert copied.exit_code == 0, copied.output
    assert "COPY #1 Spring sale" in copied.output

    bad_time = run_cli(app, "campaigns", "schedule", mass_email_id, "--at", "soon")
    assert bad_time.exit_code != 0 and "not an ISO 8601 time" in bad_time.output
    refused = run_cli(app, "campaigns", "schedule", mass_email_id)
    assert refused.exit_code != 0
    assert "can_spam_confirmed" in refused.output

    scheduled = run_cli(
        app,
        "campaigns",
        "schedule",
        mass_email_id,
        "--confirm-can-spam",
        "--at",
        "2099-01-01T10:00",
    )
    assert scheduled.exit_code == 0, scheduled.output
    assert "Scheduled mass email" in scheduled.output
    session.expire_all()
    mass_email = session.get(MassEmail, setup.mass_email.id)
    assert mass_email is not None and mass_email.status == S.PENDING


def test_the_preflight_command_fails_on_errors(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    setup.campaign.sender_profile_id = None
    session.commit()
    result = run_cli(app, "campaigns", "preflight", str(setup.mass_email.id), "--no-spam-check")
    assert result.exit_code == 1
    assert "error    no_sender_profile" in result.output
    missing = run_cli(app, "campaigns", "preflight", "999")
    assert missing.exit_code != 0 and "no mass email with id 999" in missing.output


# ----------------------------------------------------------------------- tracking URLs

PROMO = "https://shop.example.com/promo?src=mail"
DOCS = "http://docs.example.com/start"


def stored_links(session: Session, mass_email: MassEmail) -> list[tuple[int, str, str | None]]:
    links = session.scalars(
        select(TrackedLink)
        .where(TrackedLink.mass_email_id == mass_email.id)
        .order_by(TrackedLink.link_id)
    ).all()
    return [(link.link_id, link.url, link.name) for link in links]


def test_tracking_urls_are_added_listed_and_removed(session: Session, clock: FixedClock) -> None:
    campaign = make_setup(session, clock).campaign
    promo = add_tracking_url(session, campaign, " promo ", f" {PROMO} ", clock)
    add_tracking_url(session, campaign, "Docs.v2-start_1", DOCS, clock)
    add_tracking_url(session, campaign, "PROMO", DOCS, clock)  # letter case counts
    assert (promo.name, promo.url, promo.created_at) == ("promo", PROMO, clock.now())
    session.commit()
    session.expire_all()
    assert [(t.name, t.url) for t in tracking_urls(campaign)] == [
        ("promo", PROMO),
        ("Docs.v2-start_1", DOCS),
        ("PROMO", DOCS),
    ]

    remove_tracking_url(session, campaign, "promo")
    session.commit()
    session.expire_all()
    assert [t.name for t in tracking_urls(campaign)] == ["Docs.v2-start_1", "PROMO"]
    with pytest.raises(CampaignError) as refused:
        remove_tracking_url(session, campaign, "promo")
    assert refused.value.field == "name"
    # The name is free again.
    add_tracking_url(session, campaign, "promo", PROMO, clock)


@pytest.mark.parametrize(
    ("name", "url", "field", "message"),
    [
        ("", PROMO, "name", "must not be empty"),
        ("n" * 101, PROMO, "name", "at most 100 characters"),
        ("spring sale", PROMO, "name", "only letters, digits"),
        ("it's", PROMO, "name", "only letters, digits"),
        ("promo}", PROMO, "name", "only letters, digits"),
        ("promo", "", "url", "must not be empty"),
        ("promo", "ftp://example.com/file", "url", "http:// or https://"),
        ("promo", "javascript:alert(1)", "url", "http:// or https://"),
        ("promo", "//example.com/promo", "url", "http:// or https://"),
        ("promo", "https://", "url", "http:// or https://"),
        ("promo", "https:///path", "url", "http:// or https://"),
        ("promo", "https://example.com/a b", "url", "spaces or control characters"),
        ("promo", "https://example.com/a\r\nSet-Cookie: x=1", "url", "spaces or control"),
        ("promo", "https://example.com/\x00", "url", "spaces or control characters"),
        ("promo", "https://example.com/\u202egnp.exe", "url", "spaces or control characters"),
        ("promo", "https://example.com/a\u00a0b", "url", "spaces or control characters"),
        ("promo", "https://[::1/", "url", "is not a valid URL"),
        ("promo", "https://example.com/" + "a" * 1981, "url", "at most 2000 characters"),
    ],
)
def test_a_tracking_url_is_refused_naming_the_field(
    session: Session, clock: FixedClock, name: str, url: str, field: str, message: str
) -> None:
    campaign = make_setup(session, clock).campaign
    with pytest.raises(CampaignError, match=message) as refused:
        add_tracking_url(session, campaign, name, url, clock)
    assert refused.value.field == field
    assert tracking_urls(campaign) == []


def test_tracking_url_limits_are_inclusive(session: Session, clock: FixedClock) -> None:
    campaign = make_setup(session, clock).campaign
    longest = "https://example.com/" + "a" * 1980
    added = add_tracking_url(session, campaign, "n" * 100, longest, clock)
    session.commit()
    assert (len(added.name), len(added.url)) == (100, 2000)


def test_tracking_url_names_are_unique_per_campaign(session: Session, clock: FixedClock) -> None:
    setup = make_setup(session, clock)
    add_tracking_url(session, setup.campaign, "promo", PROMO, clock)
    with pytest.raises(CampaignError, match="already has a tracking URL named 'promo'") as refused:
        add_tracking_url(session, setup.campaign, "promo", DOCS, clock)
    assert refused.value.field == "name"
    other = create_campaign(
        session,
        name="Other",
        type="email",
        target_list_ids=[],
        excluding_list_ids=[],
        sender_profile_id=None,
        clock=clock,
    )
    add_tracking_url(session, other, "promo", DOCS, clock)
    session.commit()
    assert [t.url for t in tracking_urls(other)] == [DOCS]


def test_a_deleted_campaigns_tracking_urls_are_not_edited(
    session: Session, clock: FixedClock
) -> None:
    setup = make_setup(session, clock)
    add_tracking_url(session, setup.campaign, "promo", PROMO, clock)
    delete_campaign(session, setup.campaign, clock)
    with pytest.raises(CampaignError) as refused:
        add_tracking_url(session, setup.campaign, "docs", DOCS, clock)
    assert refused.value.field == "campaign"
    with pytest.raises(CampaignError):
        remove_tracking_url(session, setup.campaign, "promo")


def test_scheduling_stores_the_tracking_urls_after_the_template_links(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    add_tracking_url(session, setup.campaign, "promo", PROMO, clock)
    add_tracking_url(session, setup.campaign, "docs", DOCS, clock)
    schedule(session, app, runtime, clock, setup.mass_email)
    session.commit()
    assert stored_links(session, setup.mass_email) == [
        (0, "https://example.com/sale", None),
        (1, "https://example.com/shop", None),
        (2, PROMO, "promo"),
        (3, DOCS, "docs"),
    ]

    # The snapshot keeps them whatever happens to the campaign's list.
    remove_tracking_url(session, setup.campaign, "promo")
    add_tracking_url(session, setup.campaign, "promo", "https://example.com/new-promo", clock)
    session.commit()
    assert stored_links(session, setup.mass_email)[2] == (2, PROMO, "promo")

    # Rescheduling takes a new snapshot: the current list, numbered after
    # the (new) template links, in creation order.
    unschedule_mass_email(session, setup.mass_email, clock)
    update_mass_email(
        session,
        setup.mass_email,
        content=TemplateSource("One link", '<a href="https://example.com/only">x</a>'),
        clock=clock,
    )
    schedule(session, app, runtime, clock, setup.mass_email)
    session.commit()
    assert stored_links(session, setup.mass_email) == [
        (0, "https://example.com/only", None),
        (1, DOCS, "docs"),
        (2, "https://example.com/new-promo", "promo"),
    ]


def test_scheduling_is_refused_for_an_unknown_tracking_url(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    save_template(
        session,
        template_input(body_html=BODY + '<a href="{trackingUrl:promo}">Promo</a>'),
        clock,
        template_id=setup.template.id,
    )
    with pytest.raises(CampaignError) as refused:
        schedule(session, app, runtime, clock, setup.mass_email)
    assert refused.value.field == "preflight"
    assert any("tracking_url('promo')" in problem for problem in refused.value.problems)

    add_tracking_url(session, setup.campaign, "promo", PROMO, clock)
    schedule(session, app, runtime, clock, setup.mass_email)
    assert setup.mass_email.status == S.PENDING


def test_the_tracking_url_commands(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    session.commit()
    campaign_id = str(setup.campaign.id)

    empty = run_cli(app, "campaigns", "tracking-url", "list", campaign_id)
    assert empty.exit_code == 0, empty.output
    assert "No tracking URLs." in empty.output

    added = run_cli(app, "campaigns", "tracking-url", "add", campaign_id, "promo", PROMO)
    assert added.exit_code == 0, added.output
    assert f"Added tracking URL 'promo': {PROMO}" in added.output

    refused = run_cli(app, "campaigns", "tracking-url", "add", campaign_id, "bad", "ftp://x")
    assert refused.exit_code != 0 and "url: must be an http://" in refused.output

    listed = run_cli(app, "campaigns", "tracking-url", "list", campaign_id)
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines() == [f"promo  {PROMO}"]

    removed = run_cli(app, "campaigns", "tracking-url", "remove", campaign_id, "promo")
    assert removed.exit_code == 0, removed.output
    gone = run_cli(app, "campaigns", "tracking-url", "remove", campaign_id, "promo")
    assert gone.exit_code != 0 and "no tracking URL named 'promo'" in gone.output

    missing = run_cli(app, "campaigns", "tracking-url", "list", "999")
    assert missing.exit_code != 0 and "no campaign with id 999" in missing.output
