"""suppression list and bounces: suppressions, their removals, bounce messages and events, the 'autoreply' campaign log event

Revision ID: 0010_suppression_and_bounces
Revises: 0009_claim_index
Create Date: 2026-12-12 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_suppression_and_bounces'
down_revision = '0009_claim_index'
branch_labels = None
depends_on = None

CAMPAIGN_LOG_EVENTS = (
    'sent', 'opened', 'clicked', 'opted_out', 'opted_in', 'bounced_hard', 'bounced_soft',
    'complaint', 'dropped', 'failed', 'error', 'resent',
)
EVENT_CHECK = 'ck_campaign_log_campaignlogevent'
# The enums when this revision was made (migrations never import the app).
SUPPRESSION_REASONS = ('hard_bounce', 'complaint', 'soft_threshold', 'manual')
MESSAGE_OUTCOMES = ('applied', 'duplicate', 'not_a_bounce', 'unmatched', 'forged', 'unsubscribed', 'unrecognised')
REPORT_KINDS = ('hard', 'soft', 'complaint', 'autoreply')


def _enum(values, name):
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=20)


def _event_condition(events):
    return 'event IN (' + ', '.join(f"'{event}'" for event in events) + ')'


def _replace_event_check(events):
    # As in 0008: SQLite rebuilds the table to change a CHECK.
    with op.batch_alter_table('campaign_log', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f(EVENT_CHECK), type_='check')
        batch_op.create_check_constraint(batch_op.f(EVENT_CHECK), _event_condition(events))


def upgrade():
    op.create_table('suppressions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('address_lower', sa.String(length=320), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('reason', _enum(SUPPRESSION_REASONS, 'suppressionreason'), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppressions'))
    )
    op.create_index('uq_suppressions_address_lower', 'suppressions', ['address_lower'], unique=True)
    op.create_index('ix_suppressions_domain', 'suppressions', ['domain'], unique=False)
    op.create_index('ix_suppressions_created_at', 'suppressions', ['created_at'], unique=False)

    op.create_table('suppression_removals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('address_lower', sa.String(length=320), nullable=False),
    sa.Column('reason', _enum(SUPPRESSION_REASONS, 'suppressionreason'), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.Column('suppressed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('removed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('removed_by', sa.String(length=200), nullable=False),
    sa.Column('why', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppression_removals'))
    )
    op.create_index('ix_suppression_removals_address_lower', 'suppression_removals', ['address_lower'], unique=False)

    op.create_table('bounce_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', _enum(MESSAGE_OUTCOMES, 'messageoutcome'), nullable=False),
    sa.Column('kind', _enum(REPORT_KINDS, 'reportkind'), nullable=True),
    sa.Column('queue_item_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['queue_item_id'], ['queue_items.id'], name=op.f('fk_bounce_messages_queue_item_id_queue_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bounce_messages')),
    sa.UniqueConstraint('message_id', 'content_hash', name='uq_bounce_messages_message')
    )
    op.create_index('ix_bounce_messages_outcome_received_at', 'bounce_messages', ['outcome', 'received_at'], unique=False)

    op.create_table('bounce_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('queue_item_id', sa.Integer(), nullable=False),
    sa.Column('address_lower', sa.String(length=320), nullable=False),
    sa.Column('kind', _enum(REPORT_KINDS, 'reportkind'), nullable=False),
    sa.Column('reason', sa.String(length=50), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['queue_item_id'], ['queue_items.id'], name=op.f('fk_bounce_events_queue_item_id_queue_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bounce_events')),
    sa.UniqueConstraint('queue_item_id', 'kind', 'address_lower', name='uq_bounce_events_item_kind_address')
    )
    op.create_index('ix_bounce_events_address_kind_occurred', 'bounce_events', ['address_lower', 'kind', 'occurred_at'], unique=False)

    _replace_event_check(CAMPAIGN_LOG_EVENTS + ('autoreply',))


def downgrade():
    # The old CHECK cannot hold an 'autoreply' row: those log rows go, as
    # the tables that explain them do.
    op.execute(sa.text("DELETE FROM campaign_log WHERE event = 'autoreply'"))
    _replace_event_check(CAMPAIGN_LOG_EVENTS)
    op.drop_index('ix_bounce_events_address_kind_occurred', table_name='bounce_events')
    op.drop_table('bounce_events')
    op.drop_index('ix_bounce_messages_outcome_received_at', table_name='bounce_messages')
    op.drop_table('bounce_messages')
    op.drop_index('ix_suppression_removals_address_lower', table_name='suppression_removals')
    op.drop_table('suppression_removals')
    op.drop_index('ix_suppressions_created_at', table_name='suppressions')
    op.drop_index('ix_suppressions_domain', table_name='suppressions')
    op.drop_index('uq_suppressions_address_lower', table_name='suppressions')
    op.drop_table('suppressions')
