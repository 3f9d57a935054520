"""VERP return paths (``bounce/verp.py``): they name the queue item, survive
case changes, and a forged or altered one is told apart from a stranger's
address and from the mailto opt-out address."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.services.tokens import LinkSigner
from bounce import verp
from bounce.verp import MAX_ITEM_ID, VerpCodec, VerpKind, VerpResult

SECRET = "verp-test-secret"
codec = VerpCodec(local="bounces", domain="bounce.example.com", secret=SECRET)


def test_the_address_names_the_item_and_decodes_back_to_it() -> None:
    address = codec.encode(12345)

    assert re.fullmatch(r"bounces\+12345\.[a-z2-7]{16}@bounce\.example\.com", address)
    assert codec.decode(address) == VerpResult(VerpKind.VALID, item_id=12345)


def test_the_module_functions_agree_with_the_codec() -> None:
    address = verp.encode(7, local="bounces", domain="bounce.example.com", secret=SECRET)

    assert address == codec.encode(7)
    assert verp.decode(address, local="bounces", domain="bounce.example.com", secret=SECRET) == (
        VerpResult(VerpKind.VALID, item_id=7)
    )


@given(st.integers(min_value=1, max_value=MAX_ITEM_ID))
def test_any_item_survives_upper_casing_and_angle_brackets(item_id: int) -> None:
    address = codec.encode(item_id)

    assert len(address.partition("@")[0]) <= 64  # RFC 5321 §4.5.3.1.1
    assert codec.decode(address.upper()).item_id == item_id
    assert codec.decode(f" <{address}> ").item_id == item_id


def test_another_items_mac_or_an_altered_mac_is_forged() -> None:
    mac_of_1, mac_of_2 = codec.mac(1), codec.mac(2)
    altered = mac_of_1[:-1] + ("a" if mac_of_1[-1] != "a" else "b")

    assert codec.decode(f"bounces+1.{mac_of_2}@bounce.example.com").kind is VerpKind.FORGED
    assert codec.decode(f"bounces+1.{altered}@bounce.example.com").kind is VerpKind.FORGED
    assert codec.decode(f"bounces+2.{mac_of_1}@bounce.example.com").kind is VerpKind.FORGED
    assert codec.decode("bounces+1.abc@bounce.example.com").kind is VerpKind.FORGED  # truncated
    assert codec.decode(f"bounces+01.{mac_of_1}@bounce.example.com").kind is VerpKind.FORGED
    # Item 0 is a test message: never a VERP address, whatever its MAC.
    assert codec.decode(f"bounces+0.{codec.mac(0)}@bounce.example.com").kind is VerpKind.FORGED


def test_a_different_secret_makes_a_forgery() -> None:
    other = VerpCodec(local="bounces", domain="bounce.example.com", secret="another secret")

    assert codec.decode(other.encode(5)).kind is VerpKind.FORGED


@pytest.mark.parametrize(
    "address",
    [
        "bounces@bounce.example.com",  # the plain bounce address
        "ann@example.org",
        "bounces+12.abc@elsewhere.example.com",  # another domain
        "other+12.abc@bounce.example.com",  # another local part
        "bounces+hello@bounce.example.com",
        "bounces+12@bounce.example.com",
        "bounces+12.@bounce.example.com",
        "bounces+12.abc-def@bounce.example.com",
        "",
        "@",
        "bounces+1.ä@bounce.example.com",
        "bounces+" + "1" * 400 + ".abc@bounce.example.com",  # oversized
        "x" * 100_000,
    ],
)
def test_anything_else_is_not_a_verp_address(address: str) -> None:
    assert codec.decode(address) == VerpResult(VerpKind.NOT_VERP)


@pytest.mark.parametrize("value", [None, 12, b"bounces+1.x@bounce.example.com", ["a"]])
def test_non_text_is_not_a_verp_address(value: object) -> None:
    assert codec.decode(value).kind is VerpKind.NOT_VERP


def test_the_mailto_opt_out_address_is_not_mistaken_for_verp() -> None:
    signer = LinkSigner(SECRET)
    token = signer.mailto_token(42)
    address = f"Bounces+unsubscribe-{token.upper()}@Bounce.Example.com"

    result = codec.decode(address)

    assert result.kind is VerpKind.UNSUBSCRIBE
    assert result.token is not None and signer.verify_mailto(result.token) == 42
    assert codec.decode("bounces+unsubscribe-@bounce.example.com").kind is VerpKind.NOT_VERP


@pytest.mark.parametrize("item_id", [0, -1, MAX_ITEM_ID + 1])
def test_only_real_queue_items_are_encoded(item_id: int) -> None:
    with pytest.raises(ValueError):
        codec.encode(item_id)


@pytest.mark.parametrize(
    ("local", "domain", "secret"),
    [
        ("", "bounce.example.com", SECRET),
        ("bounces", "", SECRET),
        ("bounces", "bounce.example.com", ""),
        ("b+x", "bounce.example.com", SECRET),
        ("x" * 40, "bounce.example.com", SECRET),  # no room left for item and MAC
        ("bönces", "bounce.example.com", SECRET),
    ],
)
def test_an_unusable_bounce_mailbox_is_refused_with_the_reason(
    local: str, domain: str, secret: str
) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        VerpCodec(local=local, domain=domain, secret=secret)
