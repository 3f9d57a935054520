"""queue items, tracked links, campaign log; mass-email content and soft delete

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

QUEUE_ITEM_STATUSES = (
    'queued', 'sending', 'sent', 'opened', 'clicked', 'bounced', 'unsubscribed',
    'spam_report', 'dropped', 'error', 'failed', 'interrupted',
)
CAMPAIGN_LOG_EVENTS = (
    'sent', 'opened', 'clicked', 'opted_out', 'opted_in', 'bounced_hard', 'bounced_soft',
    'complaint', 'dropped', 'failed', 'error',
)

# New NOT NULL text columns of tables that may already hold rows carry a
# server default of '' (in the models too), so they are added in place.
# Nothing here rebuilds an existing table: on SQLite a batch rebuild drops
# the old table with foreign keys on, which would empty or block the columns
# of the rows that point at it (mass_emails.template_id, for one).
TEXT_COLUMNS = {
    'email_templates': (('header_logo_url', sa.String(length=2000)), ('footer_html', sa.Text())),
    'mass_emails': (
        ('body_html', sa.Text()),
        ('header_logo_url', sa.String(length=2000)),
        ('footer_html', sa.Text()),
    ),
}


def upgrade():
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('email_templates', schema=None) as batch_op:
        for name, type_ in TEXT_COLUMNS['email_templates']:
            batch_op.add_column(sa.Column(name, type_, nullable=False, server_default=''))

    with op.batch_alter_table('mass_emails', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject', sa.String(length=998), nullable=True))
        batch_op.add_column(sa.Column('body_text', sa.Text(), nullable=True))
        for name, type_ in TEXT_COLUMNS['mass_emails']:
            batch_op.add_column(sa.Column(name, type_, nullable=False, server_default=''))
        # The foreign key inline: SQLite adds a column with REFERENCES in place.
        batch_op.add_column(sa.Column('copy_of_id', sa.Integer(), sa.ForeignKey('mass_emails.id', name=op.f('fk_mass_emails_copy_of_id_mass_emails'), ondelete='SET NULL'), nullable=True))
        batch_op.add_column(sa.Column('copy_number', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('can_spam_confirmed_at', sa.DateTime(timezone=True), nullable=True))

    op.create_table('queue_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mass_email_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('status', sa.Enum(*QUEUE_ITEM_STATUSES, name='queueitemstatus', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('open_count', sa.Integer(), nullable=False),
    sa.Column('clicked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('click_count', sa.Integer(), nullable=False),
    sa.Column('unsubscribed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_queue_items_contact_id_contacts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['mass_email_id'], ['mass_emails.id'], name=op.f('fk_queue_items_mass_email_id_mass_emails')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queue_items'))
    )
    with op.batch_alter_table('queue_items', schema=None) as batch_op:
        batch_op.create_index('ix_queue_items_contact_id', ['contact_id'], unique=False)
        batch_op.create_index('ix_queue_items_mass_email_id_status', ['mass_email_id', 'status'], unique=False)

    op.create_table('tracked_links',
    sa.Column('mass_email_id', sa.Integer(), nullable=False),
    sa.Column('link_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['mass_email_id'], ['mass_emails.id'], name=op.f('fk_tracked_links_mass_email_id_mass_emails'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('mass_email_id', 'link_id', name=op.f('pk_tracked_links'))
    )
    op.create_table('campaign_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mass_email_id', sa.Integer(), nullable=True),
    sa.Column('queue_item_id', sa.Integer(), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('event', sa.Enum(*CAMPAIGN_LOG_EVENTS, name='campaignlogevent', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_campaign_log_contact_id_contacts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['mass_email_id'], ['mass_emails.id'], name=op.f('fk_campaign_log_mass_email_id_mass_emails')),
    sa.ForeignKeyConstraint(['queue_item_id'], ['queue_items.id'], name=op.f('fk_campaign_log_queue_item_id_queue_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_log'))
    )
    with op.batch_alter_table('campaign_log', schema=None) as batch_op:
        batch_op.create_index('ix_campaign_log_contact_id_occurred_at', ['contact_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_campaign_log_mass_email_id_event', ['mass_email_id', 'event'], unique=False)


def downgrade():
    with op.batch_alter_table('campaign_log', schema=None) as batch_op:
        batch_op.drop_index('ix_campaign_log_mass_email_id_event')
        batch_op.drop_index('ix_campaign_log_contact_id_occurred_at')

    op.drop_table('campaign_log')
    op.drop_table('tracked_links')
    with op.batch_alter_table('queue_items', schema=None) as batch_op:
        batch_op.drop_index('ix_queue_items_mass_email_id_status')
        batch_op.drop_index('ix_queue_items_contact_id')

    op.drop_table('queue_items')

    # copy_of_id has a foreign key, so SQLite rebuilds mass_emails; safe
    # because no table points at mass_emails any more.
    with op.batch_alter_table('mass_emails', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_mass_emails_copy_of_id_mass_emails'), type_='foreignkey')
        batch_op.drop_column('can_spam_confirmed_at')
        batch_op.drop_column('deleted_at')
        batch_op.drop_column('copy_number')
        batch_op.drop_column('copy_of_id')
        batch_op.drop_column('footer_html')
        batch_op.drop_column('header_logo_url')
        batch_op.drop_column('body_text')
        batch_op.drop_column('body_html')
        batch_op.drop_column('subject')

    # Not batch mode: a batch rebuild on SQLite drops the old table with
    # foreign keys on, which would cascade to mass_emails. SQLite >= 3.35 drops
    # these plain columns in place.
    for name, _ in TEXT_COLUMNS['email_templates']:
        op.drop_column('email_templates', name)
    op.drop_column('campaigns', 'deleted_at')
