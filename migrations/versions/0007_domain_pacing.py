"""domain pacing: domain group on queue items and send attempts, domain throttles

Revision ID: 0007_domain_pacing
Revises: 0006_job_runs
Create Date: 2026-12-09 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_domain_pacing'
down_revision = '0006_job_runs'
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")


def domain_group_type():
    return sa.Enum('gmail', 'yahoo', 'outlook', 'other', name='domaingroup', native_enum=False, create_constraint=True, length=10)


# The groups' patterns as app.services.domain_groups wrote them when this
# revision was made (migrations never import the app). Applied to lower(email).
_COUNTRY = r"(?:(?:co|com)\.)?(?!(?:ai|cc|co|fm|gg|io|ly|me|sh|so|to|tv|ws)\Z)[a-z]{2}"
GROUP_PATTERNS = (
    ('gmail', r"@(?:gmail\.com|googlemail\.com)\Z"),
    ('yahoo', r"@(?:yahoo\.com|yahoo\." + _COUNTRY + r"|ymail\.com|rocketmail\.com|aol\.com|aol\." + _COUNTRY + r"|aim\.com|verizon\.net)\Z"),
    ('outlook', r"@(?:outlook\.com|outlook\." + _COUNTRY + r"|hotmail\.com|hotmail\." + _COUNTRY + r"|live\.com|live\." + _COUNTRY + r"|msn\.com|windowslive\.com|passport\.com)\Z"),
)


def upgrade():
    # NOT NULL with a server default, so the existing rows fill it; batch
    # mode (SQLite rebuilds the table) as in 0005.
    with op.batch_alter_table('queue_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('domain_group', domain_group_type(), server_default='other', nullable=False))
    # After the rebuild: batch mode would not carry a partial index's WHERE.
    op.create_index('ix_queue_items_claimable_group', 'queue_items', ['mass_email_id', 'domain_group', 'id'], unique=False, postgresql_where=QUEUED, sqlite_where=QUEUED)

    with op.batch_alter_table('send_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('domain_group', domain_group_type(), server_default='other', nullable=False))
        batch_op.create_index('ix_send_attempts_domain_group_claimed_at', ['domain_group', 'claimed_at'], unique=False)

    op.create_table('domain_throttles',
    sa.Column('domain_group', domain_group_type(), nullable=False),
    sa.Column('throttled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('throttled_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('strikes', sa.Integer(), nullable=False),
    sa.Column('code', sa.Integer(), nullable=True),
    sa.Column('reply', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('domain_group', name=op.f('pk_domain_throttles'))
    )

    # Items still to be sent get their group (one set-based UPDATE; SQLAlchemy
    # gives SQLite its REGEXP). Items already done and older ledger rows stay
    # 'other': pacing counts from the upgrade on.
    queue_items = sa.table('queue_items', sa.column('status', sa.String), sa.column('email', sa.String), sa.column('domain_group', sa.String))
    lowered = sa.func.lower(queue_items.c.email)
    group = sa.case(*((lowered.regexp_match(pattern), name) for name, pattern in GROUP_PATTERNS), else_='other')
    op.execute(queue_items.update().where(queue_items.c.status.in_(('queued', 'sending'))).values(domain_group=group))


def downgrade():
    op.drop_table('domain_throttles')

    with op.batch_alter_table('send_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_send_attempts_domain_group_claimed_at')
        # SQLite's rebuild copies the reflected CHECK, which names the column.
        batch_op.drop_constraint(batch_op.f('ck_send_attempts_domaingroup'), type_='check')
        batch_op.drop_column('domain_group')

    # Partial index first: SQLite's rebuild below would copy it wrongly.
    op.drop_index('ix_queue_items_claimable_group', table_name='queue_items')
    with op.batch_alter_table('queue_items', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_queue_items_domaingroup'), type_='check')
        batch_op.drop_column('domain_group')
