"""Benchmark: server time of the web UI's pages on a big database.

``--page contacts`` (the contacts pages) or ``--page results`` (the results,
recipients and dashboard pages of a mass email, ``bench/ui_results.py``):
builds a fresh, migrated database and fills it inside the database
(``bench_support``: PostgreSQL ``generate_series``, SQLite a recursive CTE):

- N contacts (``insert_contacts``), named from 40 first names and 60 last
  names (``name_contacts``), in 100 companies;
- the five lists of ``build_lists`` (three of about N/2 members, two of
  about N/20);
- one sent mass email with a campaign log of one "sent" row for every 10th
  contact, one "opened" for every 30th, one "clicked" for every 90th, and
  ``--activity`` rows (sent, opened, clicked in turn) for the contact whose
  page is timed;

then runs ``ANALYZE`` and times each page through Flask's test client as a
logged-in marketer, outside any application context (as a real request):
the time from the request to the rendered page, the whole server side
(routing, log-in check, queries, template). Each page is requested
``--repeat`` times after one warm-up request; the figures are p50, p95 and
max in milliseconds.

Usage::

    .venv/bin/python bench/ui.py --page contacts [--database URL|postgresql]
        [--contacts N] [--repeat R]

Target (PostgreSQL, 1,000,000 contacts): p95 at most 200 ms for every
page. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import JSON, case, insert, literal, select, text, update
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from app import MIGRATIONS_DIR, create_app
from app.clock import FixedClock
from app.extensions import db
from app.models import (
    Campaign,
    CampaignLogEntry,
    Contact,
    MassEmail,
    MassEmailStatus,
    Role,
    User,
)
from app.models.base import UTCDateTime
from bench_support import (
    NOW,
    bench_database,
    build_lists,
    insert_contacts,
    log,
    number_series,
    peak_rss_mb,
)
from config import load_settings

FIRST_NAMES = [
    "Ann",
    "Bob",
    "Cid",
    "Dee",
    "Eve",
    "Fay",
    "Gus",
    "Hal",
    "Ida",
    "Jon",
    "Kim",
    "Lea",
    "Max",
    "Ned",
    "Ola",
    "Pia",
    "Quinn",
    "Rob",
    "Sue",
    "Tom",
    "Una",
    "Vic",
    "Wes",
    "Xia",
    "Yan",
    "Zoe",
    "Anna",
    "Boris",
    "Carla",
    "Dirk",
    "Elena",
    "Frank",
    "Greta",
    "Hugo",
    "Irene",
    "Jonas",
    "Karin",
    "Lukas",
    "Marta",
    "Nils",
]
LAST_NAMES = [
    "Smith",
    "Jones",
    "Brown",
    "Taylor",
    "Wilson",
    "Davies",
    "Evans",
    "Thomas",
    "Johnson",
    "Roberts",
    "Walker",
    "Wright",
    "Robinson",
    "Thompson",
    "White",
    "Hughes",
    "Edwards",
    "Green",
    "Hall",
    "Wood",
    "Harris",
    "Lewis",
    "Martin",
    "Jackson",
    "Clarke",
    "Clark",
    "Turner",
    "Hill",
    "Scott",
    "Cooper",
    "Morris",
    "Ward",
    "Moore",
    "King",
    "Watson",
    "Baker",
    "Harrison",
    "Morgan",
    "Patel",
    "Young",
    "Allen",
    "Mitchell",
    "James",
    "Anderson",
    "Phillips",
    "Lee",
    "Bell",
    "Parker",
    "Davis",
    "Miller",
    "Schmidt",
    "Meyer",
    "Weber",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
]
PASSWORD = "bench password, not a secret"
MARKETER = "bench@example.com"


@dataclass(frozen=True)
class Scene:
    contact_id: int
    list_id: int
    mass_email_id: int


def _pick(names: list[str], key: Any) -> Any:
    return case(
        *((key == index, literal(name)) for index, name in enumerate(names)), else_=literal("")
    )


def name_contacts(session: Session) -> None:
    """First and last names for every contact, one ``UPDATE``."""
    session.execute(
        update(Contact).values(
            first_name=_pick(FIRST_NAMES, Contact.id % len(FIRST_NAMES)),
            last_name=_pick(LAST_NAMES, (Contact.id // len(FIRST_NAMES)) % len(LAST_NAMES)),
        )
    )


def campaign_log(session: Session, count: int, contact_id: int, activity: int) -> int:
    """A sent mass email and its campaign log (see the module); its id."""
    campaign = Campaign(name="Bench campaign", created_at=NOW)
    session.add(campaign)
    session.flush()
    mass_email = MassEmail(
        campaign_id=campaign.id,
        name="Bench mass email",
        status=MassEmailStatus.COMPLETE,
        created_at=NOW,
        queue_built_at=NOW,
    )
    session.add(mass_email)
    session.flush()
    for event, every in (("sent", 10), ("opened", 30), ("clicked", 90)):
        series = number_series(session, count // every)
        rows = select(
            literal(mass_email.id),
            series.c.value * every,
            literal(event),
            literal(NOW, UTCDateTime()),
            literal({}, JSON),
        )
        session.execute(
            insert(CampaignLogEntry).from_select(
                ["mass_email_id", "contact_id", "event", "occurred_at", "detail"], rows
            )
        )
    series = number_series(session, activity)
    n = series.c.value
    events = case((n % 3 == 0, literal("sent")), (n % 3 == 1, literal("opened")), else_="clicked")
    rows = select(
        literal(mass_email.id),
        literal(contact_id),
        events,
        literal(NOW, UTCDateTime()),
        literal({"user_agent": "bench"}, JSON),
    )
    session.execute(
        insert(CampaignLogEntry).from_select(
            ["mass_email_id", "contact_id", "event", "occurred_at", "detail"], rows
        )
    )
    return mass_email.id


def generate(app: Flask, count: int, activity: int) -> Scene:
    with app.app_context():
        session = db.session()
        started = time.perf_counter()
        insert_contacts(session, count)
        name_contacts(session)
        targets, _excluding = build_lists(session, FixedClock(NOW))
        contact_id = count // 2 + 1
        mass_email_id = campaign_log(session, count, contact_id, activity)
        session.add(
            User(
                email=MARKETER,
                email_lower=MARKETER,
                password_hash=generate_password_hash(PASSWORD),
                role=Role.MARKETER,
                active=True,
                created_at=NOW,
            )
        )
        session.commit()
        session.execute(text("ANALYZE"))
        session.commit()
        seconds = time.perf_counter() - started
        log(f"generated {count:,} contacts, lists and the log in {seconds:.1f} s")
        return Scene(contact_id, targets[0], mass_email_id)


def logged_in_client(app: Flask) -> FlaskClient:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = client.post(
        "/login", data={"email": MARKETER, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def contacts_pages(scene: Scene, count: int) -> dict[str, str]:
    return {
        "contacts: first page": "/contacts",
        "contacts: deep page": f"/contacts?before={count // 2}",
        "contacts: search address prefix": "/contacts?q=user12345",
        "contacts: search last name": "/contacts?q=wagner",
        "contacts: search first and last name": "/contacts?q=nils+wag",
        "contacts: search company": "/contacts?q=company+57",
        "contacts: search rare prefix": "/contacts?q=zz",
        "contacts: filter invalid": "/contacts?status=invalid",
        "contacts: filter list and opted out": f"/contacts?list={scene.list_id}&opt=out",
        "contact page": f"/contacts/{scene.contact_id}",
        "contact page: older activity": f"/contacts/{scene.contact_id}?before=0",
        "lists": "/lists",
        "list page": f"/lists/{scene.list_id}",
        "list page: deep": f"/lists/{scene.list_id}?before={count // 2}",
        "suppression": "/suppression",
    }


PAGES: dict[str, Callable[[Scene, int], dict[str, str]]] = {"contacts": contacts_pages}


def time_page(client: FlaskClient, path: str, repeat: int) -> dict[str, float]:
    response = client.get(path)  # warm-up: plans, template compilation
    assert response.status_code == 200, (path, response.status_code)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, int(len(times) * 0.95 + 0.5) - 1)], 1),
        "max_ms": round(times[-1], 1),
    }


def run(database_url: str, page: str, count: int, repeat: int, activity: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sluice-bench-instance-") as instance:
        settings = load_settings(
            environ={},
            database_url=database_url,
            instance_path=instance,
            secret_key="bench-secret-key-not-for-production",
        )
        app = create_app(settings)
        with app.app_context():
            upgrade(directory=str(MIGRATIONS_DIR))
            dialect = db.engine.dialect.name
        scene = generate(app, count, activity)
        client = logged_in_client(app)
        results = {}
        for name, given in PAGES[page](scene, count).items():
            path = given
            if name == "contact page: older activity":
                # The cursor of the second page of the activity log.
                body = client.get(f"/contacts/{scene.contact_id}").get_data(as_text=True)
                cursor = body.split("?before=", 1)[1].split('"', 1)[0]
                path = f"/contacts/{scene.contact_id}?before={cursor}"
            results[name] = time_page(client, path, repeat) | {"path": path}
            log(f"{name}: {results[name]}")
        with app.app_context():
            db.engine.dispose()
    return {"database": dialect, "pages": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", choices=sorted([*PAGES, "results"]), default="contacts")
    parser.add_argument("--database", help="SQLite or PostgreSQL (admin) URL, or 'postgresql'")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--activity", type=int, default=500, help="log rows of the timed contact")
    parser.add_argument("--recipients", type=int, default=100_000, help="results: per mass email")
    parser.add_argument("--earlier", type=int, default=2, help="results: earlier mass emails")
    args = parser.parse_args()
    if args.page == "results":
        # The results, recipients and dashboard pages: bench/ui_results.py.
        from ui_results import run as run_results

        with bench_database(args.database) as url:
            figures = run_results(url, args.contacts, args.recipients, args.repeat, args.earlier)
        print(json.dumps({"page": "results", **figures}))
        return
    with bench_database(args.database) as url:
        outcome = run(url, args.page, args.contacts, args.repeat, args.activity)
    worst = max(page["p95_ms"] for page in outcome["pages"].values())
    result = {
        "page": args.page,
        "contacts": args.contacts,
        "database": outcome["database"],
        "repeat": args.repeat,
        "worst_p95_ms": worst,
        "target_p95_ms": 200,
        "pages": {name: figures["p95_ms"] for name, figures in outcome["pages"].items()},
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
