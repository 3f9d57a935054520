"""contacts ui: search indexes and the browser import's problem rows

Revision ID: 0013_contacts_ui
Revises: 0012_web_access
Create Date: 2026-12-22 09:00:00.000000

- Expression indexes on lower(first_name), lower(last_name) and
  lower(company): the contacts page searches by the start of a name or a
  company (app.services.contact_search) as an index range on both
  databases.
- contact_import_problems: the rejected rows (with their cells) and the
  warnings of an import started in the browser, for its report page and the
  rejected-rows download; contact_imports.csv_header and csv_delimiter
  rebuild that file.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013_contacts_ui'
down_revision = '0012_web_access'
branch_labels = None
depends_on = None

SEARCH_INDEXES = {
    'ix_contacts_first_name_lower': 'first_name',
    'ix_contacts_last_name_lower': 'last_name',
    'ix_contacts_company_lower': 'company',
}


def upgrade():
    for name, column in SEARCH_INDEXES.items():
        op.create_index(name, 'contacts', [sa.func.lower(sa.literal_column(column))], unique=False)
    with op.batch_alter_table('contact_imports') as batch:
        batch.add_column(sa.Column('csv_header', sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column('csv_delimiter', sa.String(length=1), server_default=',', nullable=False)
        )
    op.create_table('contact_import_problems',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('rejected', 'warning', name='importproblemkind', native_enum=False, create_constraint=True, length=10), nullable=False),
    sa.Column('row', sa.Integer(), nullable=False),
    sa.Column('position', sa.String(length=100), nullable=False),
    sa.Column('field', sa.String(length=200), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('cells', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['contact_imports.id'], name=op.f('fk_contact_import_problems_import_id_contact_imports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_import_problems'))
    )
    op.create_index('ix_contact_import_problems_import_id_kind_id', 'contact_import_problems', ['import_id', 'kind', 'id'], unique=False)


def downgrade():
    op.drop_index('ix_contact_import_problems_import_id_kind_id', table_name='contact_import_problems')
    op.drop_table('contact_import_problems')
    with op.batch_alter_table('contact_imports') as batch:
        batch.drop_column('csv_delimiter')
        batch.drop_column('csv_header')
    for name in SEARCH_INDEXES:
        op.drop_index(name, table_name='contacts')
