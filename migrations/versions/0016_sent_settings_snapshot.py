"""sent settings snapshot: the runtime settings a mass email's messages show

Revision ID: 0016_sent_settings_snapshot
Revises: 0015_results_ui
Create Date: 2026-12-28 09:00:00.000000

The company name, postal address, mandatory opt-out and open tracking of
the runtime settings, frozen with the content snapshot when a mass email
is scheduled (app.services.snapshots), so every portion it sends, "view
online" and the results' copy as sent show what was sent. Nullable: a mass
email scheduled before this migration has no frozen values and keeps
using the current settings (there is no record of the old ones).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016_sent_settings_snapshot'
down_revision = '0015_results_ui'
branch_labels = None
depends_on = None

COLUMNS = (
    ('snapshot_company_name', sa.String(length=200)),
    ('snapshot_postal_address', sa.Text()),
    ('snapshot_mandatory_opt_out', sa.Boolean()),
    ('snapshot_open_tracking', sa.Boolean()),
)


def upgrade():
    # Nullable, no default: added in place on both databases.
    for name, type_ in COLUMNS:
        op.add_column('mass_emails', sa.Column(name, type_, nullable=True))


def downgrade():
    # SQLite >= 3.35 drops a plain column in place.
    for name, _ in reversed(COLUMNS):
        op.drop_column('mass_emails', name)
