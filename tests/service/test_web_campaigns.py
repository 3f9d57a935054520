"""The campaign pages through Flask's test client, on SQLite and PostgreSQL:
campaigns, sender profiles, mass emails, the pre-flight and the CAN-SPAM
confirmation before scheduling, Send Test against a real SMTP server, copy,
pause/resume/cancel, delete (links in sent mail keep working), retry
interrupted items, progress; errors shown clearly, hostile input escaped."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.models import (
    Campaign,
    Contact,
    MassEmail,
    MassEmailStatus,
    QueueItem,
    QueueItemStatus,
    Role,
    SenderProfile,
)
from app.services import queue_status
from app.services.campaigns import create_campaign
from app.services.public_links import PublicLinks
from app.services.queue_build import activate_due
from app.services.runtime_settings import update_runtime_settings
from app.services.tokens import LinkSigner
from tests.conftest import TEST_SECRET_KEY
from tests.service.test_queue_build import Scene, make_mass_email, make_scene, schedule
from tests.smtp_server import smtp_server
from tests.web_client import logged_in, post_form, ready, web

__all__ = ["ready", "web"]  # the fixtures

HOSTILE = "<script>alert(1)</script>"
M = MassEmailStatus


@pytest.fixture
def client(ready: Flask) -> FlaskClient:
    return logged_in(ready, "mark@example.com", Role.MARKETER)


@pytest.fixture
def scene(session: Session, clock: FixedClock) -> Scene:
    made = make_scene(session, clock)
    session.commit()
    return made


def shown(client: FlaskClient, url: str) -> str:
    """The page's text with entities decoded (flash messages quote names)."""
    return html.unescape(client.get(url).get_data(as_text=True))


def field_error(page: str, key: str) -> str:
    match = re.search(rf'<p class="field__error" id="{key}-error">(.*?)</p>', page, re.S)
    assert match, f"no error shown for {key}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))


def reloaded(session: Session, mass_email_id: int) -> MassEmail:
    session.expire_all()
    found = session.get(MassEmail, mass_email_id)
    assert found is not None
    return found


def campaign_form(scene: Scene, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "name": "April",
        "type": "newsletter",
        "target_list_ids": [str(scene.customers.id)],
        "excluding_list_ids": [str(scene.blocked.id)],
        "sender_profile_id": str(scene.profile.id),
    }
    values.update(changes)
    return values


# ------------------------------------------------------------------ access


def test_the_pages_need_a_log_in(ready: Flask) -> None:
    anonymous = ready.test_client()
    for url in ("/campaigns", "/campaigns/new", "/campaigns/senders", "/campaigns/mass-emails/1"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_both_roles_see_the_pages_and_the_menu(ready: Flask) -> None:
    for email, role in (("mark@example.com", Role.MARKETER), ("boss@example.com", Role.ADMIN)):
        page = logged_in(ready, email, role).get("/campaigns").get_data(as_text=True)
        assert "No campaigns yet." in page
        assert 'href="/campaigns" aria-current="page">Campaigns</a>' in page
        assert 'href="/templates">Templates</a>' in page


def test_posts_without_the_csrf_token_change_nothing(
    client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, scene, clock)
    session.commit()

    assert client.post("/campaigns/new", data=campaign_form(scene)).status_code == 400
    assert client.post(f"/campaigns/mass-emails/{mass_email.id}/cancel").status_code == 400
    assert reloaded(session, mass_email.id).status == M.DRAFT
    assert session.scalar(select(func.count()).select_from(Campaign)) == 1


# ------------------------------------------------------------------ campaigns


def test_a_campaign_is_created_shown_and_edited(
    client: FlaskClient, session: Session, scene: Scene
) -> None:
    form = client.get("/campaigns/new").get_data(as_text=True)
    assert 'name="target_list_ids"' in form and "Customers" in form

    response = post_form(client, "/campaigns/new", campaign_form(scene))

    assert response.status_code == 302
    campaign = session.scalars(select(Campaign)).one()
    page = shown(client, response.headers["Location"])
    assert "Campaign 'April' saved." in page
    assert "Customers" in page and "Blocked" in page and "News (Example News" in page
    assert "No mass emails yet" in page

    post_form(
        client,
        f"/campaigns/{campaign.id}/edit",
        campaign_form(scene, name="May", excluding_list_ids=[]),
    )
    session.expire_all()
    assert campaign.name == "May" and campaign.excluding_lists == []
    assert "May" in shown(client, "/campaigns")


def test_campaign_errors_are_shown_per_field_and_nothing_is_saved(
    client: FlaskClient, session: Session, scene: Scene
) -> None:
    cases = {
        "name": campaign_form(scene, name="  "),
        "target_list_ids": campaign_form(scene, target_list_ids=["999999"]),
        "sender_profile_id": campaign_form(scene, sender_profile_id="x"),
        "type": campaign_form(scene, type="fax"),
    }
    for field, form in cases.items():
        response = post_form(client, "/campaigns/new", form)
        page = response.get_data(as_text=True)
        assert response.status_code == 400, field
        assert field_error(page, field), field
        assert "The campaign was not saved" in page
    assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_a_campaign_is_copied_with_its_settings(
    client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    original = make_mass_email(session, scene, clock, name="April").campaign
    session.commit()

    response = post_form(client, f"/campaigns/{original.id}/copy")

    copy = session.scalars(select(Campaign).where(Campaign.id != original.id)).one()
    assert response.headers["Location"] == f"/campaigns/{copy.id}"
    assert copy.name == "Copy of April"
    assert [t.id for t in copy.target_lists] == [scene.customers.id]
    assert [t.id for t in copy.excluding_lists] == [scene.blocked.id]
    assert copy.sender_profile_id == scene.profile.id
    assert copy.mass_emails == []
    assert "its settings, not its mass emails" in shown(client, f"/campaigns/{copy.id}")


def test_sender_profiles_are_added_and_edited_with_errors_per_field(
    client: FlaskClient, session: Session
) -> None:
    assert "No sender profiles yet" in shown(client, "/campaigns/senders")
    bad = post_form(
        client,
        "/campaigns/senders",
        {"name": "Team", "from_name": "Team", "from_address": "not an address"},
    )
    assert bad.status_code == 400
    assert field_error(bad.get_data(as_text=True), "from_address")
    assert session.scalar(select(func.count()).select_from(SenderProfile)) == 0

    post_form(
        client,
        "/campaigns/senders",
        {"name": "Team", "from_name": "Team", "from_address": "team@example.com"},
    )
    profile = session.scalars(select(SenderProfile)).one()
    response = post_form(
        client,
        f"/campaigns/senders/{profile.id}",
        {
            "name": "Team",
            "from_name": "The Team",
            "from_address": "news@example.com",
            "reply_to_address": "help@example.com",
        },
    )
    assert response.status_code == 302
    session.expire_all()
    assert (profile.from_name, profile.from_address, profile.reply_to_address) == (
        "The Team",
        "news@example.com",
        "help@example.com",
    )
    assert "Sender profile 'Team' saved." in shown(client, "/campaigns/senders")


def test_a_sender_profile_in_use_is_not_deleted_and_the_page_names_the_campaigns(
    ready: Flask, client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = sending(ready, session, scene, clock)
    other = campaign_of(session, scene, clock, name=HOSTILE)
    session.commit()
    url = f"/campaigns/senders/{scene.profile.id}/delete"

    assert f'href="{url}"' in client.get(f"/campaigns/senders/{scene.profile.id}").get_data(
        as_text=True
    )
    page = client.get(url).get_data(as_text=True)
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert "It cannot be deleted yet" in text
    assert "2 campaign(s) use it" in text
    assert f'href="/campaigns/{mass_email.campaign_id}/edit">Spring campaign<' in page
    assert f'href="/campaigns/{other.id}/edit">{html.escape(HOSTILE)}<' in page
    assert f'action="{url}"' not in page  # no delete button

    response = post_form(client, url)  # a form from before a campaign took it
    assert response.headers["Location"] == url
    assert (
        f"The sender profile 'News' was not deleted: campaign(s) {HOSTILE!r}, "
        "'Spring campaign' use it: choose another sender profile for them first."
    ) in shown(client, url)
    session.expire_all()
    assert session.get(SenderProfile, scene.profile.id) is not None
    assert other.sender_profile_id == scene.profile.id


def test_a_sender_profile_is_deleted_after_its_confirmation_and_sent_mail_keeps_working(
    ready: Flask, client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = sending(ready, session, scene, clock)
    item = session.scalars(
        select(QueueItem).where(QueueItem.mass_email_id == mass_email.id)
    ).first()
    assert item is not None
    profile_id = scene.profile.id
    post_form(client, f"/campaigns/{mass_email.campaign_id}/delete")  # deleted ones do not count
    url = f"/campaigns/senders/{profile_id}/delete"

    confirm = shown(client, url)
    assert "Delete the sender profile “News”?" in confirm
    assert "keep working" in confirm
    assert f'action="{url}"' in confirm
    response = post_form(client, url)

    assert response.headers["Location"] == "/campaigns/senders"
    assert "Sender profile 'News' deleted." in shown(client, "/campaigns/senders")
    session.expire_all()
    assert session.get(SenderProfile, profile_id) is None
    assert session.get(Campaign, mass_email.campaign_id).sender_profile_id is None  # type: ignore[union-attr]
    assert client.get(url).status_code == 404
    assert post_form(client, url).status_code == 404

    links = PublicLinks("http://localhost", LinkSigner(TEST_SECRET_KEY), "")
    click = ready.test_client().get(urlsplit(links.click_url(item.id, 0)).path)
    assert click.status_code == 302
    assert click.headers["Location"] == "https://example.com/offer"
    online = ready.test_client().get(urlsplit(links.view_online_url(item.id)).path)
    assert online.status_code == 200
    assert "Hello" in online.get_data(as_text=True)


def test_both_roles_delete_sender_profiles_and_only_with_the_csrf_token(
    ready: Flask, client: FlaskClient, session: Session
) -> None:
    admin = logged_in(ready, "boss@example.com", Role.ADMIN)
    for user, name in ((client, "Team"), (admin, "Sales")):
        post_form(user, "/campaigns/senders", {"name": name, "from_address": f"{name}@example.com"})
        profile_id = session.scalars(
            select(SenderProfile.id).where(SenderProfile.name == name)
        ).one()
        url = f"/campaigns/senders/{profile_id}/delete"
        assert user.post(url).status_code == 400  # no CSRF token
        assert session.get(SenderProfile, profile_id) is not None
        assert post_form(user, url).headers["Location"] == "/campaigns/senders"
        session.expire_all()
        assert session.get(SenderProfile, profile_id) is None
    anonymous = ready.test_client()
    assert anonymous.get("/campaigns/senders/1/delete").status_code == 302


# ------------------------------------------------------------------ mass emails


def campaign_of(session: Session, scene: Scene, clock: FixedClock, **changes: object) -> Campaign:
    fields: dict[str, object] = {
        "name": "April",
        "type": "newsletter",
        "target_list_ids": [scene.customers.id],
        "excluding_list_ids": [scene.blocked.id],
        "sender_profile_id": scene.profile.id,
    }
    fields.update(changes)
    campaign = create_campaign(session, **fields, clock=clock)  # type: ignore[arg-type]
    session.commit()
    return campaign


def test_a_mass_email_is_added_then_scheduled_after_the_preflight_and_can_spam(
    client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    campaign = campaign_of(session, scene, clock)

    response = post_form(
        client,
        f"/campaigns/{campaign.id}/mass-emails",
        {
            "content": "template",
            "template_id": str(scene.template.id),
            "name": "",
            "start": "at",
            "start_at": "2026-03-03T10:30",
        },
    )

    mass_email = session.scalars(select(MassEmail)).one()
    assert response.headers["Location"] == f"/campaigns/mass-emails/{mass_email.id}/schedule"
    assert mass_email.name == "Spring sale for {{ FIRST_NAME }}"
    page = shown(client, response.headers["Location"])
    assert "added as a draft" in page
    assert "No errors: it can be scheduled." in page
    assert "Info:" in page and "recipients" in page
    assert 'value="2026-03-03T10:30"' in page  # the draft's start time, kept

    refused = post_form(
        client,
        f"/campaigns/mass-emails/{mass_email.id}/schedule",
        {"start": "at", "start_at": "2026-03-03T10:30"},
    )
    assert refused.status_code == 400
    assert "CAN-SPAM" in field_error(refused.get_data(as_text=True), "can_spam_confirmed")
    assert reloaded(session, mass_email.id).status == M.DRAFT

    done = post_form(
        client,
        f"/campaigns/mass-emails/{mass_email.id}/schedule",
        {"start": "at", "start_at": "2026-03-03T10:30", "can_spam_confirmed": "yes"},
    )

    assert done.headers["Location"] == f"/campaigns/mass-emails/{mass_email.id}"
    scheduled = reloaded(session, mass_email.id)
    assert scheduled.status == M.PENDING
    assert scheduled.start_at == clock.now().replace(day=3, hour=10, minute=30)
    assert scheduled.can_spam_confirmed_at == clock.now()
    page = shown(client, done.headers["Location"])
    assert "is scheduled to start at 2026-03-03 10:30:00 UTC" in page
    assert "Unschedule" in page and "Pause" in page


def test_a_start_time_in_the_past_is_refused(
    client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    campaign = campaign_of(session, scene, clock)
    url = f"/campaigns/{campaign.id}/mass-emails"
    base = {"content": "template", "template_id": str(scene.template.id), "name": "x"}

    past = post_form(client, url, {**base, "start": "at", "start_at": "2026-03-01T09:00"})
    garbled = post_form(client, url, {**base, "start": "at", "start_at": "next tuesday"})
    missing = post_form(client, url, {**base, "start": "later", "template_id": ""})

    assert past.status_code == garbled.status_code == missing.status_code == 400
    assert "is in the past" in field_error(past.get_data(as_text=True), "start_at")
    assert "expected a date and time" in field_error(garbled.get_data(as_text=True), "start_at")
    assert field_error(missing.get_data(as_text=True), "template_id") == "Error: choose a template"
    assert session.scalar(select(func.count()).select_from(MassEmail)) == 0

    mass_email = make_mass_email(session, scene, clock)
    session.commit()
    late = post_form(
        client,
        f"/campaigns/mass-emails/{mass_email.id}/schedule",
        {"start": "at", "start_at": "2026-03-02T08:00", "can_spam_confirmed": "yes"},
    )
    assert late.status_code == 400
    assert "is in the past" in field_error(late.get_data(as_text=True), "start_at")
    assert reloaded(session, mass_email.id).status == M.DRAFT


def test_preflight_errors_block_scheduling_and_are_shown(
    client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    campaign = campaign_of(session, scene, clock, target_list_ids=[], sender_profile_id=None)
    mass_email = make_mass_email(session, scene, clock)
    mass_email.campaign = campaign
    update_runtime_settings(session, {"postal_address": ""}, clock)
    session.commit()
    url = f"/campaigns/mass-emails/{mass_email.id}/schedule"

    page = shown(client, url)
    assert "error(s) must be fixed before this mass email can be scheduled" in page
    assert "the campaign has no target list: choose one" in page
    assert "sender profile" in page
    assert "postal address" in page.lower()

    response = post_form(client, url, {"start": "now", "can_spam_confirmed": "yes"})
    refused = html.unescape(response.get_data(as_text=True))

    assert response.status_code == 400
    assert "The pre-flight check found errors" in refused
    assert "the campaign has no target list: choose one" in refused
    assert reloaded(session, mass_email.id).status == M.DRAFT


def test_a_template_with_errors_is_reported_by_the_preflight(
    client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, scene, clock)
    # A template broken behind the editor's back (an import, an older version).
    scene.template.body_html = "<p>line one</p>\n{{ broken "
    session.commit()

    page = shown(client, f"/campaigns/mass-emails/{mass_email.id}/schedule")

    assert "Error:" in page and "body_html line 2" in page


def test_a_draft_is_edited_with_content_of_its_own(
    client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, scene, clock)
    session.commit()
    url = f"/campaigns/mass-emails/{mass_email.id}/edit"
    page = client.get(url).get_data(as_text=True)
    assert 'value="Spring sale for {{ FIRST_NAME }}"' in page  # from the template

    bad = post_form(
        client,
        url,
        {
            "name": "Own",
            "content": "own",
            "subject": "Hi",
            "body_html": "{% if %}",
            "start": "later",
        },
    )
    assert bad.status_code == 400
    assert field_error(bad.get_data(as_text=True), "body_html").startswith("Error: line 1:")
    assert reloaded(session, mass_email.id).subject is None

    post_form(
        client,
        url,
        {
            "name": "Own",
            "content": "own",
            "subject": "Hi {{ first_name }}",
            "body_html": "<p>Hi</p>",
            "start": "later",
        },
    )
    saved = reloaded(session, mass_email.id)
    assert (saved.name, saved.subject, saved.template_id) == ("Own", "Hi {{ first_name }}", None)


def test_send_test_says_when_no_relay_is_configured(
    client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, scene, clock)
    session.commit()

    response = post_form(
        client, f"/campaigns/mass-emails/{mass_email.id}/send-test", {"to": "me@example.com"}
    )

    page = shown(client, response.headers["Location"])
    assert "The test was not sent: no SMTP relay is configured: set SLUICE_SMTP_URL" in page


def test_send_test_goes_to_the_relay_and_shows_its_reply(
    ready: Flask, client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, scene, clock)
    session.commit()
    url = f"/campaigns/mass-emails/{mass_email.id}/send-test"
    with smtp_server() as relay:
        ready.config["SLUICE_SETTINGS"] = replace(
            app_settings(ready), smtp_url=f"smtp://{relay.host}:{relay.port}"
        )

        response = post_form(client, url, {"to": "me@example.com", "preview_contact": ""})
        page = shown(client, response.headers["Location"])
        bad = post_form(client, url, {"to": "not an address"})

        assert [m.recipients for m in relay.handler.messages] == [["me@example.com"]]
        data = relay.handler.messages[0].data
    assert b"Subject: [TEST] Spring sale for Ann" in data
    assert "Test sent to me@example.com. The relay answered: 250" in page
    assert "cannot send a test to 'not an address'" in shown(client, bad.headers["Location"])
    assert session.scalar(select(func.count()).select_from(QueueItem)) == 0  # nothing recorded


def test_the_mass_email_preview_is_sandboxed_and_for_the_chosen_contact(
    client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, scene, clock)
    scene.contacts["dee"].first_name = HOSTILE
    session.commit()
    url = f"/campaigns/mass-emails/{mass_email.id}/preview"

    first = client.get(url)
    chosen = client.get(url, query_string={"preview_contact": "dee@example.org"})
    unknown = client.get(url, query_string={"preview_contact": "who@example.org"})

    assert "sandbox" in first.headers["Content-Security-Policy"]
    assert "Hello Ann" in first.get_data(as_text=True)  # the first recipient
    assert HOSTILE not in chosen.get_data(as_text=True)
    assert "Hello &lt;script&gt;" in chosen.get_data(as_text=True)
    assert "no contact has the address" in html.unescape(unknown.get_data(as_text=True))
    page = client.get(f"/campaigns/mass-emails/{mass_email.id}").get_data(as_text=True)
    assert page.count("<iframe sandbox ") == 2


# ------------------------------------------------------------------ status changes


def sending(ready: Flask, session: Session, scene: Scene, clock: FixedClock) -> MassEmail:
    """A mass email in progress with its queue built."""
    mass_email = make_mass_email(session, scene, clock)
    scene.template.body_html = '<p>Hello</p><p><a href="https://example.com/offer">Offer</a></p>'
    schedule(ready, session, clock, mass_email)
    activate_due(session, clock)
    session.commit()
    return mass_email


def test_pause_resume_and_cancel(
    ready: Flask, client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = sending(ready, session, scene, clock)
    url = f"/campaigns/mass-emails/{mass_email.id}"

    post_form(client, f"{url}/pause")
    assert reloaded(session, mass_email.id).status == M.PAUSED
    assert "is paused: nothing more is sent" in shown(client, url)

    refused = post_form(client, f"{url}/pause")
    assert "Not paused: mass email status cannot change from paused to paused" in shown(
        client, refused.headers["Location"]
    )

    post_form(client, f"{url}/resume")
    assert reloaded(session, mass_email.id).status == M.IN_PROGRESS
    assert "resumed: it is sending again" in shown(client, url)

    post_form(client, f"{url}/cancel")
    assert reloaded(session, mass_email.id).status == M.CANCELED
    page = shown(client, url)
    assert "is canceled: nothing more will be sent" in page
    assert "Pause" not in page and "Resume" not in page


def test_unschedule_returns_a_draft(
    ready: Flask, client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, scene, clock)
    schedule(ready, session, clock, mass_email, start_in=timedelta(days=1))
    session.commit()

    post_form(client, f"/campaigns/mass-emails/{mass_email.id}/unschedule")

    draft = reloaded(session, mass_email.id)
    assert (draft.status, draft.can_spam_confirmed_at) == (M.DRAFT, None)


def test_progress_and_retry_of_interrupted_items(
    ready: Flask, client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = sending(ready, session, scene, clock)
    items = session.scalars(
        select(QueueItem)
        .where(QueueItem.mass_email_id == mass_email.id, QueueItem.status == QueueItemStatus.QUEUED)
        .order_by(QueueItem.id)
    ).all()
    queue_status.transition(items[0], QueueItemStatus.SENDING, clock)
    queue_status.transition(items[0], QueueItemStatus.INTERRUPTED, clock)
    session.commit()
    url = f"/campaigns/mass-emails/{mass_email.id}"

    page = shown(client, url)
    assert "Recipients by status" in page
    assert re.search(r"<th scope=\"row\">interrupted</th><td>1</td>", page)
    assert re.search(rf"<th scope=\"row\">queued</th><td>{len(items) - 1}</td>", page)
    assert "Estimated end:" in page
    assert "Retry 1 interrupted" in page

    post_form(client, f"{url}/retry-interrupted")

    session.expire_all()
    assert session.get(QueueItem, items[0].id).status == QueueItemStatus.QUEUED  # type: ignore[union-attr]
    assert "1 interrupted message(s) queued to be sent again." in shown(client, url)


def test_copy_makes_a_draft_to_edit(
    client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, scene, clock)
    session.commit()

    response = post_form(client, f"/campaigns/mass-emails/{mass_email.id}/copy")

    copy = session.scalars(select(MassEmail).where(MassEmail.id != mass_email.id)).one()
    assert response.headers["Location"] == f"/campaigns/mass-emails/{copy.id}/edit"
    assert copy.subject == "COPY #1 Spring sale for {{ FIRST_NAME }}"
    assert copy.status == M.DRAFT
    page = shown(client, response.headers["Location"])
    assert "change its subject and content before scheduling" in page
    assert 'value="COPY #1 Spring sale for {{ FIRST_NAME }}"' in page


def test_deleting_a_sending_mass_email_cancels_it_and_its_links_keep_working(
    ready: Flask, client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = sending(ready, session, scene, clock)
    item = session.scalars(
        select(QueueItem).where(
            QueueItem.mass_email_id == mass_email.id, QueueItem.status == QueueItemStatus.QUEUED
        )
    ).first()
    assert item is not None
    url = f"/campaigns/mass-emails/{mass_email.id}"

    confirm = shown(client, f"{url}/delete")
    assert "it is canceled first, and nothing more is sent" in confirm
    assert "keep working" in confirm
    response = post_form(client, f"{url}/delete")

    assert response.headers["Location"] == f"/campaigns/{mass_email.campaign_id}"
    deleted = reloaded(session, mass_email.id)
    assert deleted.status == M.CANCELED and deleted.deleted_at is not None
    assert client.get(url).status_code == 404
    assert "Links in the mail it sent keep working." in shown(client, response.headers["Location"])

    links = PublicLinks("http://localhost", LinkSigner(TEST_SECRET_KEY), "")
    click = ready.test_client().get(urlsplit(links.click_url(item.id, 0)).path)
    assert click.status_code == 302
    assert click.headers["Location"] == "https://example.com/offer"
    opt_out = ready.test_client().post(
        urlsplit(links.opt_out_url(item.id)).path, data={"List-Unsubscribe": "One-Click"}
    )
    assert opt_out.status_code == 200
    session.expire_all()
    assert session.get(Contact, item.contact_id).opted_out  # type: ignore[union-attr]


def test_deleting_a_campaign_hides_it_and_its_mass_emails(
    client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, scene, clock, name=HOSTILE)
    session.commit()
    campaign_id = mass_email.campaign_id

    assert "Its mass emails are deleted with it." in shown(
        client, f"/campaigns/{campaign_id}/delete"
    )
    response = post_form(client, f"/campaigns/{campaign_id}/delete")

    assert response.headers["Location"] == "/campaigns"
    page = client.get("/campaigns").get_data(as_text=True)
    assert "deleted. Links in the mail it sent keep working." in page
    assert HOSTILE not in page
    assert client.get(f"/campaigns/{campaign_id}").status_code == 404
    assert client.get(f"/campaigns/mass-emails/{mass_email.id}").status_code == 404
    assert reloaded(session, mass_email.id).deleted_at is not None


def test_hostile_names_are_shown_as_text(
    ready: Flask, client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, scene, clock, name=HOSTILE)
    scene.profile.name = HOSTILE
    scene.customers.name = HOSTILE
    scene.template.name = HOSTILE
    session.commit()
    campaign_id = mass_email.campaign_id
    urls = [
        "/campaigns",
        f"/campaigns/{campaign_id}",
        f"/campaigns/{campaign_id}/edit",
        f"/campaigns/{campaign_id}/delete",
        "/campaigns/senders",
        f"/campaigns/senders/{scene.profile.id}/delete",
        f"/campaigns/mass-emails/{mass_email.id}",
        f"/campaigns/mass-emails/{mass_email.id}/edit",
        f"/campaigns/mass-emails/{mass_email.id}/schedule",
        f"/campaigns/mass-emails/{mass_email.id}/delete",
    ]
    for url in urls:
        page = client.get(url).get_data(as_text=True)
        assert HOSTILE not in page, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, url


def test_the_campaign_list_pages_by_keyset(
    client: FlaskClient, session: Session, scene: Scene, clock: FixedClock
) -> None:
    for number in range(55):
        create_campaign(
            session,
            name=f"Campaign {number:02d}",
            type="email",
            target_list_ids=[],
            excluding_list_ids=[],
            sender_profile_id=None,
            clock=clock,
        )
    session.commit()

    first = client.get("/campaigns").get_data(as_text=True)
    assert "Campaign 54" in first and "Campaign 05" in first and "Campaign 04" not in first
    match = re.search(r'href="/campaigns\?after=(\d+)" rel="next"', first)
    assert match
    second = client.get(f"/campaigns?after={match.group(1)}").get_data(as_text=True)
    assert "Campaign 04" in second and "Campaign 00" in second and "Campaign 05" not in second
    assert 'rel="next"' not in second
    assert client.get("/campaigns?after=abc").status_code == 400
