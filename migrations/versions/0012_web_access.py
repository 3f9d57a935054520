"""web access: log-in attempts for the rate limit

Revision ID: 0012_web_access
Revises: 0011_bounce_mailbox
Create Date: 2026-12-20 09:00:00.000000

One row per log-in attempt (address typed, client IP, time, success),
counted per account and per IP over a sliding window by
app.services.login_throttle; rows older than a day are deleted as new
attempts arrive.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_web_access'
down_revision = '0011_bounce_mailbox'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('login_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email_lower', sa.String(length=320), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempts'))
    )
    op.create_index('ix_login_attempts_email_lower_attempted_at', 'login_attempts', ['email_lower', 'attempted_at'], unique=False)
    op.create_index('ix_login_attempts_ip_attempted_at', 'login_attempts', ['ip', 'attempted_at'], unique=False)


def downgrade():
    op.drop_index('ix_login_attempts_ip_attempted_at', table_name='login_attempts')
    op.drop_index('ix_login_attempts_email_lower_attempted_at', table_name='login_attempts')
    op.drop_table('login_attempts')
