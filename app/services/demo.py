"""Demo data for a first start (``sluice demo``, run by ``make run`` with
``--if-empty``).

Rules:
- the data is deterministic: a seeded ``random.Random`` draws the same 300
  contacts, list memberships, opt-outs and invalid addresses on every run;
- every address is at a domain reserved for documentation (RFC 2606:
  ``example.com``, ``example.org``, ``example.net`` and their subdomains), so
  a demo campaign can never reach a real person;
- contacts go through ``save_contact`` and ``set_opt_out``, the same hygiene
  and records as any other entry path (opt-outs have source ``demo``);
- ``only_if_empty``: nothing happens when any contact exists;
- a plain second run refuses, before writing anything, when a demo target
  list, sender profile, template or campaign of the same name exists: the
  demo never adds fake contacts to a user's list that happens to share a name,
  nor duplicates the campaign. A contact whose address already exists is left
  as it is (and still joins the demo lists);
- the runtime settings ``company_name`` and ``postal_address`` get demo values
  only while empty, so a demo campaign can pass the CAN-SPAM checks but an
  administrator's values are never overwritten. The database must be
  initialised (``sluice init``) first.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from app.clock import Clock, FixedClock
from app.models import (
    Campaign,
    CampaignType,
    Contact,
    EmailStatus,
    EmailTemplate,
    MassEmail,
    RuntimeSetting,
    SenderProfile,
    TargetList,
    TargetListMember,
)
from app.services.addresses import normalise_address
from app.services.contacts import ContactInput, save_contact, set_opt_out
from app.services.runtime_settings import (
    RuntimeSettings,
    get_runtime_settings,
    update_runtime_settings,
)

DEMO_SEED = 2026
DEMO_CONTACT_COUNT = 300
DEMO_SOURCE = "demo"
OPTED_OUT_COUNT = 8
INVALID_COUNT = 2
DO_NOT_CONTACT_COUNT = 12

NEWSLETTER_LIST = "Newsletter subscribers"
DENVER_AGENTS_LIST = "Denver agents"
TRIAL_LEADS_LIST = "Trial leads 2026"
DO_NOT_CONTACT_LIST = "Do not contact"
TARGET_LISTS = (NEWSLETTER_LIST, DENVER_AGENTS_LIST, TRIAL_LEADS_LIST)
LIST_DESCRIPTIONS = {
    NEWSLETTER_LIST: "Demo: people who asked for the monthly newsletter.",
    DENVER_AGENTS_LIST: "Demo: real-estate agents in Denver.",
    TRIAL_LEADS_LIST: "Demo: leads on a trial plan.",
    DO_NOT_CONTACT_LIST: "Demo exclusion list: never mail these people.",
}

SENDER_PROFILE_NAME = "Example Corp newsletter (demo)"
SENDER_FROM_NAME = "Example Corp"
SENDER_FROM_ADDRESS = "news@example.com"
SENDER_REPLY_TO = "maria.alvarez@example.com"  # a named person answers replies
TEMPLATE_NAME = "Monthly newsletter (demo)"
TEMPLATE_SUBJECT = "{{FIRST_NAME}}, here is what's new at Example Corp"
TEMPLATE_HTML = """\
<h1>Hello {{FIRST_NAME}},</h1>
<p>This month at Example Corp: new listings in Denver and Boulder, a faster
property search, and the dates of our spring webinars.</p>
<p><a href="https://www.example.com/news">Read the full story</a></p>
<p style="font-size:12px;color:#666">You receive this newsletter because you
subscribed to it. <a href="{{ opt_out_url }}">Unsubscribe</a></p>
"""
CAMPAIGN_NAME = "Spring newsletter 2026 (demo)"
MASS_EMAIL_NAME = "March issue"
DEMO_COMPANY_DETAILS = {
    "company_name": "Example Corp",
    "postal_address": "100 Example Plaza, Suite 200, Denver, CO 80202, USA",
}

FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sophia", "Lucas", "Mia",
    "Ethan", "Amara", "Kenji", "Priya", "Diego", "Chloe", "Omar", "Hannah",
    "Leon", "Isabel", "Tariq", "Grace", "Jonas", "Nadia", "Samuel", "Elena",
    "Wei", "Fatima", "Marcus", "Julia", "Andre", "Zoe", "Ravi", "Claire",
    "Tomás", "Ingrid", "Kwame", "Lena", "Hugo", "Aisha", "Daniel",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Garcia", "Nguyen", "Johnson", "Müller", "Okafor", "Rossi",
    "Kowalski", "Brown", "Martinez", "Kim", "Patel", "Silva", "Dubois",
    "Andersen", "Cohen", "Tanaka", "Walker", "Haddad", "Novak", "O'Brien",
    "Fischer", "Lopez", "Evans", "Mensah", "Ivanova", "Bianchi", "Larsen",
    "Reyes", "Schmidt",
)  # fmt: skip
# (company name, subdomain under example.com for its staff's addresses)
COMPANIES = (
    ("Mile High Realty", "milehigh"),
    ("Front Range Homes", "frontrange"),
    ("Cherry Creek Properties", "cherrycreek"),
    ("Blue Spruce Analytics", "bluespruce"),
    ("Northwind Traders", "northwind"),
    ("Summit Insurance Group", "summit"),
    ("Larimer Legal", "larimer"),
    ("Aspen Software", "aspen"),
    ("Riverbend Logistics", "riverbend"),
    ("Copper Kettle Foods", "copperkettle"),
)
PERSONAL_DOMAINS = ("example.org", "example.net", "mail.example.com", "mail.example.org")
CITIES = ("Denver", "Boulder", "Austin", "Portland", "Chicago", "Seattle")
# (audience type, weight): the five known types and one custom type.
AUDIENCE_WEIGHTS = (
    ("contact", 30),
    ("lead", 25),
    ("agent", 20),
    ("client", 10),
    ("account", 10),
    ("partner", 5),
)
PLANS_BY_TYPE = {
    "contact": ("free", "pro"),
    "lead": ("trial", "trial", "free"),
    "agent": ("pro", "team"),
    "client": ("pro", "team", "enterprise"),
    "account": ("team", "enterprise"),
    "partner": ("enterprise",),
}


class DemoDataError(RuntimeError):
    """The demo cannot be loaded; the message says why and what exists."""


@dataclass(frozen=True)
class DemoPerson:
    """One demo contact and what the demo does with it."""

    contact: ContactInput
    days_old: int
    lists: frozenset[str]
    opted_out: bool = False
    invalid: bool = False


def _ascii_word(name: str) -> str:
    """``Müller`` → ``muller``, ``O'Brien`` → ``obrien``: a name as a local part."""
    decomposed = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in decomposed.lower() if ch.isalnum())


def _address(rng: random.Random, first: str, last: str, company_slug: str) -> str:
    """A plausible address: at the company's subdomain or a personal mailbox."""
    first_ascii, last_ascii = _ascii_word(first), _ascii_word(last)
    local = rng.choice(
        (
            f"{first_ascii}.{last_ascii}",
            f"{first_ascii[0]}{last_ascii}",
            f"{first_ascii}_{last_ascii}",
        )
    )
    domain = f"{company_slug}.example.com" if rng.random() < 0.5 else rng.choice(PERSONAL_DOMAINS)
    return f"{local}@{domain}"


def _unique(address: str, used: set[str]) -> str:
    """``address``, or the first ``local2@…``, ``local3@…`` not yet used."""
    local, _, domain = address.partition("@")
    candidate, number = address, 1
    while candidate in used:
        number += 1
        candidate = f"{local}{number}@{domain}"
    used.add(candidate)
    return candidate


def _draw_contact(rng: random.Random, used: set[str]) -> ContactInput:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    company, slug = rng.choice(COMPANIES)
    types, weights = zip(*AUDIENCE_WEIGHTS, strict=True)
    audience_type = rng.choices(types, weights)[0]
    # Agents cluster in Denver so "Denver agents" is a real segment.
    city = "Denver" if audience_type == "agent" and rng.random() < 0.5 else rng.choice(CITIES)
    return ContactInput(
        email=_unique(_address(rng, first, last, slug), used),
        first_name=first,
        last_name=last,
        company=company,
        audience_type=audience_type,
        custom_fields={"city": city, "plan": rng.choice(PLANS_BY_TYPE[audience_type])},
    )


def _target_lists_of(rng: random.Random, contact: ContactInput) -> set[str]:
    lists = set()
    if rng.random() < 0.45:
        lists.add(NEWSLETTER_LIST)
    if contact.audience_type == "agent" and contact.custom_fields["city"] == "Denver":
        lists.add(DENVER_AGENTS_LIST)
    if contact.audience_type == "lead" and contact.custom_fields["plan"] == "trial":
        lists.add(TRIAL_LEADS_LIST)
    return lists


def demo_people(seed: int = DEMO_SEED, count: int = DEMO_CONTACT_COUNT) -> list[DemoPerson]:
    """The demo contacts, the same for the same ``seed``. The exclusion list
    takes members of the target lists, so exclusion visibly changes an audience."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    used = {SENDER_FROM_ADDRESS, SENDER_REPLY_TO}  # no contact equals our own address
    drawn = [_draw_contact(rng, used) for _ in range(count)]
    lists = [_target_lists_of(rng, contact) for contact in drawn]
    listed = [index for index, names in enumerate(lists) if names]
    for index in rng.sample(listed, DO_NOT_CONTACT_COUNT):
        lists[index].add(DO_NOT_CONTACT_LIST)
    flagged = rng.sample(range(count), OPTED_OUT_COUNT + INVALID_COUNT)
    opted_out, invalid = set(flagged[:OPTED_OUT_COUNT]), set(flagged[OPTED_OUT_COUNT:])
    return [
        DemoPerson(
            contact=contact,
            days_old=rng.randint(0, 540),
            lists=frozenset(lists[index]),
            opted_out=index in opted_out,
            invalid=index in invalid,
        )
        for index, contact in enumerate(drawn)
    ]


def _existing_demo_objects(session: Session) -> list[str]:
    """The demo's named objects already in the database, described for a user."""
    found = [
        f"target list {name!r}"
        for name in session.scalars(
            select(TargetList.name).where(TargetList.name.in_((*TARGET_LISTS, DO_NOT_CONTACT_LIST)))
        )
    ]
    checks = (
        (SenderProfile.name, SENDER_PROFILE_NAME, "sender profile"),
        (EmailTemplate.name, TEMPLATE_NAME, "template"),
        (Campaign.name, CAMPAIGN_NAME, "campaign"),
    )
    for column, name, kind in checks:
        if session.scalar(select(column).where(column == name).limit(1)) is not None:
            found.append(f"{kind} {name!r}")
    return found


def _add_contacts(session: Session, people: list[DemoPerson], clock: Clock) -> int:
    """Save every person whose address is new; return how many were added."""
    added = 0
    for person in people:
        created_at = clock.now() - timedelta(days=person.days_old)
        saved = save_contact(session, person.contact, FixedClock(created_at), update=False)
        if not saved.created:
            continue
        added += 1
        if person.opted_out:
            set_opt_out(session, person.contact.email, True, DEMO_SOURCE, clock)
        if person.invalid:
            _mark_invalid(saved.contact, clock.now())
    session.flush()
    return added


def _mark_invalid(contact: Contact, when: datetime) -> None:
    contact.email_status = EmailStatus.INVALID
    contact.email_status_reason = "demo: 550 5.1.1 mailbox unknown (hard bounce)"
    contact.email_status_at = when


def _add_lists(session: Session, people: list[DemoPerson], clock: Clock) -> dict[str, TargetList]:
    """Create the three target lists and the exclusion list with their members."""
    now = clock.now()
    lists = {
        name: TargetList(name=name, description=description, created_at=now, updated_at=now)
        for name, description in LIST_DESCRIPTIONS.items()
    }
    session.add_all(lists.values())
    session.flush()
    keys = {person.contact.email: normalise_address(person.contact.email)[1] for person in people}
    rows = session.execute(
        select(Contact.email_lower, Contact.id).where(Contact.email_lower.in_(list(keys.values())))
    )
    contact_ids = {key: contact_id for key, contact_id in rows.all()}
    session.add_all(
        TargetListMember(
            target_list_id=lists[name].id,
            contact_id=contact_ids[keys[person.contact.email]],
            added_at=now,
        )
        for person in people
        for name in sorted(person.lists)
    )
    session.flush()
    return lists


def _add_campaign(session: Session, lists: dict[str, TargetList], clock: Clock) -> Campaign:
    """A sender profile, a template, and a newsletter campaign with one draft."""
    now = clock.now()
    profile = SenderProfile(
        name=SENDER_PROFILE_NAME,
        from_name=SENDER_FROM_NAME,
        from_address=SENDER_FROM_ADDRESS,
        reply_to_address=SENDER_REPLY_TO,
    )
    template = EmailTemplate(
        name=TEMPLATE_NAME,
        subject=TEMPLATE_SUBJECT,
        body_html=TEMPLATE_HTML,
        body_text=None,  # generated from the HTML when sent
        created_at=now,
        updated_at=now,
    )
    session.add_all((profile, template))
    session.flush()
    campaign = Campaign(
        name=CAMPAIGN_NAME,
        type=CampaignType.NEWSLETTER,
        sender_profile_id=profile.id,
        created_at=now,
        target_lists=[lists[NEWSLETTER_LIST], lists[TRIAL_LEADS_LIST]],
        excluding_lists=[lists[DO_NOT_CONTACT_LIST]],
    )
    # A new mass email is a draft (the model's default status).
    campaign.mass_emails.append(
        MassEmail(name=MASS_EMAIL_NAME, template_id=template.id, start_at=None, created_at=now)
    )
    session.add(campaign)
    session.flush()
    return campaign


def _fill_company_details(session: Session, current: RuntimeSettings, clock: Clock) -> list[str]:
    """Give ``company_name``/``postal_address`` demo values where empty;
    return the keys set."""
    changes = {
        key: value for key, value in DEMO_COMPANY_DETAILS.items() if not getattr(current, key)
    }
    if changes:
        update_runtime_settings(session, changes, clock)
    return sorted(changes)


def _initialised_settings(session: Session) -> RuntimeSettings:
    """The runtime settings, or ``LookupError`` saying to run ``sluice init``
    when the database has no tables or was never seeded."""
    if not inspect(session.connection()).has_table(RuntimeSetting.__tablename__):
        raise LookupError("the database has no tables yet; run `sluice init` first")
    return get_runtime_settings(session)


def load_demo_data(session: Session, clock: Clock, only_if_empty: bool = False) -> str:
    """Load the demo (see the module docstring for the rules) and return a
    one-line summary. Flushes, never commits: the caller owns the transaction.

    Raises ``DemoDataError`` when demo objects already exist and
    ``LookupError`` when the runtime settings were never seeded.
    """
    current = _initialised_settings(session)  # fails before any write
    if only_if_empty and session.scalar(select(Contact.id).limit(1)) is not None:
        return "Demo data not loaded: the database already has contacts."
    existing = _existing_demo_objects(session)
    if existing:
        raise DemoDataError(
            f"demo data not loaded: {', '.join(existing)} already exist; nothing was changed"
        )
    people = demo_people()
    added = _add_contacts(session, people, clock)
    lists = _add_lists(session, people, clock)
    campaign = _add_campaign(session, lists, clock)
    settings_set = _fill_company_details(session, current, clock)
    skipped = len(people) - added
    return (
        f"Loaded demo data: {added} contacts"
        + (f" ({skipped} already present)" if skipped else "")
        + f", {len(lists)} target lists, campaign {campaign.name!r} with a draft mass email"
        + (f"; set {' and '.join(settings_set)}" if settings_set else "")
        + "."
    )
