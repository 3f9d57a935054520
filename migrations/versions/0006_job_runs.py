"""job runner: job-run records and runner heartbeats

Revision ID: 0006_job_runs
Revises: 0005
Create Date: 2026-11-26 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_job_runs'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('job_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=50), nullable=False),
    sa.Column('runner_id', sa.String(length=100), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.Enum('running', 'ok', 'error', name='jobrunoutcome', native_enum=False, create_constraint=True, length=10), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs'))
    )
    op.create_index('ix_job_runs_job_id_started_at', 'job_runs', ['job_id', 'started_at'], unique=False)
    op.create_table('runners',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('schedule', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runners'))
    )


def downgrade():
    op.drop_table('runners')
    op.drop_index('ix_job_runs_job_id_started_at', table_name='job_runs')
    op.drop_table('job_runs')
