"""The results pages and the dashboard's live figures through Flask's test
client, on SQLite and PostgreSQL: what each page shows of a mass email
really sent and engaged with (``tests.service.test_results``), the
sandboxed copy, the chart and the CSV's headers, "make a target list" with
good, bad, hostile and forged input, 404s and 400s, and escaping."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.models import Contact, MassEmail, Role, TargetList
from app.services.campaigns import add_mass_email
from app.services.messages import public_links
from app.services.runtime_settings import get_runtime_settings
from tests.conftest import TEST_SECRET_KEY
from tests.service.test_results import Sent, send_and_engage
from tests.service.test_web_admin import settings_form
from tests.smtp_server import RunningServer, smtp_server
from tests.web_client import logged_in, post_form, web

__all__ = ["web"]  # the fixture

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def sent(app: Flask, session: Session, clock: FixedClock, server: RunningServer) -> Sent:
    return send_and_engage(app, session, clock, server)


@pytest.fixture
def client(web: Flask, sent: Sent, clock: FixedClock) -> FlaskClient:
    """A marketer's client on the database ``sent`` filled."""
    web.config[CLOCK_CONFIG_KEY] = clock
    return logged_in(web, "mark@example.com", Role.MARKETER)


def text_of(page: str) -> str:
    """The page's text, tags removed and whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_the_results_pages_need_a_log_in(web: Flask, sent: Sent) -> None:
    anonymous = web.test_client()
    for path in (
        "/results",
        f"/results/{sent.mass_email.id}",
        f"/results/{sent.mass_email.id}/chart.svg",
        f"/results/{sent.mass_email.id}/recipients",
        f"/results/{sent.mass_email.id}/log.csv",
        f"/results/{sent.mass_email.id}/recipients/{sent.items['ann'].id}/message",
        "/dashboard/live",
    ):
        response = anonymous.get(path)
        assert response.status_code == 302, path
        assert "/login" in response.headers["Location"]


def test_the_index_lists_mass_emails_with_results(client: FlaskClient, sent: Sent) -> None:
    page = client.get("/results").get_data(as_text=True)

    assert f'href="/results/{sent.mass_email.id}"' in page
    assert "Spring results" in page
    assert '<a href="/results" aria-current="page">Results</a>' in page  # the menu


def test_the_index_without_results_says_what_to_do(web: Flask, session: Session) -> None:
    session.commit()
    page = logged_in(web, "mark@example.com", Role.MARKETER).get("/results").get_data(as_text=True)

    assert "No mass email has results yet." in page
    assert "Schedule a campaign's mass email" in page


def test_the_summary_shows_counts_rates_and_the_chart(client: FlaskClient, sent: Sent) -> None:
    page = client.get(f"/results/{sent.mass_email.id}").get_data(as_text=True)
    text = text_of(page)

    assert "Results: Spring results" in text
    assert "Bounced (hard) 1 12.5 %" in text
    assert "Bounced (soft) 1 12.5 %" in text
    assert "Clicked 2 25.0 %" in text
    assert "Spam report 1 12.5 %" in text
    assert "Opened (unique) 3 50.0 % of delivered" in text
    assert "Delivered 6 75.0 % of sent" in text
    assert f'<img src="/results/{sent.mass_email.id}/chart.svg"' in page
    assert 'alt="Bar chart: 4 opens and 2 clicks from 2026-03-02 09:10:00 UTC' in page
    assert f'href="/results/{sent.mass_email.id}/recipients?status=bounced_hard"' in page
    assert f'href="/results/{sent.mass_email.id}/log.csv"' in page


def test_the_chart_is_an_svg_without_script(client: FlaskClient, sent: Sent) -> None:
    response = client.get(f"/results/{sent.mass_email.id}/chart.svg")

    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert b"<script" not in response.data
    assert b"<svg" in response.data
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'")
    assert "script-src" not in policy  # falls back to default-src 'none'
    narrow = client.get(f"/results/{sent.mass_email.id}/chart.svg?size=narrow")
    assert b'viewBox="0 0 360 320"' in narrow.data
    assert client.get(f"/results/{sent.mass_email.id}/chart.svg?size=huge").status_code == 400


def test_the_recipient_table_filters_and_pages(client: FlaskClient, sent: Sent) -> None:
    base = f"/results/{sent.mass_email.id}/recipients"

    clicked = text_of(client.get(f"{base}?status=clicked").get_data(as_text=True))
    hard = client.get(f"{base}?status=bounced_hard").get_data(as_text=True)
    everyone = client.get(base).get_data(as_text=True)

    assert "bob@example.org" in clicked and "gus@example.org" in clicked
    assert "ann@example.org" not in clicked
    assert "Showing: clicked, 2 on this page" in clicked
    assert "cy@example.org" in hard and "dee@example.org" not in hard
    assert everyone.count('<th scope="row"><a href="/results/') == 8
    assert "Next page" not in everyone  # eight fit on one page
    after_last = client.get(f"{base}?after={max(i.id for i in sent.items.values())}")
    assert "There are no more recipients here." in after_last.get_data(as_text=True)
    nobody = client.get(f"{base}?status=queued").get_data(as_text=True)
    assert "No recipient is queued." in nobody


@pytest.mark.parametrize(
    "query", ["status=nope", f"status={HOSTILE}", "after=abc", "before=-1", "after=" + "9" * 30]
)
def test_a_malformed_filter_or_keyset_is_a_400(client: FlaskClient, sent: Sent, query: str) -> None:
    response = client.get(f"/results/{sent.mass_email.id}/recipients?{query}")

    assert response.status_code == 400
    assert HOSTILE not in response.get_data(as_text=True)


def test_unknown_deleted_and_draft_mass_emails_are_404(
    client: FlaskClient, sent: Sent, session: Session
) -> None:
    draft = add_mass_email(
        session,
        sent.mass_email.campaign,
        template_id=sent.world.template.id,
        name="Draft",
        clock=sent.world.clock,
    )
    session.commit()
    other = sent.world.start("Other", ["zed@example.org"])
    zed = sent.world.item("zed@example.org")

    for path in (
        "/results/999999",
        f"/results/{draft.id}",
        f"/results/{draft.id}/recipients",
        f"/results/{draft.id}/chart.svg",
        f"/results/{draft.id}/log.csv",
        f"/results/{sent.mass_email.id}/recipients/{zed.id}",  # another mass email's
        f"/results/{sent.mass_email.id}/recipients/{zed.id}/message",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
    assert client.get(f"/results/{other.id}/recipients/{zed.id}").status_code == 200
    response = post_form(client, f"/results/{draft.id}/target-list", {"name": "X"})
    assert response.status_code == 404


def test_a_recipients_page_shows_events_and_frames_the_copy(
    client: FlaskClient, sent: Sent
) -> None:
    cy = sent.items["cy"]
    page = client.get(f"/results/{sent.mass_email.id}/recipients/{cy.id}").get_data(as_text=True)
    text = text_of(page)

    assert "Recipient: cy@example.org" in text
    assert "Bounced (hard)" in text
    assert "bounced hard" in text and "status: 5.1.1" in text
    copy_url = f"/results/{sent.mass_email.id}/recipients/{cy.id}/message"
    assert f'<iframe class="mail-frame" sandbox src="{copy_url}"' in page


def test_the_copy_is_served_sandboxed_and_framed_only_by_us(
    client: FlaskClient, sent: Sent
) -> None:
    ann = sent.items["ann"]
    response = client.get(f"/results/{sent.mass_email.id}/recipients/{ann.id}/message")

    assert response.status_code == 200
    assert "Hello Ann" in response.get_data(as_text=True)
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox;")
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'self'" in policy
    assert "X-Frame-Options" not in response.headers  # our own page frames it


def test_the_copy_as_sent_and_view_online_keep_the_footer_after_the_admin_changes_it(
    web: Flask, client: FlaskClient, sent: Sent
) -> None:
    session = sent.session
    session.commit()
    ann = sent.items["ann"]
    copy_url = f"/results/{sent.mass_email.id}/recipients/{ann.id}/message"
    runtime = get_runtime_settings(session)
    view_url = urlsplit(
        public_links(runtime, app_settings(web), TEST_SECRET_KEY).view_online_url(ann.id)
    ).path
    admin = logged_in(web, "boss@example.com", Role.ADMIN)
    settings_page = text_of(admin.get("/admin/settings").get_data(as_text=True))
    assert "Mass emails already scheduled or sent keep the value they were scheduled with" in (
        settings_page
    )

    form = settings_form(runtime, company_name="Renamed Holdings", postal_address="9 New Road")
    assert post_form(admin, "/admin/settings", form).status_code == 302

    copy = text_of(client.get(copy_url).get_data(as_text=True))
    online = text_of(web.test_client().get(view_url).get_data(as_text=True))
    for page in (copy, online):
        assert "Hello Ann" in page
        assert "Example Corp" in page and "1 Example Street, Springfield" in page
        assert "Renamed Holdings" not in page and "9 New Road" not in page
    # A mass email scheduled after the change is sent with the new footer.
    session.commit()
    sent.world.start("Summer", ["zed@example.org"])
    sent.world.tick()
    zed = sent.world.item("zed@example.org")
    new_copy = client.get(f"/results/{zed.mass_email_id}/recipients/{zed.id}/message")
    new_text = text_of(new_copy.get_data(as_text=True))
    assert "Renamed Holdings" in new_text and "9 New Road" in new_text
    assert "1 Example Street" not in new_text


def test_the_campaign_log_downloads_as_csv(client: FlaskClient, sent: Sent) -> None:
    response = client.get(f"/results/{sent.mass_email.id}/log.csv")

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="mass-email-{sent.mass_email.id}-campaign-log.csv"'
    )
    assert response.is_streamed
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][0] == "occurred_at"
    assert {row[1] for row in rows[1:]} >= {"sent", "opened", "clicked", "bounced_hard"}
    assert any(cell.startswith("'=HYPERLINK") for row in rows for cell in row)


def test_make_a_target_list_from_everyone_who_clicked(
    client: FlaskClient, sent: Sent, session: Session
) -> None:
    response = post_form(
        client,
        f"/results/{sent.mass_email.id}/target-list",
        {"status": "ever_clicked", "name": "Clicked spring", "description": "for the follow-up"},
    )

    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Target list “Clicked spring” created with 2 contact(s) (everyone who clicked)." in page
    session.expire_all()
    created = session.scalar(select(TargetList).where(TargetList.name == "Clicked spring"))
    assert created is not None and created.description == "for the follow-up"


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"status": "ever_clicked", "name": "   "}, "name", "must not be empty"),
        ({"status": "ever_clicked", "name": "x" * 201}, "name", "at most 200 characters"),
        ({"status": "ever_clicked", "name": "a\x00b"}, "name", "contains a NUL character"),
        ({"status": "nope", "name": "Fine"}, "status", "choose one of the listed recipients"),
        (
            {"status": "sent", "name": "Fine", "description": "d" * 2001},
            "description",
            "at most 2000 characters",
        ),
    ],
)
def test_bad_target_list_input_is_shown_per_field_and_creates_nothing(
    client: FlaskClient,
    sent: Sent,
    session: Session,
    form: dict[str, str],
    field: str,
    message: str,
) -> None:
    before = session.scalar(select(func.count()).select_from(TargetList))

    response = post_form(client, f"/results/{sent.mass_email.id}/target-list", form)
    page = response.get_data(as_text=True)

    assert response.status_code == 400
    match = re.search(rf'<p class="field__error" id="{field}-error">(.*?)</p>', page, re.S)
    assert match and message in text_of(match.group(1))
    assert "No target list was created" in page
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(TargetList)) == before


def test_a_taken_name_is_refused(client: FlaskClient, sent: Sent) -> None:
    url = f"/results/{sent.mass_email.id}/target-list"
    assert post_form(client, url, {"status": "sent", "name": "Once"}).status_code == 303

    again = post_form(client, url, {"status": "sent", "name": "Once"})

    assert again.status_code == 400
    assert "a target list named &#39;Once&#39; already exists" in again.get_data(as_text=True)


def test_a_post_without_the_csrf_token_is_refused(
    client: FlaskClient, sent: Sent, session: Session
) -> None:
    response = client.post(
        f"/results/{sent.mass_email.id}/target-list", data={"status": "sent", "name": "Forged"}
    )

    assert response.status_code == 400
    session.expire_all()
    assert session.scalar(select(TargetList).where(TargetList.name == "Forged")) is None


def test_hostile_names_are_escaped_on_every_results_page(
    client: FlaskClient, sent: Sent, session: Session
) -> None:
    mass_email = session.get(MassEmail, sent.mass_email.id)
    assert mass_email is not None
    mass_email.name = HOSTILE
    mass_email.campaign.name = HOSTILE
    contact = session.get(Contact, sent.items["ann"].contact_id)
    assert contact is not None
    contact.first_name = HOSTILE
    session.commit()
    ann = sent.items["ann"]
    made = post_form(
        client, f"/results/{mass_email.id}/target-list", {"status": "sent", "name": HOSTILE}
    )
    assert made.status_code == 303

    for path in (
        "/results",
        f"/results/{mass_email.id}",
        f"/results/{mass_email.id}/recipients",
        f"/results/{mass_email.id}/recipients/{ann.id}",
        "/",
    ):
        page = client.get(path).get_data(as_text=True)
        assert HOSTILE not in page, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/results").get_data(as_text=True)
    svg = client.get(f"/results/{mass_email.id}/chart.svg").data
    assert HOSTILE.encode() not in svg


def test_the_dashboard_shows_recent_results_and_live_figures(
    client: FlaskClient, sent: Sent
) -> None:
    page = client.get("/").get_data(as_text=True)
    text = text_of(page)

    assert "Recent results" in text
    assert "Spring results" in text and "50.0 % (3)" in text  # opened, of delivered
    assert 'src="/static/dashboard.js"' in page
    assert 'data-live-url="/dashboard/live"' in page
    live = client.get("/dashboard/live")
    assert live.mimetype == "application/json"
    figures = json.loads(live.data)
    assert figures["ready"] is True
    assert figures["quota"] == {"used": 0, "max": 10_000, "frees_at": None}  # sent at 9:00
    assert figures["sending"] == []
    assert figures["as_of"] == "2026-03-02 11:05:00 UTC"


def test_the_live_figures_follow_a_mass_email_being_sent(client: FlaskClient, sent: Sent) -> None:
    sending = sent.world.start("Summer", ["one@example.org", "two@example.org"])

    figures = json.loads(client.get("/dashboard/live").data)

    [progress] = figures["sending"]
    assert progress == {
        "id": sending.id,
        "status": "in progress",
        "done": 0,
        "total": 2,
        "eta": progress["eta"],
    }
    assert progress["eta"].startswith("2026-03-02 11:05:")
    page = client.get("/").get_data(as_text=True)
    assert f'<tr data-mass-email-id="{sending.id}">' in page


def test_the_results_pages_have_no_inline_script_or_style(client: FlaskClient, sent: Sent) -> None:
    base = f"/results/{sent.mass_email.id}"
    for path in (
        "/results",
        base,
        f"{base}/recipients",
        f"{base}/recipients/{sent.items['gus'].id}",
        "/",
    ):
        page = client.get(path).get_data(as_text=True)
        scripts = re.findall(r"<script[^>]*>", page)
        assert all(re.fullmatch(r'<script src="/static/[a-z_]+\.js" defer>', s) for s in scripts)
        assert " style=" not in page and "<style" not in page, path
        assert not re.search(r"<[^>]+\son[a-z]+=", page), path
