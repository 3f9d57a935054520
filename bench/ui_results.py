"""Benchmark: server time of the results pages of a 100,000-recipient mass
email (issue 8's ``bench/ui.py``, results and recipients part).

Builds a fresh, migrated database: N contacts (``bench_support``'s
generator, default 1,000,000), a target list of the first R of them
(default 100,000), a mass email scheduled and its queue built through the
services, ``--earlier`` times (default 2) before the one measured, so that
its items are not the table's first and the dashboard's recent results
read three queues; for each, set-based and not timed, what sending and engagement
leave behind: about 2 % hard and 1 % soft bounces, 30 % opened, 10 %
clicked, 0.5 % unsubscribed, 0.1 % spam reports, 1 % failed, the rest
sent (the contacts without an address, invalid or opted out keep the
status the queue build gave them), with their campaign-log rows (one
``sent`` per accepted item, an ``opened`` per opener and a ``clicked``
per clicker, spread over 48 hours). ``ANALYZE``.

Then, through Flask's test client with a logged-in marketer (the whole
WSGI stack, no network), each page ``--runs`` times after two warm-ups:

- ``results``: the summary page (counts and rates, chart data);
- ``chart``: the SVG;
- ``recipients_first``: the recipient table's first page;
- ``recipients_filtered``: the first page of ``opened`` and of
  ``bounced_hard``;
- ``recipients_deep``: the page after the 99,000th item, all and opened;
- ``recipient``: one recipient's page;
- ``dashboard``: the dashboard (recent results of this mass email);

and the campaign-log CSV once, read as a stream (rows/s and how much the
peak RSS grew while it streamed).

Usage::

    .venv/bin/python bench/ui_results.py [--database URL|postgresql]
        [--contacts N] [--recipients R] [--runs K] [--earlier E]

Target (PostgreSQL, 1,000,000 contacts, 100,000 recipients): p95 at most
200 ms for every page. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import JSON, ColumnElement, and_, case, func, insert, literal, select, text, update
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from app import MIGRATIONS_DIR, create_app
from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.extensions import db
from app.models import (
    CampaignLogEntry,
    Contact,
    MassEmail,
    MassEmailStatus,
    QueueItem,
    Role,
    User,
)
from app.models.base import UTCDateTime
from app.services.campaigns import (
    TemplateInput,
    add_mass_email,
    create_campaign,
    create_sender_profile,
    save_template,
    schedule_mass_email,
)
from app.services.queue_build import build_queue
from app.services.runtime_settings import (
    get_runtime_settings,
    seed_runtime_settings,
    update_runtime_settings,
)
from app.services.target_lists import add_members, create_target_list
from bench_support import NOW, bench_database, insert_contacts, log, peak_rss_mb
from config import load_settings

SECRET_KEY = "bench-secret-key-not-for-production"
PASSWORD = "bench password, long enough"
EMAIL = "marketer@example.com"
HOURS = 48


def make_app(database_url: str, instance: str) -> Flask:
    settings = load_settings(
        environ={},
        database_url=database_url,
        instance_path=instance,
        secret_key=SECRET_KEY,
        bounce_address="bounces@bounce.example.com",
        default_company_name="Bench Corp",
        default_postal_address="1 Bench Street",
    )
    return create_app(settings)


def scheduled_mass_email(
    app: Flask, session: Session, recipients: int, clock: FixedClock, label: str
) -> int:
    targets = create_target_list(session, f"Bench recipients {label}", "", clock)
    add_members(session, targets, select(Contact.id).where(Contact.id <= recipients), clock)
    profile = create_sender_profile(
        session, f"News {label}", "Example News", "news@example.com", "team@example.com"
    )
    template = save_template(
        session,
        TemplateInput(
            name=f"Bench {label}",
            subject="News for {{ FIRST_NAME }}",
            body_html='<p>Hello {{ FIRST_NAME }}</p><p><a href="https://example.com/">Shop</a></p>',
        ),
        clock,
    )
    campaign = create_campaign(
        session,
        name="Bench",
        type="newsletter",
        target_list_ids=[targets.id],
        excluding_list_ids=[],
        sender_profile_id=profile.id,
        clock=clock,
    )
    mass_email = add_mass_email(
        session, campaign, template_id=template.id, name=f"Bench mass email {label}", clock=clock
    )
    schedule_mass_email(
        session,
        mass_email,
        start_at=None,
        can_spam_confirmed=True,
        runtime=get_runtime_settings(session),
        settings=app.config["SLUICE_SETTINGS"],
        secret_key=SECRET_KEY,
        clock=clock,
    )
    build_queue(session, mass_email, clock)
    session.commit()
    return mass_email.id


def outcome(item_id: ColumnElement[int]) -> dict[str, ColumnElement[bool]]:
    """Which queued item ends how, by its id (see the module's rules)."""
    per_100, per_1000 = item_id % 100, item_id % 1000
    return {
        "bounced_hard": per_100 < 2,
        "bounced_soft": per_100 == 2,
        "failed": per_100 == 3,
        "spam_report": per_1000 == 4,
        "unsubscribed": item_id % 200 == 5,
        "clicked": and_(per_100 >= 10, per_100 < 20),
        "opened": and_(per_100 >= 20, per_100 < 40),
    }


def settle(session: Session, mass_email_id: int) -> None:
    """Statuses, times and campaign-log rows, set-based (not timed)."""
    started = time.perf_counter()
    of_mass_email = QueueItem.mass_email_id == mass_email_id
    queued = and_(of_mass_email, QueueItem.status == "queued")
    rules = outcome(QueueItem.id)
    status = case(
        *(
            (rule, literal(name.removesuffix("_hard").removesuffix("_soft")))
            for name, rule in rules.items()
        ),
        else_=literal("sent"),
    )
    kind = case(
        (rules["bounced_hard"], literal("hard")),
        (rules["bounced_soft"], literal("soft")),
        else_=None,
    )
    for hour in range(HOURS):
        in_hour = and_(queued, QueueItem.id % HOURS == hour)
        sent_at = NOW + timedelta(minutes=hour % 60)
        engaged_at = NOW + timedelta(hours=hour, minutes=7)
        session.execute(
            update(QueueItem)
            .where(in_hour)
            .values(
                status=status,
                bounce_kind=kind,
                sent_at=case((rules["failed"], None), else_=literal(sent_at, UTCDateTime())),
                last_code=case((rules["failed"], 554), else_=250),
                last_reply=case(
                    (rules["failed"], "5.7.1 Relay access denied"),
                    else_="2.0.0 Ok: queued",
                ),
                attempts=1,
                opened_at=case(
                    (rules["opened"] | rules["clicked"], literal(engaged_at, UTCDateTime())),
                    else_=None,
                ),
                open_count=case((rules["opened"] | rules["clicked"], 1), else_=0),
                clicked_at=case(
                    (
                        rules["clicked"],
                        literal(engaged_at + timedelta(minutes=3), UTCDateTime()),
                    ),
                    else_=None,
                ),
                click_count=case((rules["clicked"], 1), else_=0),
                unsubscribed_at=case(
                    (rules["unsubscribed"], literal(engaged_at, UTCDateTime())), else_=None
                ),
            )
        )
    log_rows = [
        ("sent", QueueItem.sent_at, QueueItem.sent_at.is_not(None), {}),
        ("opened", QueueItem.opened_at, QueueItem.opened_at.is_not(None), {"user_agent": "Mail"}),
        (
            "clicked",
            QueueItem.clicked_at,
            QueueItem.clicked_at.is_not(None),
            {"link_id": 0, "url": "https://example.com/"},
        ),
        (
            "bounced_hard",
            QueueItem.sent_at,
            and_(QueueItem.status == "bounced", QueueItem.bounce_kind == "hard"),
            {"status": "5.1.1", "diagnostic": "550 5.1.1 User unknown"},
        ),
    ]
    for event, occurred_at, condition, detail in log_rows:
        rows = select(
            QueueItem.mass_email_id,
            QueueItem.id,
            QueueItem.contact_id,
            literal(event),
            occurred_at,
            literal(detail, JSON),
        ).where(of_mass_email, condition)
        session.execute(
            insert(CampaignLogEntry).from_select(
                ["mass_email_id", "queue_item_id", "contact_id", "event", "occurred_at", "detail"],
                rows,
            )
        )
    mass_email = session.get(MassEmail, mass_email_id)
    assert mass_email is not None
    mass_email.status = MassEmailStatus.COMPLETE
    session.commit()
    session.execute(text("ANALYZE"))
    session.commit()
    log(f"settled the queue and its log in {time.perf_counter() - started:.1f} s")


def add_marketer(session: Session) -> None:
    session.add(
        User(
            email=EMAIL,
            email_lower=EMAIL,
            password_hash=generate_password_hash(PASSWORD),
            role=Role.MARKETER,
            active=True,
            created_at=NOW,
        )
    )
    session.commit()


def logged_in(app: Flask) -> FlaskClient:
    import re

    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    response = client.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": match.group(1)}
    )
    assert response.status_code == 302, response.status_code
    return client


def timed(client: FlaskClient, url: str, runs: int) -> dict[str, float]:
    for _ in range(2):
        assert client.get(url).status_code == 200, url
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, round(0.95 * len(times)) - 1)], 1),
        "max_ms": round(times[-1], 1),
    }


def stream_csv(client: FlaskClient, url: str) -> dict[str, float]:
    before = peak_rss_mb()
    started = time.perf_counter()
    response = client.get(url, buffered=False)
    lines = 0
    for chunk in response.response:
        lines += chunk.count(b"\n") if isinstance(chunk, bytes) else chunk.count("\n")
    response.close()
    seconds = time.perf_counter() - started
    return {
        "rows": lines - 1,
        "seconds": round(seconds, 2),
        "rows_per_s": round((lines - 1) / seconds),
        "peak_rss_growth_mb": round(peak_rss_mb() - before, 1),
    }


def pages(session: Session, mass_email_id: int) -> dict[str, str]:
    ids = select(QueueItem.id).where(QueueItem.mass_email_id == mass_email_id)
    deep = session.scalar(ids.order_by(QueueItem.id).offset(99_000).limit(1)) or 0
    opened_deep = (
        session.scalar(
            ids.where(QueueItem.status == "opened").order_by(QueueItem.id).offset(19_000).limit(1)
        )
        or 0
    )
    some = session.scalar(ids.where(QueueItem.status == "clicked").limit(1))
    base = f"/results/{mass_email_id}"
    return {
        "results": base,
        "chart": f"{base}/chart.svg",
        "recipients_first": f"{base}/recipients",
        "recipients_filtered_opened": f"{base}/recipients?status=opened",
        "recipients_filtered_bounced_hard": f"{base}/recipients?status=bounced_hard",
        "recipients_deep": f"{base}/recipients?after={deep}",
        "recipients_deep_opened": f"{base}/recipients?status=opened&after={opened_deep}",
        "recipient": f"{base}/recipients/{some}",
        "dashboard": "/",
    }


def run(
    database_url: str, contacts: int, recipients: int, runs: int, earlier: int
) -> dict[str, Any]:
    clock = FixedClock(NOW + timedelta(hours=HOURS + 1))
    with tempfile.TemporaryDirectory(prefix="sluice-bench-instance-") as instance:
        app = make_app(database_url, instance)
        app.config[CLOCK_CONFIG_KEY] = clock
        with app.app_context():
            upgrade(directory=str(MIGRATIONS_DIR))
            session = db.session()
            dialect = session.get_bind().dialect.name
            started = time.perf_counter()
            insert_contacts(session, contacts)
            session.commit()
            log(f"generated {contacts:,} contacts in {time.perf_counter() - started:.1f} s")
            seed_runtime_settings(session, app.config["SLUICE_SETTINGS"], clock)
            update_runtime_settings(session, {"open_tracking": True}, clock)
            # Earlier mass emails of the same size first: the measured one's
            # queue items are not the table's first rows, as in real life.
            for number in range(earlier + 1):
                started = time.perf_counter()
                mass_email_id = scheduled_mass_email(
                    app, session, recipients, FixedClock(NOW), str(number + 1)
                )
                log(f"scheduled and built a queue in {time.perf_counter() - started:.1f} s")
                settle(session, mass_email_id)
            add_marketer(session)
            urls = pages(session, mass_email_id)
            items = session.scalar(
                select(func.count())
                .select_from(QueueItem)
                .where(QueueItem.mass_email_id == mass_email_id)
            )
            db.session.remove()
        client = logged_in(app)
        timings: dict[str, Any] = {}
        for name, url in urls.items():
            timings[name] = timed(client, url, runs)
            log(f"{name}: {timings[name]}")
        export = stream_csv(client, f"/results/{mass_email_id}/log.csv")
        log(f"log.csv: {export}")
        with app.app_context():
            db.engine.dispose()
    measure: Callable[[dict[str, float]], float] = lambda timing: timing["p95_ms"]  # noqa: E731
    return {
        "database": dialect,
        "contacts": contacts,
        "recipients": items,
        "earlier_mass_emails": earlier,
        "runs": runs,
        "pages": timings,
        "worst_p95_ms": max(measure(timing) for timing in timings.values()),
        "csv_export": export,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="SQLite or PostgreSQL (admin) URL, or 'postgresql'")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--earlier", type=int, default=2, help="earlier mass emails, same size")
    args = parser.parse_args()
    with bench_database(args.database) as url:
        result = run(url, args.contacts, args.recipients, args.runs, args.earlier)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
