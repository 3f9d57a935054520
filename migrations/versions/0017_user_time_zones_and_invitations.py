"""user time zones and invitations: users.time_zone, password_links

Revision ID: 0017_user_tz_invitations
Revises: 0016_sent_settings_snapshot
Create Date: 2026-12-29 09:00:00.000000

users.time_zone is the IANA zone a user reads and types times in; NULL (every
existing user) follows the site's default_time_zone boot setting.

password_links holds the single-use, expiring links an administrator mails
to a new user (an invitation) or to one who needs a new password (a reset),
by the SHA-256 of their token; see app.services.password_links.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
# Shorter than the file's name: alembic_version.version_num is VARCHAR(32).
revision = '0017_user_tz_invitations'
down_revision = '0016_sent_settings_snapshot'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('time_zone', sa.String(length=64), nullable=True))
    op.create_table('password_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.Enum('invitation', 'reset', name='passwordlinkkind', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('replaced_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_password_links_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_password_links'))
    )
    op.create_index('uq_password_links_token_hash', 'password_links', ['token_hash'], unique=True)
    op.create_index('ix_password_links_user_id', 'password_links', ['user_id'], unique=False)


def downgrade():
    op.drop_index('ix_password_links_user_id', table_name='password_links')
    op.drop_index('uq_password_links_token_hash', table_name='password_links')
    op.drop_table('password_links')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('time_zone')
