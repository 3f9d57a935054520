"""bounce digests: how far each sender profile's daily digest has got

Revision ID: 0014_bounce_digests
Revises: 0013_contacts_ui
Create Date: 2026-12-22 09:00:00.000000

One row per sender profile whose point of contact was sent a digest of
new hard bounces, drops and complaints (app.services.bounce_digest).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014_bounce_digests'
down_revision = '0013_contacts_ui'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('bounce_digest_states',
    sa.Column('sender_profile_id', sa.Integer(), nullable=False),
    sa.Column('last_sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('covered_until', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['sender_profile_id'], ['sender_profiles.id'], name=op.f('fk_bounce_digest_states_sender_profile_id_sender_profiles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sender_profile_id', name=op.f('pk_bounce_digest_states'))
    )


def downgrade():
    op.drop_table('bounce_digest_states')
