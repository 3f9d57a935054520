"""bounce mailbox: the IMAP poller's checkpoint and lease per mailbox

Revision ID: 0011_bounce_mailbox
Revises: 0010_suppression_and_bounces
Create Date: 2026-12-16 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_bounce_mailbox'
down_revision = '0010_suppression_and_bounces'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('bounce_mailbox_checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox', sa.String(length=500), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=True),
    sa.Column('last_uid', sa.BigInteger(), nullable=False),
    sa.Column('last_poll_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('locked_by', sa.String(length=100), nullable=True),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bounce_mailbox_checkpoints')),
    sa.UniqueConstraint('mailbox', name=op.f('uq_bounce_mailbox_checkpoints_mailbox'))
    )


def downgrade():
    op.drop_table('bounce_mailbox_checkpoints')
