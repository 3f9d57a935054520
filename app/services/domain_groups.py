"""Recipient domain groups: which mailbox provider an address belongs to,
for per-domain pacing (SPEC §4).

Rules:

- Four groups: ``gmail`` (gmail.com, googlemail.com), ``yahoo`` (Yahoo,
  AOL and the Verizon mailboxes AOL hosts), ``outlook`` (Microsoft's
  consumer mail: Outlook.com, Hotmail, Live, MSN) and ``other``.
- ``GROUP_DOMAINS`` lists each group's domains. ``name.*`` stands for the
  provider's domain under a country code, directly or below ``co.``/``com.``
  (``yahoo.fr``, ``yahoo.co.uk``, ``hotmail.com.br``); generic domains are
  listed by name, and country codes sold as generic ones (``.io``, ``.co``,
  ``.me``, ``.tv`` …) are left out, so a company's own ``outlook.io`` or
  ``live.tv`` is ``other`` (the convention of the pre-flight DMARC table).
  Subdomains never match: nobody has a mailbox at ``mail.yahoo.com``.
- Only the domain counts (the part after the last ``@``), compared
  case-insensitively in its ASCII (IDNA) form, so ``GMail.COM``, a
  trailing dot or full-width letters change nothing, and a look-alike
  Unicode domain (a Cyrillic ``a`` in ``gmail.com``) is ``other``. Hosted
  domains (a company's Google Workspace) are ``other``: telling them needs
  an MX lookup, and pacing must not hang on DNS.
- One definition, two forms: ``GROUP_DOMAINS`` gives each group's exact
  domains and one regular expression for its country domains
  (``country_domain_pattern``), which ``domain_group`` applies in Python and
  ``domain_group_sql`` in SQL (PostgreSQL ``~``; SQLAlchemy gives SQLite a
  ``REGEXP`` function) over the domain ``email_domain_sql`` extracts, so the
  queue build computes groups set-based in its ``INSERT … SELECT`` and
  agrees with the Python function on every stored (normalised) address.
"""

from __future__ import annotations

import contextlib
import re
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, func, literal, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.models import DomainGroup

G = DomainGroup

GROUP_DOMAINS: dict[DomainGroup, tuple[str, ...]] = {
    G.GMAIL: ("gmail.com", "googlemail.com"),
    G.YAHOO: (
        "yahoo.com",
        "yahoo.*",
        "ymail.com",
        "rocketmail.com",
        "aol.com",
        "aol.*",
        "aim.com",
        "verizon.net",  # Verizon's mailboxes moved to AOL in 2017
    ),
    G.OUTLOOK: (
        "outlook.com",
        "outlook.*",
        "hotmail.com",
        "hotmail.*",
        "live.com",
        "live.*",
        "msn.com",
        "windowslive.com",
        "passport.com",
    ),
}

# Country codes sold as generic domains: a brand under them is not the
# provider's country site.
GENERIC_USE_COUNTRY_CODES = frozenset(
    {"ai", "cc", "co", "fm", "gg", "io", "ly", "me", "sh", "so", "to", "tv", "ws"}
)

# What follows "name." in a country domain, in the regular-expression subset
# PostgreSQL and Python share (non-capturing groups, a negative lookahead,
# \A and \Z for the very start and end).
_COUNTRY_SUFFIX = (
    r"(?:(?:co|com)\.)?(?!(?:" + "|".join(sorted(GENERIC_USE_COUNTRY_CODES)) + r")\Z)[a-z]{2}"
)


def exact_domains(group: DomainGroup) -> tuple[str, ...]:
    """The group's domains listed by name."""
    return tuple(domain for domain in GROUP_DOMAINS.get(group, ()) if not domain.endswith(".*"))


def brand_prefixes(group: DomainGroup) -> tuple[str, ...]:
    """The ``name.`` of each of the group's ``name.*`` entries."""
    return tuple(domain[:-1] for domain in GROUP_DOMAINS.get(group, ()) if domain.endswith(".*"))


@cache
def country_domain_pattern(group: DomainGroup) -> str:
    """The regular expression a (lower-cased, ASCII) domain matches when it
    is one of the group's ``name.*`` country domains; anchored at both ends."""
    brands = "|".join(re.escape(prefix) for prefix in brand_prefixes(group))
    return f"\\A(?:{brands}){_COUNTRY_SUFFIX}\\Z"


def ascii_domain(address_or_domain: str) -> str:
    """The domain of an address (or a bare domain), lower-cased in its ASCII
    form: IDNA applies Unicode normalisation (full-width letters become
    ASCII) and spells other non-ASCII labels as ``xn--``. A domain IDNA
    refuses (an empty or over-long label) is only lower-cased: it matches
    no provider either way."""
    domain = address_or_domain.rpartition("@")[2].strip().rstrip(".")
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return domain.lower()


def domain_group(address_or_domain: str) -> DomainGroup:
    """The domain group of an address or a bare domain (see the module's rules)."""
    domain = ascii_domain(address_or_domain)
    for group in GROUP_DOMAINS:
        if domain in exact_domains(group):
            return group
        if domain.startswith(brand_prefixes(group)) and re.search(
            country_domain_pattern(group), domain
        ):
            return group
    return G.OTHER


class email_domain(FunctionElement[str]):
    """SQL: the part of an address after its last ``@`` (all of it without
    one), as ``str.rpartition("@")[2]`` gives it; NULL stays NULL. Plain
    string functions, no regular expression: it runs for every queue item."""

    type = String()
    inherit_cache = True
    name = "email_domain"


@compiles(email_domain, "postgresql")
def _email_domain_postgresql(element: email_domain, compiler: SQLCompiler, **kw: Any) -> str:
    address = compiler.process(element.clauses, **kw)
    return f"reverse(split_part(reverse({address}), '@', 1))"


@compiles(email_domain, "sqlite")
def _email_domain_sqlite(element: email_domain, compiler: SQLCompiler, **kw: Any) -> str:
    # rtrim(x, every character of x but "@") leaves x up to its last "@".
    address = compiler.process(element.clauses, **kw)
    return f"substr({address}, length(rtrim({address}, replace({address}, '@', ''))) + 1)"


def email_domain_sql(email: ColumnElement[str | None]) -> ColumnElement[str]:
    """SQL: an address's domain, lower-cased (the input ``domain_group_sql``
    takes). Stored addresses are normalised (domain lower-cased and
    IDNA-normalised, ``app.services.addresses``); ``lower()`` keeps the
    groups right for rows written some other way."""
    return func.lower(email_domain(email))


def domain_group_sql(domain: ColumnElement[str | None]) -> ColumnElement[str]:
    """``domain_group`` as a SQL expression over a lower-cased domain
    (``email_domain_sql``), for set-based statements: the same exact domains
    and the same country-domain patterns, the pattern only tried on domains
    that start with one of the group's brand names (a cheap prefix ``LIKE``
    first, and AND stops at the first false operand). It agrees with
    ``domain_group`` on every stored address. A NULL domain is ``other``.

    The CASE names ``domain`` many times, and PostgreSQL evaluates an
    expression again at each use: give it a column, e.g. of a subquery that
    computed ``email_domain_sql`` once (see ``app.services.queue_build``)."""
    whens: list[tuple[ColumnElement[bool], ColumnElement[str]]] = []
    for group in GROUP_DOMAINS:
        condition: ColumnElement[bool] = domain.in_(exact_domains(group))
        if brand_prefixes(group):
            condition = or_(
                condition,
                and_(
                    or_(*(domain.startswith(prefix) for prefix in brand_prefixes(group))),
                    domain.regexp_match(country_domain_pattern(group)),
                ),
            )
        whens.append((condition, literal(group.value)))
    return case(*whens, else_=literal(G.OTHER.value))
