"""results UI: indexes for the recipients' keyset and a recipient's log

Revision ID: 0015_results_ui
Revises: 0014_bounce_digests
Create Date: 2026-12-27 09:00:00.000000

The results page lists a mass email's recipients page by page with a keyset
(``id > after ORDER BY id LIMIT n``). Without this index PostgreSQL walked
the primary key from the first item of every earlier mass email (42 ms for
the first page of a third mass email of 100,000; 0.1 ms with it), or read
and sorted the mass email's items. A status filter uses it too when the
status is common; a rare one reads (mass_email_id, status) and sorts the
few rows.

A recipient's page lists the campaign-log rows of its queue item: without
an index on campaign_log.queue_item_id that was a pass over the whole log
(19 ms at 132,500 rows, growing with every mass email ever sent).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015_results_ui'
down_revision = '0014_bounce_digests'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_queue_items_mass_email_id_id', 'queue_items', ['mass_email_id', 'id'], unique=False)
    op.create_index('ix_campaign_log_queue_item_id', 'campaign_log', ['queue_item_id'], unique=False)


def downgrade():
    op.drop_index('ix_campaign_log_queue_item_id', table_name='campaign_log')
    op.drop_index('ix_queue_items_mass_email_id_id', table_name='queue_items')
