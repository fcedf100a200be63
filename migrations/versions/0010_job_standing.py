"""a running job keeps where its target stands, for a crash to report

Revision ID: 0010_job_standing
Revises: 0009_envconfig
Create Date: 2026-11-25 21:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0010_job_standing'
down_revision = '0009_envconfig'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('standing', sa.Text(), nullable=True))


def downgrade():
    # Not in batch mode: on SQLite that rebuilds job, and dropping the old table, foreign keys on, would delete
    # every job's events (ON DELETE CASCADE). SQLite drops a column in place since 3.35.
    op.drop_column('job', 'standing')
