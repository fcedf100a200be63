"""a running job keeps what it already changed on its target, for a crash to report

Revision ID: 0014_job_done
Revises: 0013_audit_full_check_break
Create Date: 2026-11-28 03:50:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0014_job_done'
down_revision = '0013_audit_full_check_break'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('done', sa.Text(), nullable=True))


def downgrade():
    # Not batch mode: on SQLite it rebuilds the job table, and dropping the old one (foreign keys on) deletes every
    # job's events (ON DELETE CASCADE) or fails on a checkpoint that names a job. SQLite 3.35+ drops the column.
    op.drop_column('job', 'done')
