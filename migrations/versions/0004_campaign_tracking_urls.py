"""campaign tracking URLs; named tracked links

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('campaign_tracking_urls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_tracking_urls_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_tracking_urls')),
    sa.UniqueConstraint('campaign_id', 'name', name=op.f('uq_campaign_tracking_urls_campaign_id_name'))
    )

    # Not batch mode: a nullable column and an index are added in place on
    # SQLite too, so tracked_links (which mail already sent depends on) is
    # never rebuilt.
    op.add_column('tracked_links', sa.Column('name', sa.String(length=100), nullable=True))
    op.create_index('ix_tracked_links_mass_email_id_name', 'tracked_links', ['mass_email_id', 'name'], unique=True)


def downgrade():
    # The index first: SQLite refuses to drop a column an index uses.
    op.drop_index('ix_tracked_links_mass_email_id_name', table_name='tracked_links')
    # SQLite >= 3.35 drops a plain column in place.
    op.drop_column('tracked_links', 'name')
    op.drop_table('campaign_tracking_urls')
