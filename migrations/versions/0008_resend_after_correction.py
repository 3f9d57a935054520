"""resend after correction: queue_items.resent_at, the 'resent' campaign log event

Revision ID: 0008_resend_after_correction
Revises: 0007_domain_pacing
Create Date: 2026-12-04 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_resend_after_correction'
down_revision = '0007_domain_pacing'
branch_labels = None
depends_on = None

CAMPAIGN_LOG_EVENTS = (
    'sent', 'opened', 'clicked', 'opted_out', 'opted_in', 'bounced_hard', 'bounced_soft',
    'complaint', 'dropped', 'failed', 'error',
)
EVENT_CHECK = 'ck_campaign_log_campaignlogevent'


def _event_condition(events):
    return 'event IN (' + ', '.join(f"'{event}'" for event in events) + ')'


def _replace_event_check(events):
    # campaign_log.event is a VARCHAR whose CHECK lists the events. SQLite
    # cannot alter a CHECK, so batch mode rebuilds the table (no foreign key
    # points at campaign_log, and env.py turns foreign keys off for SQLite);
    # PostgreSQL drops and adds the constraint in place.
    with op.batch_alter_table('campaign_log', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f(EVENT_CHECK), type_='check')
        batch_op.create_check_constraint(batch_op.f(EVENT_CHECK), _event_condition(events))


def upgrade():
    # Nullable, no default: added in place on both databases.
    op.add_column('queue_items', sa.Column('resent_at', sa.DateTime(timezone=True), nullable=True))
    _replace_event_check(CAMPAIGN_LOG_EVENTS + ('resent',))


def downgrade():
    # The old CHECK cannot hold a 'resent' row: those log rows go, as the
    # column that says which items were resent does.
    op.execute(sa.text("DELETE FROM campaign_log WHERE event = 'resent'"))
    _replace_event_check(CAMPAIGN_LOG_EVENTS)
    # SQLite >= 3.35 drops a plain column in place.
    op.drop_column('queue_items', 'resent_at')
