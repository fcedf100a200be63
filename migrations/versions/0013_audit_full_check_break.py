"""the last full check of the audit chain is remembered when it found a break too (which row, what), sealed

Revision ID: 0013_audit_full_check_break
Revises: 0012_audit_full_check
Create Date: 2026-11-27 18:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0013_audit_full_check_break'
down_revision = '0012_audit_full_check'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('audit_mark', schema=None) as batch_op:
        batch_op.add_column(sa.Column('full_break_row', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('full_break', sa.String(length=512), nullable=True))


def downgrade():
    with op.batch_alter_table('audit_mark', schema=None) as batch_op:
        batch_op.drop_column('full_break')
        batch_op.drop_column('full_break_row')
