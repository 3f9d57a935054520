"""Benchmark: build the queue of a mass email over N contacts.

Builds a fresh, migrated database and fills it inside the database with
``bench_support.generate_audience`` (N contacts, three overlapping target
lists of about N/2, two excluding lists of about N/20, ``ANALYZE``), then
schedules a mass email on those lists through the services (pre-flight,
snapshot) and times ``build_queue`` alone: the one ``INSERT … SELECT`` of
the audience into queue items and the count per status.

Usage::

    .venv/bin/python bench/queue_build.py [--database URL|postgresql] [--contacts N]

Without ``--database`` a temporary SQLite file is used; a PostgreSQL URL is
an admin URL on whose server a throw-away database is created (see
``bench_support``).

Target (PostgreSQL, 1,000,000 contacts): at most 60 s. The last line is one
JSON object: contacts, queued, seconds, peak_rss_mb, database.
"""

from __future__ import annotations

import argparse
import json
import time

from flask import current_app
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.models import MassEmail
from app.services.campaigns import (
    TemplateInput,
    add_mass_email,
    create_campaign,
    create_sender_profile,
    save_template,
    schedule_mass_email,
)
from app.services.queue_build import QueueBuildResult, build_queue
from app.services.runtime_settings import (
    get_runtime_settings,
    seed_runtime_settings,
    update_runtime_settings,
)
from bench_support import NOW, bench_database, generate_audience, log, migrated_session, peak_rss_mb

SECRET_KEY = "bench-secret-key-not-for-production"


def scheduled_mass_email(
    session: Session, targets: list[int], excluding: list[int], clock: FixedClock
) -> MassEmail:
    """A mass email on the generated lists, scheduled to start now."""
    settings = app_settings(current_app)
    seed_runtime_settings(session, settings, clock)
    # CAN-SPAM footer: the pre-flight refuses to schedule without it.
    update_runtime_settings(
        session, {"company_name": "Bench Corp", "postal_address": "1 Bench Street"}, clock
    )
    profile = create_sender_profile(
        session, "News", "Example News", "news@example.com", "team@example.com"
    )
    template = save_template(
        session,
        TemplateInput(
            name="Bench",
            subject="News for {{ FIRST_NAME }}",
            body_html='<p>Hello {{ FIRST_NAME }}</p><p><a href="https://example.com/">Shop</a></p>',
            body_text=None,
            header_logo_url="",
            footer_html="",
        ),
        clock,
    )
    campaign = create_campaign(
        session,
        name="Bench",
        type="newsletter",
        target_list_ids=targets,
        excluding_list_ids=excluding,
        sender_profile_id=profile.id,
        clock=clock,
    )
    mass_email = add_mass_email(session, campaign, template_id=template.id, clock=clock)
    schedule_mass_email(
        session,
        mass_email,
        start_at=None,
        can_spam_confirmed=True,
        runtime=get_runtime_settings(session),
        settings=settings,
        secret_key=SECRET_KEY,
        clock=clock,
    )
    session.commit()
    return mass_email


def run(database_url: str, count: int) -> tuple[QueueBuildResult, float, str]:
    clock = FixedClock(NOW)
    with migrated_session(database_url) as session:
        dialect = session.get_bind().dialect.name
        targets, excluding = generate_audience(session, count)
        started = time.perf_counter()
        mass_email = scheduled_mass_email(session, targets, excluding, clock)
        log(f"scheduled (pre-flight, snapshot) in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        result = build_queue(session, mass_email, clock)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        session.commit()
        log(f"commit took {time.perf_counter() - started:.2f} s")
    return result, seconds, dialect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="SQLite or PostgreSQL (admin) URL, or 'postgresql'")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    args = parser.parse_args()
    with bench_database(args.database) as url:
        result, seconds, dialect = run(url, args.contacts)
    per_status = {status.value: count for status, count in result.counts.items()}
    log(f"inserted {result.inserted:,}; per status: {per_status}")
    print(
        json.dumps(
            {
                "contacts": args.contacts,
                "queued": result.queued,
                "seconds": round(seconds, 3),
                "peak_rss_mb": peak_rss_mb(),
                "database": dialect,
            }
        )
    )


if __name__ == "__main__":
    main()
