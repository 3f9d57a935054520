"""The public blueprint through the Flask test client: click redirects,
pixel, opt-out pages and one-click, view online, headers."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from app import app_settings
from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.models import CampaignLogEntry, Contact, QueueItem, QueueItemStatus
from app.services.engagement import TEST_QUEUE_ITEM_ID
from app.services.public_links import PublicLinks
from app.services.runtime_settings import seed_runtime_settings, update_runtime_settings
from app.services.tokens import LinkSigner, to_base36
from app.web.public import TRANSPARENT_GIF
from tests.conftest import TEST_SECRET_KEY
from tests.service.test_engagement import LINKS, SentMessage, make_sent_message

signer = LinkSigner(TEST_SECRET_KEY)
links = PublicLinks("http://127.0.0.1:5000", signer, "bounces@bounce.example.com")
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def client(app: Flask, session: Session, clock: FixedClock) -> Iterator[FlaskClient]:
    seed_runtime_settings(session, app_settings(app), clock)
    session.commit()
    app.config[CLOCK_CONFIG_KEY] = clock
    yield app.test_client()


@pytest.fixture
def sent(client: FlaskClient, session: Session, clock: FixedClock) -> SentMessage:
    return make_sent_message(session, clock)


def path(url: str) -> str:
    return urlsplit(url).path


def reloaded_item(session: Session, sent: SentMessage) -> QueueItem:
    session.expire_all()
    item = session.get(QueueItem, sent.item.id)
    assert item is not None
    return item


def reloaded_contact(session: Session, sent: SentMessage) -> Contact:
    session.expire_all()
    contact = session.get(Contact, sent.contact.id)
    assert contact is not None
    return contact


def log_count(session: Session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(CampaignLogEntry)) or 0


def assert_public_headers(response: TestResponse) -> None:
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "noindex" in response.headers["X-Robots-Tag"]
    assert "Set-Cookie" not in response.headers


# ----------------------------------------------------------------------- clicks


def test_a_click_redirects_to_the_stored_url_and_is_recorded(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    response = client.get(path(links.click_url(sent.item.id, 1)))
    assert response.status_code == 302
    assert response.headers["Location"] == LINKS[1]
    assert_public_headers(response)
    item = reloaded_item(session, sent)
    assert (item.status, item.click_count) == (QueueItemStatus.CLICKED, 1)


def test_no_query_or_host_header_changes_where_a_click_goes(
    client: FlaskClient, sent: SentMessage
) -> None:
    click = path(links.click_url(sent.item.id, 0))
    for response in (
        client.get(click, query_string={"next": "https://evil.example/"}),
        client.get(click, query_string={"url": "//evil.example/"}),
        client.get(click, headers={"Host": "evil.example"}),
        client.get(click, headers={"X-Forwarded-Host": "evil.example"}),
        client.get(click, base_url="https://evil.example"),
    ):
        assert response.status_code == 302
        assert response.headers["Location"] == LINKS[0]


def test_tampered_forged_and_unknown_click_tokens_are_404(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    token = signer.click_token(sent.item.id, 0)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    other_item = to_base36(sent.item.id + 1) + token[token.index(".") :]
    bad_tokens = [
        tampered,
        other_item,
        LinkSigner("another-key").click_token(sent.item.id, 0),
        signer.click_token(sent.item.id, 7),  # no such link
        signer.click_token(sent.item.id + 1000, 0),  # no such item
        signer.item_token("open", sent.item.id),  # right item, wrong purpose
        "https:%2F%2Fevil.example",
        "x" * 5000,
    ]
    for bad in bad_tokens:
        response = client.get(f"/t/c/{bad}")
        assert response.status_code == 404, bad
        assert "Location" not in response.headers
    assert log_count(session) == 0


def test_a_stored_url_that_is_not_http_is_404(
    client: FlaskClient, session: Session, clock: FixedClock
) -> None:
    sent = make_sent_message(session, clock, links=("javascript:alert(document.cookie)",))
    response = client.get(path(links.click_url(sent.item.id, 0)))
    assert response.status_code == 404
    assert "Location" not in response.headers


def test_a_click_in_a_test_message_shows_a_page_and_records_nothing(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    response = client.get(path(links.click_url(TEST_QUEUE_ITEM_ID, 0)))
    assert response.status_code == 200
    assert "test message" in response.get_data(as_text=True)
    assert log_count(session) == 0


# ------------------------------------------------------------------------ pixel


def test_the_pixel_is_a_transparent_gif_that_records_an_open(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    response = client.get(path(links.open_pixel_url(sent.item.id)), headers={"User-Agent": "UA"})
    assert response.status_code == 200
    assert response.mimetype == "image/gif"
    assert response.data == TRANSPARENT_GIF and response.data.startswith(b"GIF89a")
    assert "no-store" in response.headers["Cache-Control"]
    assert response.headers["Pragma"] == "no-cache"
    assert_public_headers(response)
    item = reloaded_item(session, sent)
    assert (item.status, item.open_count) == (QueueItemStatus.OPENED, 1)


def test_a_bad_pixel_token_still_gets_the_gif_but_records_nothing(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    for token in (
        "garbage",
        signer.item_token("view", sent.item.id),
        signer.item_token("open", TEST_QUEUE_ITEM_ID),
        signer.item_token("open", sent.item.id + 1000),
    ):
        response = client.get(f"/t/o/{token}.gif")
        assert response.status_code == 200
        assert response.data == TRANSPARENT_GIF
    assert log_count(session) == 0
    assert reloaded_item(session, sent).open_count == 0


# --------------------------------------------------------------------- opt-out


def test_the_opt_out_page_shows_the_masked_address_and_changes_nothing(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    opt_out = path(links.opt_out_url(sent.item.id))
    response = client.get(opt_out)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Example Corp" in page
    assert "a***@example.com" in page
    assert "ann.smith" not in page
    assert f'action="{opt_out}"' in page and 'method="post"' in page
    assert_public_headers(response)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert not reloaded_contact(session, sent).opted_out
    assert log_count(session) == 0


def test_the_page_escapes_what_it_shows(
    client: FlaskClient, session: Session, clock: FixedClock, sent: SentMessage
) -> None:
    update_runtime_settings(session, {"company_name": "Tools <script>alert(1)</script>"}, clock)
    session.commit()
    page = client.get(path(links.opt_out_url(sent.item.id))).get_data(as_text=True)
    assert "<script>" not in page
    assert "Tools &lt;script&gt;" in page


def test_one_click_post_opts_out_at_once(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    response = client.post(path(links.opt_out_url(sent.item.id)), data=ONE_CLICK)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert_public_headers(response)
    contact = reloaded_contact(session, sent)
    assert (contact.opted_out, contact.opt_out_source) == (True, "one-click")
    assert reloaded_item(session, sent).status == QueueItemStatus.UNSUBSCRIBED


def test_one_click_post_works_as_multipart_too(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    response = client.post(
        path(links.opt_out_url(sent.item.id)), data=ONE_CLICK, content_type="multipart/form-data"
    )
    assert response.status_code == 200
    assert reloaded_contact(session, sent).opt_out_source == "one-click"


def test_the_form_post_opts_out_and_offers_to_opt_back_in(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    opt_out = path(links.opt_out_url(sent.item.id))
    response = client.post(opt_out, data={"confirm": "yes"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "You are unsubscribed" in page
    assert f'action="{opt_out}/opt-in"' in page
    assert_public_headers(response)
    contact = reloaded_contact(session, sent)
    assert (contact.opted_out, contact.opt_out_source) == (True, "link")

    response = client.post(f"{opt_out}/opt-in")
    assert response.status_code == 200
    assert "subscribed again" in response.get_data(as_text=True)
    assert_public_headers(response)
    assert not reloaded_contact(session, sent).opted_out


def test_get_never_opts_in_or_out(client: FlaskClient, session: Session, sent: SentMessage) -> None:
    opt_out = path(links.opt_out_url(sent.item.id))
    assert client.get(opt_out, query_string=ONE_CLICK).status_code == 200
    assert client.get(f"{opt_out}/opt-in").status_code == 405
    assert not reloaded_contact(session, sent).opted_out
    assert log_count(session) == 0


def test_bad_opt_out_tokens_are_404(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    for token in (
        "garbage",
        signer.item_token("view", sent.item.id),
        signer.item_token("opt_out", sent.item.id + 1000),
        LinkSigner("another-key").item_token("opt_out", sent.item.id),
    ):
        assert client.get(f"/u/{token}").status_code == 404
        assert client.post(f"/u/{token}", data=ONE_CLICK).status_code == 404
        assert client.post(f"/u/{token}/opt-in").status_code == 404
    assert not reloaded_contact(session, sent).opted_out


def test_an_oversized_post_is_refused(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    response = client.post(path(links.opt_out_url(sent.item.id)), data={"x": "y" * 10_000})
    assert response.status_code == 413
    assert not reloaded_contact(session, sent).opted_out


def test_opt_out_links_in_a_test_message_show_pages_but_change_nothing(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    opt_out = path(links.opt_out_url(TEST_QUEUE_ITEM_ID))
    for response in (
        client.get(opt_out),
        client.post(opt_out, data=ONE_CLICK),
        client.post(opt_out, data={"confirm": "yes"}),
        client.post(f"{opt_out}/opt-in"),
    ):
        assert response.status_code == 200
    assert "test message" in client.get(opt_out).get_data(as_text=True)
    assert log_count(session) == 0


# ------------------------------------------------------------------ view online


def test_view_online_renders_the_snapshot_for_the_recipient(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    response = client.get(path(links.view_online_url(sent.item.id)))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Hello Ann," in page
    assert links.click_url(sent.item.id, 0) in page  # the recipient's own tracked links
    assert LINKS[0] not in page
    assert links.opt_out_url(sent.item.id) in page
    assert "Example Corp" in page and "1 Example Street" in page
    assert response.headers["Content-Security-Policy"].startswith("sandbox")
    assert_public_headers(response)
    assert log_count(session) == 0  # viewing is not an open


def test_view_online_without_content_or_with_a_bad_token_is_404(
    client: FlaskClient, session: Session, sent: SentMessage
) -> None:
    sent.mass_email.subject = None  # no snapshot and no template
    session.commit()
    assert client.get(path(links.view_online_url(sent.item.id))).status_code == 404
    assert client.get(f"/v/{signer.item_token('open', sent.item.id)}").status_code == 404
    assert client.get("/v/nonsense").status_code == 404


def test_view_online_of_a_test_message_shows_a_page(client: FlaskClient) -> None:
    response = client.get(path(links.view_online_url(TEST_QUEUE_ITEM_ID)))
    assert response.status_code == 200
    assert "test message" in response.get_data(as_text=True)


def test_404s_of_public_routes_carry_the_headers_too(client: FlaskClient) -> None:
    response = client.get("/t/c/nonsense")
    assert response.status_code == 404
    assert_public_headers(response)
