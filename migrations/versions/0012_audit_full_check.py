"""the audit mark remembers the last full check of the chain (which row it reached, when), sealed

Revision ID: 0012_audit_full_check
Revises: 0011_job_swapped_at
Create Date: 2026-11-27 17:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0012_audit_full_check'
down_revision = '0011_job_swapped_at'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('audit_mark', schema=None) as batch_op:
        batch_op.add_column(sa.Column('full_row_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('full_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('full_seal', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('audit_mark', schema=None) as batch_op:
        batch_op.drop_column('full_seal')
        batch_op.drop_column('full_at')
        batch_op.drop_column('full_row_id')
