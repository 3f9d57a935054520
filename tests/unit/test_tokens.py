"""Link tokens and public URLs: round trips, tampering, wrong purposes,
garbage input (never an exception)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.services.public_links import PublicLinks
from app.services.tokens import MAX_ID, LinkSigner, to_base36

SECRET = "unit-test-secret"
signer = LinkSigner(SECRET)
IDS = [0, 1, 35, 36, 1295, 123_456_789, MAX_ID]
TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_."


@pytest.mark.parametrize("item_id", IDS)
@pytest.mark.parametrize("link_id", [0, 1, 9, 36, 4000])
def test_click_token_round_trip(item_id: int, link_id: int) -> None:
    token = signer.click_token(item_id, link_id)
    assert signer.verify_click(token) == (item_id, link_id)
    assert token.isascii() and len(token) <= 64


@pytest.mark.parametrize("item_id", IDS)
@pytest.mark.parametrize("purpose", ["open", "opt_out", "view"])
def test_item_token_round_trip(item_id: int, purpose: str) -> None:
    token = signer.item_token(purpose, item_id)  # type: ignore[arg-type]
    assert signer.verify_item(purpose, token) == item_id  # type: ignore[arg-type]


def test_token_shape_is_base36_ids_and_a_22_character_mac() -> None:
    click = signer.click_token(46655, 7)
    item, link, mac = click.split(".")
    assert (item, link) == ("zzz", "7")
    assert len(mac) == 22 and set(mac) <= set(TOKEN_ALPHABET)
    assert signer.item_token("open", 36).split(".")[0] == "10"


def _one_character_changes(token: str) -> list[str]:
    return [
        token[:position] + replacement + token[position + 1 :]
        for position in range(len(token))
        for replacement in TOKEN_ALPHABET
        if replacement != token[position]
    ]


def test_changing_any_character_of_a_click_token_invalidates_it() -> None:
    token = signer.click_token(123_456, 3)
    for changed in _one_character_changes(token):
        assert signer.verify_click(changed) is None, changed


def test_changing_any_character_of_an_item_token_invalidates_it() -> None:
    token = signer.item_token("opt_out", 987_654)
    for changed in _one_character_changes(token):
        assert signer.verify_item("opt_out", changed) is None, changed


def test_another_items_id_with_a_valid_mac_is_refused() -> None:
    _, link, mac = signer.click_token(41, 2).split(".")
    assert signer.verify_click(f"{to_base36(42)}.{link}.{mac}") is None
    _, mac = signer.item_token("opt_out", 41).split(".")
    assert signer.verify_item("opt_out", f"{to_base36(42)}.{mac}") is None


def test_another_links_id_with_a_valid_mac_is_refused() -> None:
    item, _, mac = signer.click_token(41, 2).split(".")
    assert signer.verify_click(f"{item}.3.{mac}") is None


def test_a_token_made_for_one_purpose_is_refused_for_every_other() -> None:
    purposes = ("open", "opt_out", "view")
    for made_for in purposes:
        token = signer.item_token(made_for, 5)  # type: ignore[arg-type]
        for other in purposes:
            expected = 5 if other == made_for else None
            assert signer.verify_item(other, token) == expected  # type: ignore[arg-type]
        assert signer.verify_click(token) is None
        assert signer.verify_mailto(token) is None
    click = signer.click_token(5, 0)
    assert all(signer.verify_item(p, click) is None for p in purposes)  # type: ignore[arg-type]
    assert signer.verify_item("click", signer.click_token(5, 0)) is None  # type: ignore[arg-type]


def test_a_token_signed_with_another_secret_key_is_refused() -> None:
    other = LinkSigner("another-secret")
    assert signer.verify_click(other.click_token(1, 1)) is None
    assert signer.verify_item("view", other.item_token("view", 1)) is None
    assert signer.verify_mailto(other.mailto_token(1)) is None


def test_non_canonical_ids_are_refused() -> None:
    item, link, mac = signer.click_token(46655, 1).split(".")
    assert item == "zzz"
    assert signer.verify_click(f"0{item}.{link}.{mac}") is None
    assert signer.verify_click(f"{item.upper()}.{link}.{mac}") is None


def test_ids_beyond_a_database_integer_are_refused_even_when_signed() -> None:
    too_big = to_base36(MAX_ID + 1)
    forged_item = f"{too_big}.{signer._mac('open', too_big)}"
    assert signer.verify_item("open", forged_item) is None
    body = f"{too_big}.0"
    assert signer.verify_click(f"{body}.{signer._mac('click', body)}") is None


@pytest.mark.parametrize("bad_id", [-1, MAX_ID + 1])
def test_signing_an_out_of_range_id_raises(bad_id: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        signer.click_token(bad_id, 0)
    with pytest.raises(ValueError, match="out of range"):
        signer.item_token("open", bad_id)


def test_an_unknown_purpose_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="purpose"):
        signer.item_token("click", 1)  # type: ignore[arg-type]


GARBAGE = [
    "",
    ".",
    "..",
    "...",
    "5",
    "5.",
    ".abc",
    "-5." + "A" * 22,
    "-5.1." + "A" * 22,
    "5.1." + "A" * 21,
    "5.1." + "A" * 23,
    "5.1." + "A" * 22 + "=",
    "5.1." + "A" * 22 + "\n",
    " 5.1." + "A" * 22,
    "\uff15.1." + "A" * 22,  # a full-width digit five
    "5.1." + "Ä" * 22,
    "5.1.1." + "A" * 22,
    "a" * 10_000,
    "." * 10_000,
    "\x00" * 64,
    "5.1.%41%41",
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_is_none_never_an_exception(garbage: str) -> None:
    assert signer.verify_click(garbage) is None
    for purpose in ("open", "opt_out", "view"):
        assert signer.verify_item(purpose, garbage) is None
    assert signer.verify_mailto(garbage) is None


@given(st.text(max_size=200))
def test_random_text_is_never_accepted(text: str) -> None:
    assert signer.verify_click(text) is None
    assert signer.verify_item("opt_out", text) is None
    assert signer.verify_mailto(text) is None


@given(st.text(alphabet=TOKEN_ALPHABET, min_size=20, max_size=40))
def test_random_token_shaped_text_is_never_accepted(text: str) -> None:
    assert signer.verify_click(text) is None
    assert signer.verify_item("view", text) is None


@given(st.integers(0, MAX_ID), st.integers(0, MAX_ID))
def test_any_ids_round_trip(item_id: int, link_id: int) -> None:
    assert signer.verify_click(signer.click_token(item_id, link_id)) == (item_id, link_id)
    assert signer.verify_mailto(signer.mailto_token(item_id)) == item_id


def test_mailto_token_survives_a_change_of_case() -> None:
    token = signer.mailto_token(123_456)
    assert token == token.lower()
    assert signer.verify_mailto(token.upper()) == 123_456
    assert signer.verify_mailto(token.title()) == 123_456


def test_changing_any_character_of_a_mailto_token_invalidates_it() -> None:
    token = signer.mailto_token(77)
    alphabet = string.ascii_lowercase + string.digits + "."
    for position in range(len(token)):
        for replacement in alphabet:
            if replacement != token[position]:
                changed = token[:position] + replacement + token[position + 1 :]
                assert signer.verify_mailto(changed) is None, changed


def test_a_secret_key_is_required() -> None:
    with pytest.raises(ValueError, match="secret key"):
        LinkSigner("")


# ---------------------------------------------------------------- public links

links = PublicLinks("https://mail.example.com/", signer, "bounces@bounce.example.com")


def test_public_urls_carry_the_tokens_on_the_site_url() -> None:
    assert links.click_url(12, 3) == f"https://mail.example.com/t/c/{signer.click_token(12, 3)}"
    assert links.open_pixel_url(12) == (
        f"https://mail.example.com/t/o/{signer.item_token('open', 12)}.gif"
    )
    assert links.opt_out_url(12) == f"https://mail.example.com/u/{signer.item_token('opt_out', 12)}"
    assert links.view_online_url(12) == (
        f"https://mail.example.com/v/{signer.item_token('view', 12)}"
    )


def test_unsubscribe_mailto_goes_to_the_bounce_domain() -> None:
    mailto = links.unsubscribe_mailto(12)
    token = signer.mailto_token(12)
    assert mailto == (f"mailto:bounces+unsubscribe-{token}@bounce.example.com?subject=unsubscribe")
    local_part = mailto.removeprefix("mailto:").partition("@")[0]
    assert len(local_part) <= 64  # RFC 5321 §4.5.3.1.1


def test_no_mailto_without_a_bounce_address() -> None:
    assert PublicLinks("https://mail.example.com", signer, "").unsubscribe_mailto(1) == ""
