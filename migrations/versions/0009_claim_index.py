"""claim indexes: one partial (mass_email_id, id) index per domain group

Revision ID: 0009_claim_index
Revises: 0008_resend_after_correction
Create Date: 2026-12-09 09:00:00.000000

A claim takes one mass email's due queued items in id order, per domain
group (0007: the first items of each open group, merged by id). Neither
index before this revision served that reliably on PostgreSQL:

- 0005's (next_attempt_at, id) over the queued items gives no order per
  mass email: the planner sorted all of the mass email's queued items for
  every claim (38 ms at 100,000, spilling to disk) or walked the primary key
  past every item already sent;
- 0007's (mass_email_id, domain_group, id) over the queued items: with the
  statistics of a freshly built queue the planner preferred reading the mass
  email's whole queue through (mass_email_id, status) and sorting it, once
  per group and claim.

Now each group has a two-column partial index, (mass_email_id, id) over its
queued items, whose condition a claim's query states outright; each item is
in at most one of them. Both older indexes go.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_claim_index'
down_revision = '0008_resend_after_correction'
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")
# The domain groups when this revision was made (migrations never import the app).
GROUPS = ('gmail', 'yahoo', 'outlook', 'other')


def _queued_of(group):
    return sa.text(f"status = 'queued' AND domain_group = '{group}'")


def upgrade():
    op.drop_index('ix_queue_items_claimable', table_name='queue_items')
    op.drop_index('ix_queue_items_claimable_group', table_name='queue_items')
    for group in GROUPS:
        op.create_index(f'ix_queue_items_claimable_{group}', 'queue_items', ['mass_email_id', 'id'], unique=False, postgresql_where=_queued_of(group), sqlite_where=_queued_of(group))


def downgrade():
    for group in GROUPS:
        op.drop_index(f'ix_queue_items_claimable_{group}', table_name='queue_items')
    op.create_index('ix_queue_items_claimable_group', 'queue_items', ['mass_email_id', 'domain_group', 'id'], unique=False, postgresql_where=QUEUED, sqlite_where=QUEUED)
    op.create_index('ix_queue_items_claimable', 'queue_items', ['next_attempt_at', 'id'], unique=False, postgresql_where=QUEUED, sqlite_where=QUEUED)
