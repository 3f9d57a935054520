"""Demo data: what ``sluice demo`` promises, only at reserved domains, and what
a second run does."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import app_settings
from app.cli import build_cli
from app.clock import FixedClock
from app.models import (
    Campaign,
    CampaignType,
    Contact,
    EmailStatus,
    EmailTemplate,
    MassEmailStatus,
    SenderProfile,
    TargetList,
    TargetListMember,
)
from app.services.demo import (
    DEMO_COMPANY_DETAILS,
    DemoDataError,
    demo_people,
    load_demo_data,
)
from app.services.runtime_settings import (
    get_runtime_settings,
    seed_runtime_settings,
    update_runtime_settings,
)
from tests.conftest import make_test_app

RESERVED_DOMAIN = re.compile(r"(^|\.)example\.(com|org|net)$")


@pytest.fixture
def initialised(app: Flask, session: Session, clock: FixedClock) -> None:
    seed_runtime_settings(session, app_settings(app), clock)
    session.commit()


def count(session: Session, model: type[object]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def members_by_list(session: Session) -> dict[str, set[int]]:
    rows = session.execute(
        select(TargetList.name, TargetListMember.contact_id).join(
            TargetListMember, TargetListMember.target_list_id == TargetList.id
        )
    ).all()
    members: dict[str, set[int]] = {}
    for name, contact_id in rows:
        members.setdefault(name, set()).add(contact_id)
    return members


def test_demo_people_are_deterministic_and_at_reserved_domains() -> None:
    people = demo_people()
    assert people == demo_people()
    addresses = [person.contact.email for person in people]
    assert len(set(addresses)) == len(addresses)
    assert all(RESERVED_DOMAIN.search(address.rpartition("@")[2]) for address in addresses)


@pytest.mark.usefixtures("initialised")
def test_demo_loads_the_promised_data(session: Session, clock: FixedClock) -> None:
    update_runtime_settings(session, {"company_name": ""}, clock)  # empty: demo fills it
    configured_postal_address = get_runtime_settings(session).postal_address
    summary = load_demo_data(session, clock)
    session.commit()
    assert "\n" not in summary and "300 contacts" in summary

    contacts = session.scalars(select(Contact)).all()
    assert len(contacts) >= 200
    domains = {(c.email_lower or "").rpartition("@")[2] for c in contacts}
    assert all(RESERVED_DOMAIN.search(domain) for domain in domains)
    types = Counter(c.audience_type for c in contacts)
    assert len(types) >= 3 and "partner" in types
    assert all(c.first_name and c.last_name and c.company for c in contacts)
    assert all({"city", "plan"} <= set(c.custom_fields) for c in contacts)
    opted_out = [c for c in contacts if c.opted_out]
    assert opted_out and all(c.opt_out_source == "demo" and c.opted_out_at for c in opted_out)
    assert any(c.email_status == EmailStatus.INVALID for c in contacts)

    campaign = session.scalars(select(Campaign)).one()
    assert campaign.type == CampaignType.NEWSLETTER
    assert len(campaign.target_lists) == 2 and len(campaign.excluding_lists) == 1
    members = members_by_list(session)
    assert count(session, TargetList) == len(members) == 4  # 3 target lists + 1 exclusion
    exclusion_name = campaign.excluding_lists[0].name
    excluded = members.pop(exclusion_name)
    assert len(members) == 3 and all(members.values())
    assert excluded & set().union(*(members[t.name] for t in campaign.target_lists))
    lists_per_contact = Counter(c for contact_ids in members.values() for c in contact_ids)
    assert max(lists_per_contact.values()) >= 2  # target lists overlap

    profile = session.get(SenderProfile, campaign.sender_profile_id)
    assert profile is not None
    assert profile.from_address.endswith("@example.com") and profile.reply_to_address
    (mass_email,) = campaign.mass_emails
    assert mass_email.status == MassEmailStatus.DRAFT
    template = session.get(EmailTemplate, mass_email.template_id)
    assert template is not None
    assert "{{FIRST_NAME}}" in template.subject
    assert "{{ opt_out_url }}" in template.body_html and template.body_text is None

    settings = get_runtime_settings(session)
    assert settings.company_name == DEMO_COMPANY_DETAILS["company_name"]
    assert settings.postal_address == configured_postal_address  # not empty: kept


@pytest.mark.usefixtures("initialised")
def test_second_runs_change_nothing(session: Session, clock: FixedClock) -> None:
    load_demo_data(session, clock)
    session.commit()
    counts = {model: count(session, model) for model in (Contact, TargetList, Campaign)}

    summary = load_demo_data(session, clock, only_if_empty=True)
    assert "not loaded" in summary
    with pytest.raises(DemoDataError, match="Newsletter subscribers"):
        load_demo_data(session, clock)
    session.rollback()

    assert {model: count(session, model) for model in counts} == counts
    assert count(session, TargetListMember) == sum(len(p.lists) for p in demo_people())


@pytest.mark.usefixtures("initialised")
def test_demo_never_fills_a_users_list_of_the_same_name(
    session: Session, clock: FixedClock
) -> None:
    now = clock.now()
    session.add(TargetList(name="Newsletter subscribers", created_at=now, updated_at=now))
    session.commit()
    with pytest.raises(DemoDataError, match="already exist"):
        load_demo_data(session, clock)
    session.rollback()
    assert count(session, Contact) == 0
    assert count(session, TargetListMember) == 0


def test_demo_needs_an_initialised_database(session: Session, clock: FixedClock) -> None:
    with pytest.raises(LookupError, match="sluice init"):
        load_demo_data(session, clock)
    session.rollback()
    assert count(session, Contact) == 0


def test_demo_on_a_database_without_tables_says_to_run_init(tmp_path: Path) -> None:
    app = make_test_app(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path / "instance")
    result = CliRunner().invoke(
        build_cli(), ["demo", "--if-empty"], obj=ScriptInfo(create_app=lambda: app)
    )
    assert result.exit_code != 0
    assert "run `sluice init`" in result.output
    assert "Traceback" not in result.output


def test_first_start_commands(app: Flask, session: Session) -> None:
    """What ``make run`` does: init, then demo --if-empty, on every start."""

    def sluice(*args: str) -> tuple[int, str]:
        runner = CliRunner()
        result = runner.invoke(build_cli(), list(args), obj=ScriptInfo(create_app=lambda: app))
        return result.exit_code, result.output

    assert sluice("init")[0] == 0
    code, output = sluice("demo", "--if-empty")
    assert code == 0 and "Loaded demo data" in output
    loaded = count(session, Contact)
    assert loaded >= 200
    assert sluice("demo", "--if-empty") == (
        0,
        "Demo data not loaded: the database already has contacts.\n",
    )
    code, output = sluice("demo")
    assert code != 0 and "already exist" in output and "Traceback" not in output
    assert count(session, Contact) == loaded
