"""Benchmark: build N finished messages, one per contact, in one process.

    .venv/bin/python bench/render.py [--messages 20000] [--dkim none|rsa|ed25519]
                                     [--database URL]

``--database`` as in ``bench_support``: a fresh SQLite file by default, or a
fresh database created on the given PostgreSQL server and dropped after.

Set-up (not timed): a sender profile, an 8 KB HTML template with 10 links
and 5 placeholders, a newsletter campaign and its mass email, and N contacts
written with one bulk INSERT; the contacts are then read back. Timed: the
``MessageFactory`` (compile once, skeleton once, DKIM key parsed once) and
``MessageFactory.build`` for every contact: render, sign 13 link tokens (10
clicks, opt-out, view online, mailto), compose and, with ``--dkim``, sign
with a key generated here. Target: at least 1,500 messages/s per core
without DKIM (docs/messages.md). The CPU time is logged too: on a busy
machine it tells the work from the waiting.

The last line printed is one JSON object:
``{"messages": …, "dkim": "none"|"rsa"|"ed25519", "seconds": …,
"messages_per_second": …, "database": "sqlite"|"postgresql"}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from flask import current_app
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.models import (
    Campaign,
    CampaignType,
    Contact,
    EmailTemplate,
    MassEmail,
    SenderProfile,
)
from app.services.composition import DkimKey
from app.services.messages import MessageFactory
from app.services.runtime_settings import seed_runtime_settings, update_runtime_settings
from bench_support import bench_database, log, migrated_session

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CITIES = ("Denver", "Boulder", "Austin", "Portland", "Chicago", "Seattle")
SECTION = """\
<tr><td class="section">
  <h2>{title}</h2>
  <p>Our team has been busy this month. Here is what changed for customers like
  {{{{ COMPANY }}}} in {{{{ custom['City'] }}}}: faster searches, cleaner reports and a
  calendar of the events we are planning for the spring. Every item links to
  the full story on our website, where you can also leave us feedback.</p>
  <p><a class="button" href="https://www.example.com/news/{slug}?utm_source=newsletter">Read
  about {title_lower}</a> &middot; <a href="https://www.example.com/shop/{slug}">See the
  offer</a></p>
</td></tr>
"""
TITLES = ("Spring listings", "Property search", "Webinars", "Mobile app", "Partner program")
TEMPLATE_HEAD = """\
<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Example Corp newsletter</title>
<style>
  body { font-family: Helvetica, Arial, sans-serif; color: #222222; margin: 0; }
  .wrapper { width: 100%; background: #f4f4f4; }
  .content { max-width: 600px; margin: 0 auto; background: #ffffff; }
  .section { padding: 16px 24px; line-height: 1.5; }
  h1 { font-size: 24px; margin: 0 0 12px; }
  h2 { font-size: 18px; margin: 0 0 8px; color: #0b5394; }
  .button { color: #ffffff; background: #0b5394; padding: 6px 12px; text-decoration: none; }
</style></head>
<body><table class="wrapper" role="presentation"><tr><td>
<table class="content" role="presentation">
<tr><td class="section"><h1>Hello {{ FIRST_NAME }} {{ LAST_NAME }},</h1>
<p>This is the March issue of the Example Corp newsletter, sent to {{ EMAIL }}.</p></td></tr>
"""
TEMPLATE_TAIL = """\
<tr><td class="section"><p>Questions? Just reply to this message: a person reads every
answer. <a href="{{ opt_out_url }}">Unsubscribe</a> at any time.</p></td></tr>
</table></td></tr></table></body></html>
"""


def template_html() -> str:
    """About 8 KB of newsletter HTML: 10 tracked links, 5 placeholders."""
    sections = "".join(
        SECTION.format(title=title, title_lower=title.lower(), slug=title.lower().replace(" ", "-"))
        for title in TITLES
    )
    html = TEMPLATE_HEAD + sections + TEMPLATE_TAIL
    padding = "<!-- " + "layout spacer " * ((8192 - len(html)) // 14) + "-->\n"
    return html.replace("</style></head>", "</style>" + padding + "</head>")


def create_mass_email(session: Session) -> MassEmail:
    profile = SenderProfile(
        name="Bench",
        from_name="Example Corp",
        from_address="news@example.com",
        reply_to_address="maria.alvarez@example.com",
    )
    template = EmailTemplate(
        name="Bench newsletter",
        subject="{{ FIRST_NAME }}, here is what's new at Example Corp",
        body_html=template_html(),
        created_at=NOW,
        updated_at=NOW,
    )
    session.add_all((profile, template))
    session.flush()
    campaign = Campaign(
        name="Bench newsletter",
        type=CampaignType.NEWSLETTER,
        sender_profile_id=profile.id,
        created_at=NOW,
    )
    mass_email = MassEmail(campaign=campaign, name="March", template_id=template.id, created_at=NOW)
    session.add(mass_email)
    session.commit()
    return mass_email


def insert_contacts(session: Session, count: int) -> None:
    """N distinct contacts in one bulk INSERT (batched by SQLAlchemy's
    insertmanyvalues), never one ORM object per row."""
    rows = [
        {
            "email": f"person.{index}@example{index % 50}.com",
            "email_lower": f"person.{index}@example{index % 50}.com",
            "first_name": f"First{index}",
            "last_name": f"Last{index}",
            "company": f"Company {index % 997}",
            "audience_type": "contact",
            "custom_fields": {"City": CITIES[index % len(CITIES)], "plan": "pro"},
            "created_at": NOW,
            "updated_at": NOW,
        }
        for index in range(count)
    ]
    session.execute(insert(Contact), rows)
    session.commit()


def dkim_key(kind: str) -> DkimKey | None:
    if kind == "none":
        return None
    private_key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return DkimKey("bench", "example.com", pem)


def run(session: Session, count: int, kind: str) -> tuple[float, int]:
    """Build every contact's message; return the seconds and total bytes."""
    clock = FixedClock(NOW)
    settings = dataclasses.replace(
        app_settings(current_app), bounce_address="bounces@bounce.example.com"
    )
    seed_runtime_settings(session, settings, clock)
    runtime = update_runtime_settings(
        session,
        {
            "site_url": "https://sluice.example.com",
            "company_name": "Example Corp",
            "postal_address": "100 Example Plaza, Denver, CO 80202, USA",
        },
        clock,
    )
    mass_email = create_mass_email(session)
    insert_contacts(session, count)
    contacts = session.scalars(select(Contact).order_by(Contact.id)).all()
    key = dkim_key(kind)
    total_bytes = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    factory = MessageFactory.for_mass_email(
        session,
        mass_email,
        runtime=runtime,
        settings=settings,
        secret_key=current_app.config["SECRET_KEY"],
        dkim_key=key,
    )
    for item_id, contact in enumerate(contacts, start=1):
        assert contact.email is not None
        message = factory.build(
            queue_item_id=item_id, contact=contact, to_address=contact.email, now=NOW
        )
        total_bytes += len(message.data)
    seconds = time.perf_counter() - started
    log(f"CPU time {time.process_time() - cpu_started:.2f} s")
    log(
        f"{len(factory.compiled.links)} tracked links, template "
        f"{len(mass_email.template.body_html if mass_email.template else '')} characters, "
        f"average message {total_bytes / max(count, 1):,.0f} bytes"
    )
    return seconds, total_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--dkim", choices=("none", "rsa", "ed25519"), default="none")
    parser.add_argument("--database", help="SQLite or PostgreSQL (admin) URL, or 'postgresql'")
    arguments = parser.parse_args()

    with (
        bench_database(arguments.database) as database_url,
        migrated_session(database_url) as session,
    ):
        seconds, _ = run(session, arguments.messages, arguments.dkim)
    result = {
        "messages": arguments.messages,
        "dkim": arguments.dkim,
        "seconds": round(seconds, 2),
        "messages_per_second": round(arguments.messages / seconds),
        "database": make_url(database_url).get_backend_name(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
