"""Recipient domain groups: the pure mapping (the SQL form's agreement with
it is checked on both databases in ``tests/service/test_domain_pacing.py``)."""

from __future__ import annotations

import pytest

from app.models import DomainGroup
from app.services.addresses import normalise_address
from app.services.domain_groups import ascii_domain, domain_group

G = DomainGroup

# (address or domain, group): the table the SQL form is checked against too.
EXAMPLES: list[tuple[str, DomainGroup]] = [
    ("ann@gmail.com", G.GMAIL),
    ("ann@googlemail.com", G.GMAIL),
    ("ann@yahoo.com", G.YAHOO),
    ("ann@yahoo.fr", G.YAHOO),
    ("ann@yahoo.co.uk", G.YAHOO),
    ("ann@yahoo.com.br", G.YAHOO),
    ("ann@ymail.com", G.YAHOO),
    ("ann@rocketmail.com", G.YAHOO),
    ("ann@aol.com", G.YAHOO),
    ("ann@aol.de", G.YAHOO),
    ("ann@aim.com", G.YAHOO),
    ("ann@verizon.net", G.YAHOO),
    ("ann@outlook.com", G.OUTLOOK),
    ("ann@outlook.de", G.OUTLOOK),
    ("ann@hotmail.com", G.OUTLOOK),
    ("ann@hotmail.co.uk", G.OUTLOOK),
    ("ann@hotmail.com.br", G.OUTLOOK),
    ("ann@live.com", G.OUTLOOK),
    ("ann@live.ca", G.OUTLOOK),
    ("ann@msn.com", G.OUTLOOK),
    ("ann@windowslive.com", G.OUTLOOK),
    ("ann@example.com", G.OTHER),
    ("ann@icloud.com", G.OTHER),
    # Subdomains and look-alikes are not the provider.
    ("ann@mail.yahoo.com", G.OTHER),
    ("ann@gmail.com.evil.example", G.OTHER),
    ("ann@notgmail.com", G.OTHER),
    ("ann@gmail.co", G.OTHER),
    ("ann@yahoo.example", G.OTHER),
    ("ann@hotmail.c.uk", G.OTHER),
    # Country codes sold as generic domains: a company's own.
    ("ann@outlook.io", G.OTHER),
    ("ann@live.tv", G.OTHER),
    ("ann@yahoo.me", G.OTHER),
    ("ann@hotmail.co", G.OTHER),
    # Non-ASCII domains: a provider's name only in ASCII.
    ("ann@bücher.de", G.OTHER),
    ("ann@gm\u0430il.com", G.OTHER),  # Cyrillic a
]


@pytest.mark.parametrize(("address", "group"), EXAMPLES)
def test_each_address_maps_to_its_provider_group(address: str, group: DomainGroup) -> None:
    assert domain_group(address) == group


@pytest.mark.parametrize(("address", "group"), EXAMPLES)
def test_the_bare_domain_maps_like_the_address(address: str, group: DomainGroup) -> None:
    assert domain_group(address.rpartition("@")[2]) == group


@pytest.mark.parametrize(
    "spelling",
    [
        "Ann@GMail.COM",
        "ann@gmail.com.",  # the root's trailing dot
        " ann@gmail.com ",
        "ann@\uff47\uff4d\uff41\uff49\uff4c.com",  # full-width letters
        "ANN@GOOGLEMAIL.COM",
        '"ann@yahoo.com"@gmail.com',  # only the part after the last @ counts
    ],
)
def test_case_spacing_and_unicode_forms_do_not_change_the_group(spelling: str) -> None:
    assert domain_group(spelling) == G.GMAIL


def test_the_stored_form_of_an_address_keeps_its_group() -> None:
    # What the database holds is normalise_address's output.
    for raw in ("Ann@GMail.COM", "ann@\uff47\uff4d\uff41\uff49\uff4c.com", "Bo@Yahoo.CO.UK"):
        address, _ = normalise_address(raw)
        assert domain_group(address) == domain_group(raw)


def test_domains_idna_refuses_are_other_not_an_error() -> None:
    assert domain_group("ann@a..gmail.com") == G.OTHER
    assert domain_group("ann@" + "x" * 70 + ".com") == G.OTHER
    assert domain_group("") == G.OTHER
    assert domain_group("no-at-sign") == G.OTHER


def test_ascii_domain_spells_unicode_as_idna() -> None:
    assert ascii_domain("ann@Bücher.DE.") == "xn--bcher-kva.de"
