"""a job that put another database in live's place says when, whatever state it ended in

Revision ID: 0011_job_swapped_at
Revises: 0010_job_standing
Create Date: 2026-11-27 16:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0011_job_swapped_at'
down_revision = '0010_job_standing'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('swapped_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('swapped_out', sa.String(length=255), nullable=True))
    # Before these columns, a restore or its undo that ended well was the only sign of a swap, made somewhere between
    # its start and its end: its end stands for the moment, so a moment inside its run still counts the swap as after
    # it. The name it kept live under is not known for those (swaps.Swap.after tells them by their start).
    op.execute(
        "UPDATE job SET swapped_at = finished_at WHERE runbook IN ('restore_backup', 'undo_restore') "
        "AND state IN ('succeeded', 'warning') AND started_at IS NOT NULL AND finished_at IS NOT NULL"
    )


def downgrade():
    # Not in batch mode: on SQLite that rebuilds job, and dropping the old table, foreign keys on, would delete
    # every job's events (ON DELETE CASCADE). SQLite drops a column in place since 3.35.
    op.drop_column('job', 'swapped_out')
    op.drop_column('job', 'swapped_at')
