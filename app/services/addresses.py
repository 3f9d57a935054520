"""Address hygiene, applied on every entry path (CLI, CSV import, later forms
and API).

Rules:
- syntax is checked by ``email-validator`` without DNS lookups (no network in
  tests, and a dead MX today is not proof of a bad address);
- the stored form is trimmed, the domain lower-cased and IDNA-normalised, the
  local part kept as typed; ``key`` is the case-folded address that makes
  addresses unique case-insensitively;
- a likely typo of a common mailbox provider's domain yields a suggestion
  (a warning, never a rejection: the address may really be meant);
- an address equal to one of the company's own sending addresses is a warning.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cache, lru_cache

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import SenderProfile
from app.models.contacts import EMAIL_MAX_LENGTH

# Domains of large mailbox providers: a domain one or two edits away from one
# of these is probably a typo. Real domains that sit close to another real one
# (mail.com and gmail.com, gmx.com and gmx.de …) are listed so that neither is
# "corrected" into the other.
COMMON_DOMAINS = (
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "yahoo.de",
    "ymail.com",
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "hotmail.de",
    "outlook.com",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "mail.com",
    "email.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "t-online.de",
    "comcast.net",
    "verizon.net",
    "att.net",
    "sbcglobal.net",
    "protonmail.com",
    "proton.me",
    "yandex.ru",
    "mail.ru",
    "orange.fr",
    "free.fr",
    "laposte.net",
    "libero.it",
    "qq.com",
    "163.com",
)
_COMMON_DOMAIN_SET = frozenset(COMMON_DOMAINS)
_COMMON_DOMAIN_LENGTHS = frozenset(len(domain) for domain in COMMON_DOMAINS)


class InvalidAddress(ValueError):
    """The address cannot be used; ``str(error)`` says why, for the user."""


@dataclass(frozen=True)
class AddressCheck:
    address: str  # normalised form to store
    key: str  # case-folded form: the uniqueness key
    warnings: tuple[str, ...] = field(default=())
    suggestion: str | None = None


def normalise_address(raw: str) -> tuple[str, str]:
    """Return ``(address, key)`` or raise ``InvalidAddress`` with the reason."""
    candidate = raw.strip()
    if not candidate:
        raise InvalidAddress("the address is empty")
    if len(candidate) > EMAIL_MAX_LENGTH:
        raise InvalidAddress(f"the address is longer than {EMAIL_MAX_LENGTH} characters")
    try:
        validated = validate_email(candidate, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as error:
        raise InvalidAddress(str(error)) from None
    address = validated.normalized
    return address, address.lower()


def _edit_distance(left: str, right: str) -> int:
    """Damerau-Levenshtein (optimal string alignment): a swap of two
    neighbouring letters (``gmial``) counts as one edit."""
    previous_row: list[int] | None = None
    row = list(range(len(right) + 1))
    for i, left_char in enumerate(left, start=1):
        before, row = row, [i] + [0] * len(right)
        for j, right_char in enumerate(right, start=1):
            cost = 0 if left_char == right_char else 1
            row[j] = min(before[j] + 1, row[j - 1] + 1, before[j - 1] + cost)
            if (
                previous_row is not None
                and i > 1
                and j > 1
                and left_char == right[j - 2]
                and left[i - 2] == right_char
            ):
                row[j] = min(row[j], previous_row[j - 2] + 1)
        previous_row = before
    return row[-1]


def _is_country_variant(domain: str, known: str) -> bool:
    """``hotmail.it`` against ``hotmail.fr``: the same provider under another
    two-letter country domain is real, not a typo."""
    name, _, suffix = domain.rpartition(".")
    known_name, _, known_suffix = known.rpartition(".")
    return name == known_name and len(suffix) == 2 and len(known_suffix) == 2


MAX_TYPO_EDITS = 2


def _deletion_variants(word: str, depth: int) -> set[str]:
    """``word`` and every string made from it by deleting up to ``depth`` letters."""
    variants = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {item[:i] + item[i + 1 :] for item in frontier for i in range(len(item))}
        variants |= frontier
    return variants


@cache
def _deletion_index() -> dict[str, frozenset[str]]:
    """Deletion variants of every common domain → the domains they come from."""
    index: dict[str, set[str]] = defaultdict(set)
    for known in COMMON_DOMAINS:
        for variant in _deletion_variants(known, MAX_TYPO_EDITS):
            index[variant].add(known)
    return {variant: frozenset(domains) for variant, domains in index.items()}


def _typo_candidates(domain: str, allowed: int) -> set[str]:
    """Common domains that may be within ``allowed`` edits of ``domain``.

    Two strings within k edits (a swap of neighbours counting as one) share a
    string reachable by at most k deletions from each (the SymSpell idea), so
    only these few candidates need the exact, slow distance: a CSV full of
    distinct company domains costs microseconds per domain, not milliseconds.
    """
    index = _deletion_index()
    candidates: set[str] = set()
    for variant in _deletion_variants(domain, allowed):
        candidates |= index.get(variant, frozenset())
    return candidates


# A CSV import asks about the same company domains again and again.
@lru_cache(maxsize=16_384)
def suggest_domain(domain: str) -> str | None:
    """The common provider domain ``domain`` is probably a typo of, if any."""
    domain = domain.lower()
    if domain in _COMMON_DOMAIN_SET:
        return None
    # Short domains allow one edit; longer ones two (hotmal.cmo → hotmail.com).
    # Two edits on a short domain rewrite it (acme.com is not me.com).
    allowed = 1 if len(domain) < 10 else MAX_TYPO_EDITS
    if all(abs(len(domain) - length) > allowed for length in _COMMON_DOMAIN_LENGTHS):
        return None  # each edit changes the length by at most one
    best: tuple[int, str] | None = None
    candidates = _typo_candidates(domain, allowed)
    # In list order, so a tie goes to the more common provider listed first.
    for known in (known for known in COMMON_DOMAINS if known in candidates):
        if _is_country_variant(domain, known):
            continue
        distance = _edit_distance(domain, known)
        if distance <= allowed and (best is None or distance < best[0]):
            best = (distance, known)
    return best[1] if best else None


def check_address(raw: str, own_addresses: Collection[str] = ()) -> AddressCheck:
    """Validate and normalise ``raw``; collect warnings the user should see.

    ``own_addresses`` are the company's sending addresses, case-folded.
    """
    address, key = normalise_address(raw)
    local_part, _, domain = address.rpartition("@")
    warnings: list[str] = []
    suggestion = None
    suggested_domain = suggest_domain(domain)
    if suggested_domain:
        suggestion = f"{local_part}@{suggested_domain}"
        warnings.append(f"did you mean {suggestion}?")
    if key in own_addresses:
        warnings.append("this is one of the company's own sending addresses")
    return AddressCheck(address, key, tuple(warnings), suggestion)


def own_sending_addresses(session: Session, bounce_address: str = "") -> frozenset[str]:
    """The company's own addresses, case-folded: every sender profile's From
    and Reply-To, and the bounce address."""
    rows = session.execute(select(SenderProfile.from_address, SenderProfile.reply_to_address)).all()
    addresses = {value.strip().lower() for row in rows for value in row if value}
    if bounce_address:
        addresses.add(bounce_address.strip().lower())
    return frozenset(addresses)
