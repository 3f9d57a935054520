"""The pre-flight check: each finding triggered and not triggered, exact
empty-placeholder counts, the DMARC table and the spam score."""

from __future__ import annotations

import shutil
from collections.abc import Sequence

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.models import Contact, EmailStatus, MassEmail, MassEmailStatus
from app.services.campaigns import (
    add_tracking_url,
    copy_mass_email,
    create_sender_profile,
    remove_tracking_url,
    update_mass_email,
)
from app.services.mass_email_status import transition
from app.services.preflight import (
    FREE_MAIL_DMARC,
    Finding,
    free_mail_domain,
    preflight,
    spam_score_finding,
)
from app.services.rendering import TemplateSource
from app.services.runtime_settings import (
    RuntimeSettings,
    get_runtime_settings,
    update_runtime_settings,
)
from app.services.snapshots import take_snapshot
from app.services.spam_score import SpamScore
from app.services.target_lists import add_members, create_target_list
from tests.conftest import TEST_SECRET_KEY, add_contact
from tests.service.test_campaigns import BODY, Setup, make_setup

NO_SPAMASSASSIN = "sluice-test-no-such-spamassassin"


def run(
    app: Flask,
    session: Session,
    clock: FixedClock,
    mass_email: MassEmail,
    *,
    runtime: RuntimeSettings | None = None,
    spam_check: bool = False,
    spamassassin: str = NO_SPAMASSASSIN,
) -> list[Finding]:
    return preflight(
        session,
        mass_email,
        runtime=runtime or get_runtime_settings(session),
        settings=app_settings(app),
        secret_key=TEST_SECRET_KEY,
        clock=clock,
        spam_check=spam_check,
        spamassassin=spamassassin,
    )


def codes(findings: Sequence[Finding], severity: str | None = None) -> set[str]:
    return {f.code for f in findings if severity is None or f.severity == severity}


def by_code(findings: Sequence[Finding], code: str) -> list[Finding]:
    return [finding for finding in findings if finding.code == code]


def own_content(session: Session, clock: FixedClock, setup: Setup, body: str) -> None:
    update_mass_email(session, setup.mass_email, content=TemplateSource("Hello", body), clock=clock)


# ----------------------------------------------------------------------- a clean mass email


def test_a_complete_mass_email_has_no_errors_or_warnings(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    findings = run(app, session, clock, setup.mass_email)
    assert codes(findings, "error") == set()
    assert codes(findings, "warning") == set()
    assert by_code(findings, "recipients")[0].count == 2
    assert codes(findings, "info") == {
        "recipients",
        "excluded",
        "opted_out",
        "invalid_address",
        "no_address",
        "opt_out_link_appended",
    }
    # Errors first, then warnings, then info.
    severities = [finding.severity for finding in findings]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)


# ----------------------------------------------------------------------- errors


def test_no_sender_profile_and_no_target_list_are_errors(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    setup.campaign.sender_profile_id = None
    setup.campaign.target_lists = []
    session.flush()
    findings = run(app, session, clock, setup.mass_email)
    assert codes(findings, "error") == {"no_sender_profile", "no_target_list"}
    assert "no_recipients" not in codes(findings)  # one error for one cause


def test_template_problems_are_errors_with_their_lines(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    # Content saved before a rule existed (the service refuses it now).
    setup.mass_email.subject = "Hi {{ FIRST_NAME"
    setup.mass_email.body_html = "<p>one</p>\n{% for x in y %}"
    session.flush()
    problems = by_code(run(app, session, clock, setup.mass_email), "template_problem")
    assert [problem.severity for problem in problems] == ["error", "error"]
    assert problems[0].message.startswith("subject line 1:")
    assert problems[1].message.startswith("body_html line 2:")


def test_no_content_is_an_error(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    setup.mass_email.template_id = None
    session.flush()
    session.expire(setup.mass_email, ["template"])
    assert "no_content" in codes(run(app, session, clock, setup.mass_email), "error")


def test_empty_company_name_or_postal_address_are_errors(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    emptied = update_runtime_settings(session, {"company_name": "", "postal_address": " "}, clock)
    findings = run(app, session, clock, setup.mass_email, runtime=emptied)
    assert codes(findings, "error") == {"company_name_missing", "postal_address_missing"}
    # The content is still analysed: placeholders and links do not need them.
    assert "opt_out_link_appended" in codes(findings)


def test_audience_counts_and_no_recipients(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock, recipients=0)
    target = setup.campaign.target_lists[0]
    opted_out = add_contact(session, clock, "out@example.org")
    opted_out.opted_out = True
    invalid = add_contact(session, clock, "bad@example.org")
    invalid.email_status = EmailStatus.INVALID
    nobody = Contact(email=None, email_lower=None, created_at=clock.now(), updated_at=clock.now())
    excluded = add_contact(session, clock, "excluded@example.org")
    session.add(nobody)
    session.flush()
    add_members(session, target, [opted_out.id, invalid.id, nobody.id, excluded.id], clock)
    exclusions = create_target_list(session, "Exclusions", "", clock)
    add_members(session, exclusions, [excluded.id], clock)
    setup.campaign.excluding_lists = [exclusions]
    session.flush()

    findings = run(app, session, clock, setup.mass_email)
    counts = {finding.code: finding.count for finding in findings}
    assert counts["recipients"] == 0
    assert counts["opted_out"] == 1
    assert counts["invalid_address"] == 1
    assert counts["no_address"] == 1
    assert counts["excluded"] == 1
    assert codes(findings, "error") == {"no_recipients"}


# ----------------------------------------------------------------------- DMARC


@pytest.mark.parametrize(
    "address",
    [
        "news@yahoo.com",
        "news@ymail.com",
        "news@rocketmail.com",
        "news@aol.com",
        "news@aim.com",
        "news@verizon.net",
        "news@gmail.com",
        "news@googlemail.com",
        "news@hotmail.com",
        "news@outlook.com",
        "news@live.com",
        "news@msn.com",
        "news@icloud.com",
        "news@me.com",
        "news@mac.com",
        "news@gmx.net",
        "news@gmx.de",
        "news@web.de",
        "news@mail.ru",
        "news@yandex.ru",
        "news@yandex.com",
        "news@yahoo.co.uk",
        "news@yahoo.com.br",
        "news@hotmail.fr",
        "News@YAHOO.COM",
    ],
)
def test_free_mail_domains_are_in_the_table(address: str) -> None:
    row = free_mail_domain(address)
    assert row is not None
    assert row.severity == "error"


@pytest.mark.parametrize(
    "address",
    [
        "news@example.com",
        "news@notyahoo.com",
        "news@mail.yahoo.com",  # subdomains are not mailbox domains
        "news@live.events",  # a company's own domain, not Microsoft's
        "news@outlook.io",  # a country code sold as a generic domain
        "news@yahoo.co",
        "news@gmail.com.example.org",
    ],
)
def test_other_domains_are_not(address: str) -> None:
    assert free_mail_domain(address) is None


def test_every_table_row_is_an_error_with_a_reason() -> None:
    for row in FREE_MAIL_DMARC:
        assert row.severity == "error"
        assert row.reason and row.provider


def test_a_free_mail_from_address_is_an_error(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    assert "free_mail_from" not in codes(run(app, session, clock, setup.mass_email))
    profile = create_sender_profile(session, "Personal", "Ann", "ann@yahoo.com", "")
    setup.campaign.sender_profile_id = profile.id
    session.flush()
    finding = by_code(run(app, session, clock, setup.mass_email), "free_mail_from")[0]
    assert finding.severity == "error"
    assert "ann@yahoo.com" in finding.message and "Yahoo" in finding.message


def test_an_unknown_tracking_url_is_an_error_in_either_form_and_any_part(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    add_tracking_url(session, setup.campaign, "promo", "https://example.com/promo", clock)
    update_mass_email(
        session,
        setup.mass_email,
        content=TemplateSource(
            "Sale {trackingUrl:in-subject}",
            '<a href="{{ tracking_url(\'promo\') }}">ok</a> <a href="{trackingUrl:Promo}">x</a>'
            "{% if FIRST_NAME %}{{ tracking_url('in.html') }}{% endif %}{{ tracking_url(5) }}",
            "Text {trackingUrl:promo} {{ tracking_url('in_text') }}",
            footer_html="<p>{trackingUrl:in-footer}</p>",
        ),
        clock=clock,
    )
    findings = run(app, session, clock, setup.mass_email)
    unknown = by_code(findings, "unknown_tracking_url")
    assert [finding.severity for finding in unknown] == ["error"] * 6
    assert [finding.message.split(":")[0] for finding in unknown] == [
        "tracking_url('Promo')",  # letter case counts
        "tracking_url('in-footer')",
        "tracking_url('in-subject')",
        "tracking_url('in.html')",
        "tracking_url('in_text')",
        "tracking_url(5)",
    ]
    assert "(it has: promo)" in unknown[0].message
    assert "a tracking URL's name is text" in unknown[5].message
    assert "tracking_url_not_checked" not in codes(findings)


def test_known_tracking_urls_are_not_reported(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    own_content(session, clock, setup, '<a href="{trackingUrl:promo}">Promo</a>')
    assert by_code(run(app, session, clock, setup.mass_email), "unknown_tracking_url")
    add_tracking_url(session, setup.campaign, "promo", "https://example.com/promo", clock)
    assert not codes(run(app, session, clock, setup.mass_email)) & {
        "unknown_tracking_url",
        "tracking_url_not_checked",
    }


def test_a_scheduled_mass_email_is_checked_against_its_snapshot(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    own_content(session, clock, setup, '<a href="{trackingUrl:promo}">Promo</a>')
    add_tracking_url(session, setup.campaign, "promo", "https://example.com/promo", clock)
    take_snapshot(session, setup.mass_email, runtime)
    transition(setup.mass_email, MassEmailStatus.PENDING, clock)
    remove_tracking_url(session, setup.campaign, "promo")  # the snapshot keeps it
    assert not by_code(run(app, session, clock, setup.mass_email), "unknown_tracking_url")


@pytest.mark.parametrize(
    "body",
    [
        "{{ tracking_url(FIRST_NAME) }}",
        "{{ tracking_url('pro' ~ 'mo') }}",
        "{% for name in ['promo'] %}{{ tracking_url(name) }}{% endfor %}",
        "{% set link = tracking_url %}{{ link('promo') }}",
        "{{ tracking_url }}",
    ],
)
def test_a_tracking_url_without_a_constant_name_is_a_warning(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings, body: str
) -> None:
    setup = make_setup(session, clock)
    own_content(session, clock, setup, f"<p>{body}</p>")
    findings = run(app, session, clock, setup.mass_email)
    assert [finding.severity for finding in by_code(findings, "tracking_url_not_checked")] == [
        "warning"
    ]
    assert "unknown_tracking_url" not in codes(findings)


def test_tracking_url_as_text_is_not_a_use(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    own_content(
        session,
        clock,
        setup,
        "<p>Write tracking_url('name'), {% raw %}{{ tracking_url('x') }}{% endraw %}</p>",
    )
    assert not codes(run(app, session, clock, setup.mass_email)) & {
        "unknown_tracking_url",
        "tracking_url_not_checked",
    }


# ----------------------------------------------------------------------- warnings


def test_opt_out_link(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    optional = update_runtime_settings(session, {"mandatory_opt_out": False}, clock)
    findings = run(app, session, clock, setup.mass_email, runtime=optional)
    assert by_code(findings, "opt_out_link_missing")[0].severity == "warning"
    assert "opt_out_link_appended" not in codes(findings)

    own_content(session, clock, setup, '<p><a href="{{ opt_out_url }}">Leave</a></p>')
    for policy in (optional, update_runtime_settings(session, {"mandatory_opt_out": True}, clock)):
        findings = run(app, session, clock, setup.mass_email, runtime=policy)
        assert not codes(findings) & {"opt_out_link_missing", "opt_out_link_appended"}


def test_an_unchanged_copy_is_a_warning(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    assert not codes(run(app, session, clock, setup.mass_email)) & {
        "copy_subject_unchanged",
        "copy_body_unchanged",
        "copy_prefix_left",
    }
    copy = copy_mass_email(session, setup.mass_email, clock)
    findings = run(app, session, clock, copy)
    assert codes(findings, "warning") >= {
        "copy_subject_unchanged",
        "copy_body_unchanged",
        "copy_prefix_left",
    }
    # The prefix removed, the rest unchanged: still the same subject.
    update_mass_email(
        session,
        copy,
        content=TemplateSource("Spring sale for {{ FIRST_NAME }}", BODY),
        clock=clock,
    )
    findings = run(app, session, clock, copy)
    assert "copy_prefix_left" not in codes(findings)
    assert {"copy_subject_unchanged", "copy_body_unchanged"} <= codes(findings, "warning")

    update_mass_email(
        session, copy, content=TemplateSource("Summer sale", "<p>Summer</p>"), clock=clock
    )
    assert not codes(run(app, session, clock, copy)) & {
        "copy_subject_unchanged",
        "copy_body_unchanged",
        "copy_prefix_left",
    }


def test_empty_placeholders_are_counted_exactly_with_examples(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock, recipients=0)
    target = setup.campaign.target_lists[0]
    people = [
        add_contact(
            session, clock, "ann@example.org", first_name="Ann", custom_fields={"tier": "gold"}
        ),
        add_contact(session, clock, "bob@example.org", custom_fields={"tier": "silver"}),
        add_contact(session, clock, "cy@example.org", custom_fields={"tier": "gold"}),
        add_contact(session, clock, "di@example.org", first_name="Di", custom_fields={"tier": ""}),
        add_contact(session, clock, "ed@example.org", first_name=" ", custom_fields={"tier": "x"}),
    ]
    # Opted out and without a first name: not a recipient, not counted.
    gone = add_contact(session, clock, "gone@example.org")
    gone.opted_out = True
    add_members(session, target, [person.id for person in [*people, gone]], clock)
    own_content(
        session,
        clock,
        setup,
        "<p>Hi {{ FIRST_NAME }}, your tier: {{ TIER }}.</p>"
        "<p>Size {{ shoe_size }}, {{ custom['tier'] }}, {{ COMPANY }}</p>",
    )

    findings = by_code(run(app, session, clock, setup.mass_email), "empty_placeholder")
    empty = {finding.message.split(" }}")[0].removeprefix("{{ "): finding for finding in findings}
    assert set(empty) == {"FIRST_NAME", "TIER", "shoe_size", "custom['tier']", "COMPANY"}
    assert empty["FIRST_NAME"].count == 3
    assert empty["FIRST_NAME"].examples == ("bob@example.org", "cy@example.org", "ed@example.org")
    assert empty["TIER"].count == 1
    assert empty["TIER"].examples == ("di@example.org",)
    assert empty["custom['tier']"].count == 1
    # A field no contact has at all: every recipient.
    assert empty["shoe_size"].count == 5
    assert len(empty["shoe_size"].examples) == 5
    assert empty["COMPANY"].count == 5
    assert all(finding.severity == "warning" for finding in findings)


def test_placeholders_with_values_for_everyone_are_not_reported(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)  # every contact has a first name
    for index, tier in enumerate(("gold", "blue")):
        add_contact(
            session,
            clock,
            f"person{index}@example.org",
            first_name=f"P{index}",
            custom_fields={"loyaltyTier": tier},
        )
    own_content(session, clock, setup, "<p>{{ FIRST_NAME }} {{ LOYALTY_TIER }} {{ email }}</p>")
    assert "empty_placeholder" not in codes(run(app, session, clock, setup.mass_email))


def test_full_name_is_empty_only_without_first_and_last_name(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock, recipients=0)
    target = setup.campaign.target_lists[0]
    people = [
        add_contact(session, clock, "a@example.org", first_name="Ann"),
        add_contact(session, clock, "b@example.org", last_name="Bell"),
        add_contact(session, clock, "c@example.org"),
    ]
    add_members(session, target, [person.id for person in people], clock)
    own_content(session, clock, setup, "<p>Dear {{ FULL_NAME }}</p>")
    finding = by_code(run(app, session, clock, setup.mass_email), "empty_placeholder")[0]
    assert (finding.count, finding.examples) == (1, ("c@example.org",))


# ----------------------------------------------------------------------- spam score


def test_spam_score_above_the_threshold_is_a_warning() -> None:
    high = spam_score_finding(SpamScore(7.5, 5.0, ("HTML_MESSAGE", "MISSING_MID")))
    assert (high.severity, high.code) == ("warning", "spam_score")
    assert high.examples == ("HTML_MESSAGE", "MISSING_MID")
    assert "7.5" in high.message and "HTML_MESSAGE" in high.message
    low = spam_score_finding(SpamScore(0.3, 5.0, ()))
    assert (low.severity, low.code) == ("info", "spam_score")


def test_spam_check_is_skipped_without_spamassassin_or_with_errors(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    skipped = by_code(
        run(app, session, clock, setup.mass_email, spam_check=True), "spam_check_skipped"
    )
    assert skipped[0].severity == "info"
    assert "not installed" in skipped[0].message
    setup.campaign.sender_profile_id = None
    session.flush()
    skipped = by_code(
        run(app, session, clock, setup.mass_email, spam_check=True), "spam_check_skipped"
    )
    assert "errors" in skipped[0].message
    assert "spam_check_skipped" not in codes(run(app, session, clock, setup.mass_email))


@pytest.mark.skipif(shutil.which("spamassassin") is None, reason="SpamAssassin not installed")
def test_spam_score_of_the_first_recipients_message(
    app: Flask, session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    setup = make_setup(session, clock)
    findings = run(
        app, session, clock, setup.mass_email, spam_check=True, spamassassin="spamassassin"
    )
    score = by_code(findings, "spam_score")[0]
    assert "SpamAssassin scores the message" in score.message
    assert score.severity == "info"  # a plain newsletter is not spam
