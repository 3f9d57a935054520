"""Migrations: the migrated schema is the models' schema, ``sluice init``
upgrades a database in place without losing data, and downgrade works."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from flask_migrate import downgrade, upgrade

from app import MIGRATIONS_DIR
from app.cli import build_cli
from app.extensions import db
from app.models import (
    CampaignLogEntry,
    Contact,
    DomainGroup,
    MassEmail,
    QueueItem,
    Role,
    SendAttempt,
    TargetListMember,
    TrackedLink,
    User,
)

FIRST_REVISION = "0001"
WHEN = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

# The tables as revision 0001 created them, written without the models so this
# test keeps describing that old schema after the models move on.
contacts_0001 = sa.table(
    "contacts",
    sa.column("id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("email_lower", sa.String),
    sa.column("first_name", sa.String),
    sa.column("last_name", sa.String),
    sa.column("company", sa.String),
    sa.column("audience_type", sa.String),
    sa.column("custom_fields", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("email_status", sa.String),
    sa.column("email_status_reason", sa.Text),
    sa.column("opted_out", sa.Boolean),
    sa.column("opted_out_at", sa.DateTime(timezone=True)),
    sa.column("opt_out_source", sa.String),
)
target_lists_0001 = sa.table(
    "target_lists",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("description", sa.Text),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
members_0001 = sa.table(
    "target_list_members",
    sa.column("target_list_id", sa.Integer),
    sa.column("contact_id", sa.Integer),
    sa.column("added_at", sa.DateTime(timezone=True)),
)


def contact_row(contact_id: int, email: str, **extra: Any) -> dict[str, Any]:
    row = {
        "id": contact_id,
        "email": email,
        "email_lower": email.lower(),
        "first_name": "",
        "last_name": "",
        "company": "",
        "audience_type": "contact",
        "custom_fields": {},
        "created_at": WHEN,
        "updated_at": WHEN,
        "email_status": "valid",
        "email_status_reason": "",
        "opted_out": False,
        "opted_out_at": None,
        "opt_out_source": "",
    }
    return row | extra


def schema_differences() -> list[Any]:
    with db.engine.connect() as connection, warnings.catch_warnings():
        # The contacts' search indexes (0013) are on lower(column): SQLite's
        # reflection skips expression indexes and Alembic does not compare
        # them (their own test checks they exist).
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        warnings.filterwarnings("ignore", ".*expression-based index")
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, db.metadata))


# The claim indexes migration 0009 replaces, and those it adds.
INDEXES_BEFORE_0009 = {"ix_queue_items_claimable", "ix_queue_items_claimable_group"}
INDEXES_OF_0009 = {f"ix_queue_items_claimable_{group}" for group in DomainGroup}


# Tables that later migrations create: 0010 (the suppression list and
# bounces), 0011 (the bounce mailbox's checkpoints), 0012 (the log-in rate
# limit), 0013 (the browser import's problem rows), 0014 (the bounce
# digests' progress), 0017 (the password links of invitations and resets).
TABLES_AFTER_0009 = {
    "suppressions",
    "suppression_removals",
    "bounce_messages",
    "bounce_events",
    "bounce_mailbox_checkpoints",
    "login_attempts",
    "bounce_digest_states",
    "contact_import_problems",
    "password_links",
}
# Columns that later migrations add to older tables: 0013, 0016 (the
# runtime settings of a mass email's snapshot), 0017 (a user's time zone).
COLUMNS_AFTER_0009 = {
    ("contact_imports", "csv_header"),
    ("contact_imports", "csv_delimiter"),
    ("mass_emails", "snapshot_company_name"),
    ("mass_emails", "snapshot_postal_address"),
    ("mass_emails", "snapshot_mandatory_opt_out"),
    ("mass_emails", "snapshot_open_tracking"),
    ("users", "time_zone"),
}
# Columns that 0018 (background imports) adds to contact_imports.
COLUMNS_AFTER_0009 |= {
    ("contact_imports", column)
    for column in (
        "state",
        "background",
        "stored_file",
        "encoding",
        "file_size",
        "bytes_done",
        "records_done",
        "locked_by",
        "locked_until",
        "error",
    )
}
# Indexes that later migrations add to older tables: 0013 (contact search),
# 0015 (the results page's recipients by keyset, a recipient's log), 0018
# (pending background imports).
INDEXES_AFTER_0009 = {
    "ix_contacts_first_name_lower",
    "ix_contacts_last_name_lower",
    "ix_contacts_company_lower",
    "ix_queue_items_mass_email_id_id",
    "ix_campaign_log_queue_item_id",
    "ix_contact_imports_background_state",
}


def _of_a_later_table(difference: Any) -> bool:
    kind, subject = difference[0], difference[1]
    if kind == "add_column":
        return (difference[2], difference[3].name) in COLUMNS_AFTER_0009
    if kind == "add_table":
        return subject.name in TABLES_AFTER_0009
    return kind == "add_index" and (
        subject.table.name in TABLES_AFTER_0009 or subject.name in INDEXES_AFTER_0009
    )


def schema_differences_at_0008() -> list[Any]:
    """The schema's differences from the models at revision 0008, besides
    the claim indexes migration 0009 changes (which must still be 0008's)
    and the tables of later migrations."""
    differences = [d for d in schema_differences() if not _of_a_later_table(d)]
    replaced = [
        difference
        for difference in differences
        if (difference[0], difference[1].name) in CHANGED_BY_0009
    ]
    assert {(kind, index.name) for kind, index in replaced} == CHANGED_BY_0009, differences
    return [difference for difference in differences if difference not in replaced]


CHANGED_BY_0009 = {("remove_index", name) for name in INDEXES_BEFORE_0009} | {
    ("add_index", name) for name in INDEXES_OF_0009
}


def current_revisions() -> set[str]:
    with db.engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def head_revisions() -> set[str]:
    return set(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


def test_migrated_schema_matches_the_models(app: Flask) -> None:
    assert current_revisions() == head_revisions()
    assert schema_differences() == []


def test_init_upgrades_a_database_with_data_in_place(empty_app: Flask) -> None:
    upgrade(directory=str(MIGRATIONS_DIR), revision=FIRST_REVISION)
    with db.engine.begin() as connection:
        connection.execute(
            sa.insert(contacts_0001),
            [
                contact_row(1, "Ann@example.com", first_name="Ann", custom_fields={"city": "Den"}),
                contact_row(
                    2, "bob@example.org", opted_out=True, opted_out_at=WHEN, opt_out_source="link"
                ),
            ],
        )
        connection.execute(
            sa.insert(target_lists_0001),
            {
                "id": 1,
                "name": "Customers",
                "description": "",
                "created_at": WHEN,
                "updated_at": WHEN,
            },
        )
        connection.execute(
            sa.insert(members_0001),
            [
                {"target_list_id": 1, "contact_id": 1, "added_at": WHEN},
                {"target_list_id": 1, "contact_id": 2, "added_at": WHEN},
            ],
        )

    result = CliRunner().invoke(build_cli(), ["init"], obj=ScriptInfo(create_app=lambda: empty_app))

    assert result.exit_code == 0, result.output
    assert current_revisions() == head_revisions()
    # Read back through today's models: the old rows must fit the new schema.
    contacts = db.session.scalars(sa.select(Contact).order_by(Contact.id)).all()
    assert [
        (c.email, c.first_name, c.custom_fields, c.opted_out, c.opted_out_at, c.opt_out_source)
        for c in contacts
    ] == [
        ("Ann@example.com", "Ann", {"city": "Den"}, False, None, ""),
        ("bob@example.org", "", {}, True, WHEN, "link"),
    ]
    members = db.session.scalars(
        sa.select(TargetListMember.contact_id).order_by(TargetListMember.contact_id)
    ).all()
    assert members == [1, 2]
    assert db.session.scalar(sa.select(User.role)) == Role.ADMIN
    assert schema_differences() == []


def test_downgrade_to_base_and_upgrade_again(empty_app: Flask) -> None:
    upgrade(directory=str(MIGRATIONS_DIR))
    downgrade(directory=str(MIGRATIONS_DIR), revision="base")
    assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
    assert current_revisions() == set()

    upgrade(directory=str(MIGRATIONS_DIR))
    assert current_revisions() == head_revisions()
    assert schema_differences() == []


# Revision 0003's tables that 0004 changes or depends on, without the models.
campaigns_0003 = sa.table(
    "campaigns",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("type", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
mass_emails_0003 = sa.table(
    "mass_emails",
    sa.column("id", sa.Integer),
    sa.column("campaign_id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("status", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
tracked_links_0003 = sa.table(
    "tracked_links",
    sa.column("mass_email_id", sa.Integer),
    sa.column("link_id", sa.Integer),
    sa.column("url", sa.String),
)


def tracked_links() -> list[tuple[int, str, str | None]]:
    db.session.expire_all()
    rows = db.session.scalars(sa.select(TrackedLink).order_by(TrackedLink.link_id)).all()
    return [(link.link_id, link.url, link.name) for link in rows]


def test_0004_keeps_the_tracked_links_of_mail_already_sent(empty_app: Flask) -> None:
    upgrade(directory=str(MIGRATIONS_DIR), revision="0003")
    with db.engine.begin() as connection:
        connection.execute(
            sa.insert(campaigns_0003),
            {"id": 1, "name": "Spring", "type": "email", "created_at": WHEN},
        )
        connection.execute(
            sa.insert(mass_emails_0003),
            {"id": 1, "campaign_id": 1, "name": "March", "status": "complete", "created_at": WHEN},
        )
        connection.execute(
            sa.insert(tracked_links_0003),
            [
                {"mass_email_id": 1, "link_id": 0, "url": "https://example.com/a"},
                {"mass_email_id": 1, "link_id": 1, "url": "https://example.com/b"},
            ],
        )

    upgrade(directory=str(MIGRATIONS_DIR), revision="0004")
    assert tracked_links() == [
        (0, "https://example.com/a", None),
        (1, "https://example.com/b", None),
    ]
    db.session.add(
        TrackedLink(mass_email_id=1, link_id=2, url="https://example.com/promo", name="promo")
    )
    db.session.commit()

    downgrade(directory=str(MIGRATIONS_DIR), revision="0003")
    with db.engine.connect() as connection:
        rows = connection.execute(
            sa.select(tracked_links_0003).order_by(tracked_links_0003.c.link_id)
        ).all()
    assert [tuple(row) for row in rows] == [
        (1, 0, "https://example.com/a"),
        (1, 1, "https://example.com/b"),
        (1, 2, "https://example.com/promo"),
    ]


# Revision 0004's queue items and campaign log, without the models.
queue_items_0004 = sa.table(
    "queue_items",
    sa.column("id", sa.Integer),
    sa.column("mass_email_id", sa.Integer),
    sa.column("contact_id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("status", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("sent_at", sa.DateTime(timezone=True)),
    sa.column("open_count", sa.Integer),
    sa.column("click_count", sa.Integer),
)
campaign_log_0004 = sa.table(
    "campaign_log",
    sa.column("id", sa.Integer),
    sa.column("mass_email_id", sa.Integer),
    sa.column("queue_item_id", sa.Integer),
    sa.column("contact_id", sa.Integer),
    sa.column("event", sa.String),
    sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("detail", sa.JSON),
)


def queue_item_row(item_id: int, contact_id: int | None, email: str, status: str) -> dict[str, Any]:
    sent_at = WHEN if status == "sent" else None
    return {
        "id": item_id,
        "mass_email_id": 1,
        "contact_id": contact_id,
        "email": email,
        "status": status,
        "created_at": WHEN,
        "sent_at": sent_at,
        "open_count": 0,
        "click_count": 0,
    }


def seed_0004_queue() -> None:
    """Contacts, a sent mass email with three queue items (one whose contact
    was deleted) and a log entry pointing at one of them."""
    with db.engine.begin() as connection:
        connection.execute(
            sa.insert(contacts_0001),
            [contact_row(1, "ann@example.com"), contact_row(2, "bob@example.org")],
        )
        connection.execute(
            sa.insert(campaigns_0003),
            {"id": 1, "name": "Spring", "type": "email", "created_at": WHEN},
        )
        connection.execute(
            sa.insert(mass_emails_0003),
            {"id": 1, "campaign_id": 1, "name": "March", "status": "complete", "created_at": WHEN},
        )
        connection.execute(
            sa.insert(queue_items_0004),
            [
                queue_item_row(1, 1, "ann@example.com", "sent"),
                queue_item_row(2, 2, "bob@example.org", "queued"),
                queue_item_row(3, None, "gone@example.net", "sent"),
            ],
        )
        connection.execute(
            sa.insert(campaign_log_0004),
            {
                "id": 1,
                "mass_email_id": 1,
                "queue_item_id": 1,
                "contact_id": 1,
                "event": "sent",
                "occurred_at": WHEN,
                "detail": {},
            },
        )


def test_0005_adds_delivery_columns_to_a_queue_holding_items(empty_app: Flask) -> None:
    upgrade(directory=str(MIGRATIONS_DIR), revision="0004")
    seed_0004_queue()

    upgrade(directory=str(MIGRATIONS_DIR), revision="0005")
    # Read through today's models: later revisions only add to these tables
    # (and change their indexes).
    upgrade(directory=str(MIGRATIONS_DIR))
    assert schema_differences() == []
    items = db.session.scalars(sa.select(QueueItem).order_by(QueueItem.id)).all()
    assert [
        (i.contact_id, i.status, i.attempts, i.last_reply, i.skip_reason, i.next_attempt_at)
        for i in items
    ] == [
        (1, "sent", 0, "", "", None),
        (2, "queued", 0, "", "", None),
        (None, "sent", 0, "", "", None),
    ]
    # The rebuild on SQLite left the log entry pointing at its item.
    assert db.session.scalar(sa.select(CampaignLogEntry.queue_item_id)) == 1
    db.session.commit()
    upgrade(directory=str(MIGRATIONS_DIR))  # later revisions change its indexes
    assert schema_differences() == []
    db.session.add(
        QueueItem(id=4, mass_email_id=1, contact_id=None, email="x@example.net", created_at=WHEN)
    )
    db.session.flush()  # a second NULL contact is allowed
    db.session.add(
        QueueItem(id=5, mass_email_id=1, contact_id=1, email="ann@example.com", created_at=WHEN)
    )
    with pytest.raises(sa.exc.IntegrityError):
        db.session.flush()
    db.session.rollback()
    db.session.add(
        SendAttempt(id=1, queue_item_id=1, mass_email_id=1, runner_id="r1", claimed_at=WHEN)
    )
    db.session.commit()

    downgrade(directory=str(MIGRATIONS_DIR), revision="0004")
    with db.engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                queue_items_0004.c.id, queue_items_0004.c.contact_id, queue_items_0004.c.status
            ).order_by(queue_items_0004.c.id)
        ).all()
        logged = connection.execute(sa.select(campaign_log_0004.c.queue_item_id)).scalar()
        columns = {c["name"] for c in sa.inspect(connection).get_columns("queue_items")}
        tables = set(sa.inspect(connection).get_table_names())
    assert [tuple(row) for row in rows] == [(1, 1, "sent"), (2, 2, "queued"), (3, None, "sent")]
    assert logged == 1
    assert "attempts" not in columns and "send_attempts" not in tables


# Revision 0005's queue items and ledger, as far as 0007 touches them.
queue_items_0005 = sa.table(
    "queue_items",
    sa.column("id", sa.Integer),
    sa.column("mass_email_id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("status", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("open_count", sa.Integer),
    sa.column("click_count", sa.Integer),
)
send_attempts_0005 = sa.table(
    "send_attempts",
    sa.column("id", sa.Integer),
    sa.column("queue_item_id", sa.Integer),
    sa.column("mass_email_id", sa.Integer),
    sa.column("runner_id", sa.String),
    sa.column("claimed_at", sa.DateTime(timezone=True)),
)


def test_0007_gives_the_items_still_to_send_their_domain_group(empty_app: Flask) -> None:
    upgrade(directory=str(MIGRATIONS_DIR), revision="0005")
    rows = [
        (1, "ann@gmail.com", "queued"),
        (2, "bob@Yahoo.co.uk", "queued"),
        (3, "cy@hotmail.com", "sending"),
        (4, "dee@example.com", "queued"),
        (5, "eve@live.tv", "queued"),  # a country code sold as generic
        (6, "fay@gmail.com", "sent"),  # done: stays 'other'
    ]
    with db.engine.begin() as connection:
        connection.execute(
            sa.insert(campaigns_0003),
            {"id": 1, "name": "Spring", "type": "email", "created_at": WHEN},
        )
        connection.execute(
            sa.insert(mass_emails_0003),
            {"id": 1, "campaign_id": 1, "name": "March", "status": "complete", "created_at": WHEN},
        )
        connection.execute(
            sa.insert(queue_items_0005),
            [
                {
                    "id": item_id,
                    "mass_email_id": 1,
                    "email": email,
                    "status": status,
                    "created_at": WHEN,
                    "open_count": 0,
                    "click_count": 0,
                }
                for item_id, email, status in rows
            ],
        )
        connection.execute(
            sa.insert(send_attempts_0005),
            {"id": 1, "queue_item_id": 6, "mass_email_id": 1, "runner_id": "r", "claimed_at": WHEN},
        )

    upgrade(directory=str(MIGRATIONS_DIR))

    assert schema_differences() == []
    groups = db.session.execute(
        sa.select(QueueItem.id, QueueItem.domain_group).order_by(QueueItem.id)
    ).all()
    assert [tuple(row) for row in groups] == [
        (1, "gmail"),
        (2, "yahoo"),
        (3, "outlook"),
        (4, "other"),
        (5, "other"),
        (6, "other"),
    ]
    assert db.session.scalar(sa.select(SendAttempt.domain_group)) == "other"
    db.session.commit()

    downgrade(directory=str(MIGRATIONS_DIR), revision="0005")
    with db.engine.connect() as connection:
        kept = connection.execute(
            sa.select(queue_items_0005.c.id, queue_items_0005.c.email).order_by(
                queue_items_0005.c.id
            )
        ).all()
        columns = {c["name"] for c in sa.inspect(connection).get_columns("queue_items")}
        tables = set(sa.inspect(connection).get_table_names())
    assert [row.email for row in kept] == [email for _, email, _ in rows]
    assert "domain_group" not in columns and "domain_throttles" not in tables


def log_row(entry_id: int, event: str) -> dict[str, Any]:
    return {
        "id": entry_id,
        "mass_email_id": 1,
        "queue_item_id": 1,
        "contact_id": 1,
        "event": event,
        "occurred_at": WHEN,
        "detail": {},
    }


def insert_log_row(entry_id: int, event: str) -> None:
    with db.engine.begin() as connection:
        connection.execute(sa.insert(campaign_log_0004), log_row(entry_id, event))


def log_events() -> list[tuple[int, str]]:
    with db.engine.connect() as connection:
        rows = connection.execute(
            sa.select(campaign_log_0004.c.id, campaign_log_0004.c.event).order_by(
                campaign_log_0004.c.id
            )
        ).all()
    return [(row.id, row.event) for row in rows]


def test_0008_lets_the_log_record_a_resend_and_still_checks_events(empty_app: Flask) -> None:
    upgrade(directory=str(MIGRATIONS_DIR), revision="0004")
    seed_0004_queue()
    upgrade(directory=str(MIGRATIONS_DIR), revision="0005")
    with pytest.raises(sa.exc.IntegrityError):
        insert_log_row(2, "resent")

    upgrade(directory=str(MIGRATIONS_DIR), revision="0008_resend_after_correction")
    assert schema_differences_at_0008() == []
    insert_log_row(2, "resent")
    # The CHECK was replaced, not dropped: an unknown event is still refused.
    with pytest.raises(sa.exc.IntegrityError):
        insert_log_row(3, "bogus")
    # The rebuild on SQLite kept the log and its link to the queue item.
    assert log_events() == [(1, "sent"), (2, "resent")]
    assert db.session.scalar(sa.select(CampaignLogEntry.queue_item_id).limit(1)) == 1
    resent = db.session.scalars(sa.select(QueueItem.resent_at).order_by(QueueItem.id)).all()
    assert resent == [None, None, None]
    db.session.commit()  # PostgreSQL: the downgrade's ALTER TABLE waits for open reads

    downgrade(directory=str(MIGRATIONS_DIR), revision="0005")
    assert log_events() == [(1, "sent")]
    with pytest.raises(sa.exc.IntegrityError):
        insert_log_row(2, "resent")
    with db.engine.connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns("queue_items")}
    assert "resent_at" not in columns and "attempts" in columns


def test_0010_adds_the_bounce_tables_and_the_autoreply_event_and_takes_them_back(
    empty_app: Flask,
) -> None:
    upgrade(directory=str(MIGRATIONS_DIR), revision="0004")
    seed_0004_queue()
    upgrade(directory=str(MIGRATIONS_DIR), revision="0009_claim_index")
    with pytest.raises(sa.exc.IntegrityError):
        insert_log_row(2, "autoreply")

    upgrade(directory=str(MIGRATIONS_DIR), revision="0010_suppression_and_bounces")
    insert_log_row(2, "autoreply")
    with pytest.raises(sa.exc.IntegrityError):
        insert_log_row(3, "bogus")
    # The SQLite rebuild kept the log.
    assert log_events() == [(1, "sent"), (2, "autoreply")]
    db.session.commit()

    downgrade(directory=str(MIGRATIONS_DIR), revision="0009_claim_index")
    assert log_events() == [(1, "sent")]
    with db.engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
    assert not tables & TABLES_AFTER_0009


SNAPSHOT_SETTINGS_0016 = {
    "snapshot_company_name",
    "snapshot_postal_address",
    "snapshot_mandatory_opt_out",
    "snapshot_open_tracking",
}


def test_0016_leaves_mass_emails_sent_before_it_without_frozen_settings(
    empty_app: Flask,
) -> None:
    upgrade(directory=str(MIGRATIONS_DIR), revision="0015_results_ui")
    with db.engine.begin() as connection:
        connection.execute(
            sa.insert(campaigns_0003),
            {"id": 1, "name": "Spring", "type": "email", "created_at": WHEN},
        )
        connection.execute(
            sa.insert(mass_emails_0003),
            {"id": 1, "campaign_id": 1, "name": "March", "status": "complete", "created_at": WHEN},
        )

    upgrade(directory=str(MIGRATIONS_DIR), revision="0016_sent_settings_snapshot")
    # No record of the settings it was sent with: None, the current ones apply
    # (app.services.messages.settings_as_sent).
    mass_email = db.session.get(MassEmail, 1)
    assert mass_email is not None
    assert [
        mass_email.snapshot_company_name,
        mass_email.snapshot_postal_address,
        mass_email.snapshot_mandatory_opt_out,
        mass_email.snapshot_open_tracking,
    ] == [None, None, None, None]
    mass_email.snapshot_company_name = "Example Corp"
    mass_email.snapshot_mandatory_opt_out = True
    db.session.commit()

    downgrade(directory=str(MIGRATIONS_DIR), revision="0015_results_ui")
    with db.engine.connect() as connection:
        names = connection.execute(sa.select(mass_emails_0003.c.name)).scalars().all()
        columns = {c["name"] for c in sa.inspect(connection).get_columns("mass_emails")}
    assert names == ["March"]
    assert not columns & SNAPSHOT_SETTINGS_0016
