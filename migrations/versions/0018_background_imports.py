"""background imports: CSV uploads over the in-request limit, imported by
the runner's contact-import job

Revision ID: 0018_background_imports
Revises: 0017_user_tz_invitations
Create Date: 2027-01-05 09:00:00.000000

contact_imports gains what a background import needs: its state (pending,
running, done, failed; existing imports are done), whether it runs in the
background, the stored file's name (never the user's file name), the
encoding, its size and the progress through it (bytes, and the records
committed: where a resumed run goes on), the lease of the runner importing
it, and why it failed. The index finds the pending and running ones.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0018_background_imports'
down_revision = '0017_user_tz_invitations'
branch_labels = None
depends_on = None

STATES = ('pending', 'running', 'done', 'failed')


def upgrade():
    with op.batch_alter_table('contact_imports') as batch:
        batch.add_column(sa.Column(
            'state',
            sa.Enum(*STATES, name='importstate', native_enum=False, create_constraint=True, length=10),
            server_default='done',
            nullable=False,
        ))
        batch.add_column(sa.Column('background', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column('stored_file', sa.String(length=100), server_default='', nullable=False))
        batch.add_column(sa.Column('encoding', sa.String(length=50), server_default='', nullable=False))
        batch.add_column(sa.Column('file_size', sa.BigInteger(), server_default='0', nullable=False))
        batch.add_column(sa.Column('bytes_done', sa.BigInteger(), server_default='0', nullable=False))
        batch.add_column(sa.Column('records_done', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('locked_by', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('error', sa.Text(), server_default='', nullable=False))
    op.create_index(
        'ix_contact_imports_background_state', 'contact_imports', ['background', 'state'], unique=False
    )


def downgrade():
    op.drop_index('ix_contact_imports_background_state', table_name='contact_imports')
    with op.batch_alter_table('contact_imports') as batch:
        batch.drop_constraint(batch.f('ck_contact_imports_importstate'), type_='check')
        for column in (
            'error', 'locked_until', 'locked_by', 'records_done', 'bytes_done', 'file_size',
            'encoding', 'stored_file', 'background', 'state',
        ):
            batch.drop_column(column)
