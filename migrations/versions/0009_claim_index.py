"""claim index: one partial index serves the claim, the (next_attempt_at, id) one goes

Revision ID: 0009_claim_index
Revises: 0008_resend_after_correction
Create Date: 2026-12-09 09:00:00.000000

A claim takes one mass email's due queued items in id order, per domain
group (0007: the first items of each open group, merged by id), from
ix_queue_items_claimable_group, (mass_email_id, domain_group, id) over the
queued items. The index of 0005, (next_attempt_at, id) over the queued
items, cannot serve that: the planner either sorted all of the mass email's
queued items for every claim (38 ms at 100,000, spilling to disk) or walked
the primary key past every item already sent. Nothing else reads it, so it
goes: every queued item's insert and every claim paid for its upkeep.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_claim_index'
down_revision = '0008_resend_after_correction'
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")


def upgrade():
    op.drop_index('ix_queue_items_claimable', table_name='queue_items')


def downgrade():
    op.create_index('ix_queue_items_claimable', 'queue_items', ['next_attempt_at', 'id'], unique=False, postgresql_where=QUEUED, sqlite_where=QUEUED)
