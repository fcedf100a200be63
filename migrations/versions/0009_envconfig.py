"""env file versions, encrypted

Revision ID: 0009_envconfig
Revises: 0007_job_command_group
Create Date: 2026-11-25 20:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0009_envconfig'
down_revision = '0007_job_command_group'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('env_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('actor_name', sa.String(length=128), nullable=True),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('file_mtime', sa.Float(), nullable=True),
    sa.Column('file_owner', sa.String(length=64), nullable=True),
    sa.Column('file_digest', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('parse_error', sa.String(length=512), nullable=True),
    sa.Column('digests', sa.Text(), nullable=False),
    sa.Column('changes', sa.Text(), nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('env_version', schema=None) as batch_op:
        batch_op.create_index('ix_env_version_target_id', ['target', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('env_version', schema=None) as batch_op:
        batch_op.drop_index('ix_env_version_target_id')
    op.drop_table('env_version')
