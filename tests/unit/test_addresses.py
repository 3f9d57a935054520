"""Address hygiene: normalisation, syntax errors, typo suggestions, the
own-address warning, and hostile input."""

from __future__ import annotations

import pytest

from app.services.addresses import InvalidAddress, check_address, normalise_address


@pytest.mark.parametrize(
    ("raw", "address", "key"),
    [
        ("  Ann.Lee@Example.COM \n", "Ann.Lee@example.com", "ann.lee@example.com"),
        ("\tBOB@MAIL.EXAMPLE.ORG", "BOB@mail.example.org", "bob@mail.example.org"),
        ("carol@example.net", "carol@example.net", "carol@example.net"),
    ],
)
def test_normalisation_trims_lowers_the_domain_and_keeps_the_local_part(
    raw: str, address: str, key: str
) -> None:
    assert normalise_address(raw) == (address, key)


def test_idn_punycode_and_unicode_give_the_same_key() -> None:
    unicode_form = normalise_address("user@bücher.example.com")
    punycode_form = normalise_address("user@xn--bcher-kva.example.com")
    upper_form = normalise_address("User@BÜCHER.example.com")
    assert unicode_form[1] == punycode_form[1] == upper_form[1]
    assert upper_form[0].startswith("User@")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "plainaddress",
        "@example.com",
        "ann@",
        "ann@@example.com",
        "ann@localhost",
        "ann..lee@example.com",
        "ann@example..com",
        "ann@-example.com",
        "ann lee@example.com",
        "ann@foo.invalid",
    ],
)
def test_syntax_errors_are_rejected_with_a_reason(raw: str) -> None:
    with pytest.raises(InvalidAddress) as error:
        check_address(raw)
    assert len(str(error.value)) > 5


@pytest.mark.parametrize(
    ("raw", "suggestion"),
    [
        ("ann@gmial.com", "ann@gmail.com"),
        ("ann@hotmial.com", "ann@hotmail.com"),
        ("ann@yaho.com", "ann@yahoo.com"),
        ("Ann@GMAIL.CO", "Ann@gmail.com"),
        ("ann@hotmal.cmo", "ann@hotmail.com"),
        ("ann@outlok.com", "ann@outlook.com"),
    ],
)
def test_typos_of_common_domains_get_a_suggestion(raw: str, suggestion: str) -> None:
    check = check_address(raw)
    assert check.suggestion == suggestion
    assert any(suggestion in warning for warning in check.warnings)
    assert check.address == normalise_address(raw)[0]  # a warning, never a rewrite


@pytest.mark.parametrize(
    "domain",
    [
        "gmail.com",
        "mail.com",
        "email.com",
        "gmx.com",
        "gmx.de",
        "example.com",
        "acme.com",
        "acme-widgets.com",
        "hotmail.it",
        "yahoo.es",
        "mail.example.com",
    ],
)
def test_real_domains_get_no_suggestion(domain: str) -> None:
    check = check_address(f"ann@{domain}")
    assert check.suggestion is None
    assert check.warnings == ()


def test_own_sending_address_is_a_warning_not_a_rejection() -> None:
    own = frozenset({"maria.alvarez@example.com", "bounces@bounce.example.com"})
    check = check_address("Maria.Alvarez@EXAMPLE.com", own)
    assert check.address == "Maria.Alvarez@example.com"
    assert any("own sending addresses" in warning for warning in check.warnings)
    assert check_address("ann@example.com", own).warnings == ()


@pytest.mark.parametrize(
    "raw",
    [
        "ann@example.com\r\nBcc: victim@example.org",
        "ann@example.com\nX-Injected: 1",
        "ann\r\n@example.com",
        "ann\x00@example.com",
        "ann@exam\x00ple.com",
        "a" * 10_000,
        "a" * 9_990 + "@example.com",
        "Bob <bob@example.com>",
        '"Bob" <bob@example.com>',
        "bob@example.com (Bob)",
        "bob@example.com, eve@example.com",
        "<bob@example.com>",
        "bob@[127.0.0.1]",
        "\u202eann@example.com",
    ],
)
def test_hostile_input_is_rejected_cleanly(raw: str) -> None:
    # Only InvalidAddress may escape: anything else would be a crash on import.
    with pytest.raises(InvalidAddress):
        check_address(raw)
