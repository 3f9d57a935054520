"""Per-domain pacing against a real database: the SQL form of the domain
groups agrees with the Python one, each group's hourly allowance comes from
its ledger rows, and throttles grow in a row and are forgotten later. (The
dispatcher paced against a real SMTP server: ``tests/integration/test_pacing.py``.)"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import DomainGroup, DomainThrottle, QueueItem, SendAttempt
from app.services.addresses import InvalidAddress, normalise_address
from app.services.domain_groups import domain_group, domain_group_sql, email_domain_sql
from app.services.pacing import (
    MAX_THROTTLE,
    STRIKES_FORGOTTEN_AFTER,
    group_allowances,
    group_paces,
    throttle_group,
    throttled_groups,
)
from app.services.quota import QUOTA_WINDOW
from app.services.runtime_settings import RuntimeSettings, update_runtime_settings
from app.services.transport import SendOutcome, SendResult, SmtpStage
from tests.unit.test_domain_groups import EXAMPLES

G = DomainGroup
RATE_LIMIT = SendResult(
    SendOutcome.TEMPORARY, 421, "4.7.28 unusual rate of unsolicited mail", SmtpStage.RCPT
)


def stored_forms() -> list[str]:
    """The examples as the database holds addresses (normalised), and a few
    spellings the normalisation would not leave (written some other way)."""
    forms = ["ANN@GMAIL.COM", "ann@Yahoo.Co.UK", "x@HOTMAIL.com.BR"]
    # The domain is what follows the last "@" (there is one only in stored
    # addresses; the SQL must still agree).
    forms += ['"ann@yahoo.com"@gmail.com', "a@b@hotmail.com", "gmail.com", "@aol.de", ""]
    for address, _ in EXAMPLES:
        try:
            forms.append(normalise_address(address)[0])
        except InvalidAddress:
            forms.append(address)
    return forms


def test_the_sql_form_agrees_with_the_python_function(session: Session) -> None:
    for address in stored_forms():
        in_sql = session.scalar(select(domain_group_sql(email_domain_sql(literal(address)))))
        assert in_sql == domain_group(address).value, address
    assert session.scalar(select(domain_group_sql(email_domain_sql(literal(None))))) == "other"


# ----------------------------------------------------------------- hourly caps


def ledger_rows(
    session: Session, item: QueueItem, group: DomainGroup, when: datetime, count: int = 1
) -> None:
    session.add_all(
        SendAttempt(
            queue_item_id=item.id,
            mass_email_id=item.mass_email_id,
            runner_id="runner-a",
            claimed_at=when,
            domain_group=group,
        )
        for _ in range(count)
    )
    session.flush()


def test_an_uncapped_group_has_no_allowance_of_its_own(
    session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    assert group_allowances(session, clock.now(), runtime) == dict.fromkeys(DomainGroup)


def test_a_capped_group_has_what_its_rows_of_the_last_60_minutes_leave(
    session: Session, clock: FixedClock, runtime: RuntimeSettings, item: QueueItem
) -> None:
    runtime = update_runtime_settings(
        session, {"pace_gmail_per_hour": 10, "pace_yahoo_per_hour": "3"}, clock
    )
    now = clock.now()
    ledger_rows(session, item, G.GMAIL, now - QUOTA_WINDOW)  # just out of the window
    ledger_rows(session, item, G.GMAIL, now - timedelta(minutes=59), count=4)
    ledger_rows(session, item, G.YAHOO, now, count=5)  # over: never below zero
    ledger_rows(session, item, G.OTHER, now, count=50)  # uncapped, and not gmail's

    allowances = group_allowances(session, now, runtime)

    assert allowances == {G.GMAIL: 6, G.YAHOO: 0, G.OUTLOOK: None, G.OTHER: None}
    clock.advance(timedelta(minutes=1))  # the four rows of 59 minutes ago leave
    assert group_allowances(session, clock.now(), runtime)[G.GMAIL] == 10
    paces = {pace.group: pace for pace in group_paces(session, clock, runtime)}
    assert (paces[G.YAHOO].used, paces[G.YAHOO].hourly_cap) == (5, 3)
    assert (paces[G.OTHER].used, paces[G.OTHER].hourly_cap) == (50, 0)


# ----------------------------------------------------------------- throttles


def test_a_throttled_group_has_no_allowance_until_the_throttle_ends(
    session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    throttle = throttle_group(session, G.GMAIL, RATE_LIMIT, clock, runtime)
    session.commit()

    assert throttle is not None
    assert throttle.throttled_until == clock.now() + timedelta(seconds=runtime.throttle_seconds)
    assert (throttle.strikes, throttle.code) == (1, 421)
    assert "unusual rate" in throttle.reply
    assert group_allowances(session, clock.now(), runtime)[G.GMAIL] == 0
    assert throttled_groups(session, clock.now()) == {G.GMAIL}
    clock.advance(timedelta(seconds=runtime.throttle_seconds - 1))
    assert throttled_groups(session, clock.now()) == {G.GMAIL}
    clock.advance(timedelta(seconds=1))
    assert throttled_groups(session, clock.now()) == set()
    assert group_allowances(session, clock.now(), runtime)[G.GMAIL] is None


def test_a_rate_limit_during_a_throttle_changes_nothing(
    session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    first = throttle_group(session, G.YAHOO, RATE_LIMIT, clock, runtime)
    assert first is not None
    until = first.throttled_until
    clock.advance(timedelta(minutes=1))

    assert throttle_group(session, G.YAHOO, RATE_LIMIT, clock, runtime) is None

    row = session.get(DomainThrottle, G.YAHOO)
    assert row is not None and (row.throttled_until, row.strikes) == (until, 1)


def test_throttles_in_a_row_double_and_are_forgotten_after_a_quiet_day(
    session: Session, clock: FixedClock, runtime: RuntimeSettings
) -> None:
    base = timedelta(seconds=runtime.throttle_seconds)
    lengths = []
    for _ in range(6):
        throttle = throttle_group(session, G.OUTLOOK, RATE_LIMIT, clock, runtime)
        assert throttle is not None
        lengths.append(throttle.throttled_until - clock.now())
        clock.advance(throttle.throttled_until - clock.now())  # rate-limited again at once
    assert lengths == [base, 2 * base, 4 * base, 8 * base, MAX_THROTTLE, MAX_THROTTLE]

    clock.advance(STRIKES_FORGOTTEN_AFTER)
    again = throttle_group(session, G.OUTLOOK, RATE_LIMIT, clock, runtime)
    assert again is not None and again.strikes == 1
    assert again.throttled_until - clock.now() == base
    # Other groups are untouched.
    assert throttled_groups(session, clock.now()) == {G.OUTLOOK}
