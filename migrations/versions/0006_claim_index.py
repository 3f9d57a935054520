"""claim index: a mass email's queued items in id order

Revision ID: 0006_claim_index
Revises: 0005
Create Date: 2026-12-09 09:00:00.000000

A claim takes one mass email's due queued items in id order. The index of
0005, (next_attempt_at, id) over the queued items, cannot serve that: the
planner either sorted all of the mass email's queued items for every claim
(38 ms at 100,000, spilling to disk) or walked the primary key past every
item already sent. (mass_email_id, id) over the queued items hands a claim
its rows in order, whatever is sent already.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_claim_index'
down_revision = '0005'
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")


def upgrade():
    op.drop_index('ix_queue_items_claimable', table_name='queue_items')
    op.create_index('ix_queue_items_claimable', 'queue_items', ['mass_email_id', 'id'], unique=False, postgresql_where=QUEUED, sqlite_where=QUEUED)


def downgrade():
    op.drop_index('ix_queue_items_claimable', table_name='queue_items')
    op.create_index('ix_queue_items_claimable', 'queue_items', ['next_attempt_at', 'id'], unique=False, postgresql_where=QUEUED, sqlite_where=QUEUED)
