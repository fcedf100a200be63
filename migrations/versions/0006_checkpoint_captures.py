"""checkpoints hold one capture per area

Revision ID: 0006_checkpoint_captures
Revises: 0005_sessions
Create Date: 2026-11-25 19:50:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0006_checkpoint_captures'
down_revision = '0005_sessions'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('checkpoint', schema=None) as batch_op:
        batch_op.add_column(sa.Column('captures', sa.Text(), nullable=False, server_default='{}'))
        batch_op.drop_column('migration_revision')
        batch_op.drop_column('backup')
        batch_op.drop_column('env_version')
        batch_op.drop_column('flags')


def downgrade():
    with op.batch_alter_table('checkpoint', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flags', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('env_version', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('backup', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('migration_revision', sa.String(length=64), nullable=True))
        batch_op.drop_column('captures')
