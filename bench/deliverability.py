"""Benchmark: SpamAssassin's score of the demo campaign's message.

    .venv/bin/python bench/deliverability.py [--database URL]

``--database`` as in ``bench_support``. The runtime settings are seeded as
``sluice init`` does, the demo data is loaded (``sluice demo``), and the demo
campaign's draft mass email is built for its first recipient as a real send
(not a test: no "[TEST]" subject) from an HTTPS site, so List-Unsubscribe-Post
is present. ``spamassassin -L -t -x`` scores it: local rules only, no network
tests. Target: a score of at most 1.0.

Prints the rules that fired; the last line is one JSON object:
``{"score": …, "threshold": …, "rules": […]}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import SystemClock
from app.models import Campaign, MassEmail
from app.services.demo import CAMPAIGN_NAME, load_demo_data
from app.services.messages import MessageFactory, default_preview_contact
from app.services.runtime_settings import seed_runtime_settings, update_runtime_settings
from app.services.spam_score import SpamScore, spam_score
from bench_support import bench_database, log, migrated_session

SITE_URL = "https://sluice.example.com"
BOUNCE_ADDRESS = "bounces@bounce.example.com"


def demo_message(session: Session) -> bytes:
    """The demo mass email as its first recipient would receive it."""
    clock = SystemClock()
    settings = dataclasses.replace(app_settings(current_app), bounce_address=BOUNCE_ADDRESS)
    seed_runtime_settings(session, settings, clock)  # as `sluice init` does
    log(load_demo_data(session, clock))
    runtime = update_runtime_settings(session, {"site_url": SITE_URL}, clock)
    campaign = session.scalars(select(Campaign).where(Campaign.name == CAMPAIGN_NAME)).one()
    mass_email: MassEmail = campaign.mass_emails[0]
    contact = default_preview_contact(session, campaign)
    if contact is None or contact.email is None:
        raise SystemExit("the demo campaign has no recipient")
    factory = MessageFactory.for_mass_email(
        session,
        mass_email,
        runtime=runtime,
        settings=settings,
        secret_key=current_app.config["SECRET_KEY"],
        dkim_key=None,
    )
    message = factory.build(
        queue_item_id=1, contact=contact, to_address=contact.email, now=clock.now()
    )
    return message.data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", help="SQLite or PostgreSQL (admin) URL, or 'postgresql'")
    parser.add_argument("--show", action="store_true", help="print the message to stderr")
    arguments = parser.parse_args()

    with (
        bench_database(arguments.database) as database_url,
        migrated_session(database_url) as session,
    ):
        message = demo_message(session)
    if arguments.show:
        log(message.decode("utf-8", "replace"))
    score: SpamScore | None = spam_score(message)
    if score is None:
        sys.exit("SpamAssassin is not installed (spamassassin not on PATH)")
    for rule in score.rules:
        print(f"fired: {rule}")
    print(json.dumps({"score": score.score, "threshold": score.threshold, "rules": score.rules}))


if __name__ == "__main__":
    main()
