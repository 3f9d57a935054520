"""contact imports: history and per-import address log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('contact_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=500), nullable=False),
    sa.Column('target_list_id', sa.Integer(), nullable=True),
    sa.Column('list_name', sa.String(length=200), nullable=False),
    sa.Column('update_existing', sa.Boolean(), nullable=False),
    sa.Column('default_type', sa.String(length=40), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rows_total', sa.Integer(), nullable=False),
    sa.Column('rows_created', sa.Integer(), nullable=False),
    sa.Column('rows_updated', sa.Integer(), nullable=False),
    sa.Column('rows_unchanged', sa.Integer(), nullable=False),
    sa.Column('rows_merged', sa.Integer(), nullable=False),
    sa.Column('rows_rejected', sa.Integer(), nullable=False),
    sa.Column('warning_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['target_list_id'], ['target_lists.id'], name=op.f('fk_contact_imports_target_list_id_target_lists'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_imports'))
    )
    op.create_table('contact_import_addresses',
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.Column('email_lower', sa.String(length=320), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('created', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['contact_imports.id'], name=op.f('fk_contact_import_addresses_import_id_contact_imports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('import_id', 'email_lower', name=op.f('pk_contact_import_addresses'))
    )


def downgrade():
    op.drop_table('contact_import_addresses')
    op.drop_table('contact_imports')
