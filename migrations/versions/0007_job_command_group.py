"""a running job remembers its command's process group

Revision ID: 0007_job_command_group
Revises: 0006_checkpoint_captures
Create Date: 2026-11-25 19:55:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0007_job_command_group'
down_revision = '0006_checkpoint_captures'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('command_group', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('command_started', sa.BigInteger(), nullable=True))


def downgrade():
    # Not in batch mode: on SQLite that rebuilds job, and dropping the old table, foreign keys on, would delete
    # every job's events (ON DELETE CASCADE). SQLite drops a column in place since 3.35.
    op.drop_column('job', 'command_started')
    op.drop_column('job', 'command_group')
