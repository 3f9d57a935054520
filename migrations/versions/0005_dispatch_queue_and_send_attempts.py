"""dispatch: queue item delivery columns, claim indexes, one item per contact, send attempts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")
SENDING = sa.text("status = 'sending'")


def upgrade():
    op.add_column('mass_emails', sa.Column('queue_built_at', sa.DateTime(timezone=True), nullable=True))

    # The unique constraint makes SQLite rebuild queue_items (batch mode);
    # safe because env.py runs SQLite migrations with foreign keys off, so
    # the rows of campaign_log pointing at queue items are left alone. NOT
    # NULL columns carry server defaults so the existing rows fill them.
    with op.batch_alter_table('queue_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_code', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('last_reply', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('bounce_kind', sa.Enum('hard', 'soft', name='bouncekind', native_enum=False, create_constraint=True, length=10), nullable=True))
        batch_op.add_column(sa.Column('skip_reason', sa.Text(), server_default='', nullable=False))
        batch_op.create_unique_constraint('uq_queue_items_mass_email_contact', ['mass_email_id', 'contact_id'])

    # After the rebuild: batch mode would not carry a partial index's WHERE.
    op.create_index('ix_queue_items_claimable', 'queue_items', ['next_attempt_at', 'id'], unique=False, postgresql_where=QUEUED, sqlite_where=QUEUED)
    op.create_index('ix_queue_items_sending_lease', 'queue_items', ['lease_expires_at'], unique=False, postgresql_where=SENDING, sqlite_where=SENDING)

    op.create_table('send_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('queue_item_id', sa.Integer(), nullable=False),
    sa.Column('mass_email_id', sa.Integer(), nullable=False),
    sa.Column('runner_id', sa.String(length=100), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=30), nullable=True),
    sa.Column('code', sa.Integer(), nullable=True),
    sa.Column('reply', sa.Text(), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['mass_email_id'], ['mass_emails.id'], name=op.f('fk_send_attempts_mass_email_id_mass_emails')),
    sa.ForeignKeyConstraint(['queue_item_id'], ['queue_items.id'], name=op.f('fk_send_attempts_queue_item_id_queue_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_send_attempts'))
    )
    op.create_index('ix_send_attempts_claimed_at', 'send_attempts', ['claimed_at'], unique=False)
    op.create_index('ix_send_attempts_queue_item_id', 'send_attempts', ['queue_item_id'], unique=False)


def downgrade():
    op.drop_index('ix_send_attempts_queue_item_id', table_name='send_attempts')
    op.drop_index('ix_send_attempts_claimed_at', table_name='send_attempts')
    op.drop_table('send_attempts')

    # Partial indexes first: SQLite's rebuild below would copy them wrongly.
    op.drop_index('ix_queue_items_sending_lease', table_name='queue_items')
    op.drop_index('ix_queue_items_claimable', table_name='queue_items')
    with op.batch_alter_table('queue_items', schema=None) as batch_op:
        batch_op.drop_constraint('uq_queue_items_mass_email_contact', type_='unique')
        # SQLite's rebuild copies the reflected CHECK, which names the column.
        batch_op.drop_constraint(batch_op.f('ck_queue_items_bouncekind'), type_='check')
        batch_op.drop_column('skip_reason')
        batch_op.drop_column('bounce_kind')
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('last_reply')
        batch_op.drop_column('last_code')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')

    # SQLite >= 3.35 drops a plain column in place.
    op.drop_column('mass_emails', 'queue_built_at')
