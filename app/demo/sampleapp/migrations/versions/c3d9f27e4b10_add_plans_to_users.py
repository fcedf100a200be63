"""Add plans to users

Revision ID: c3d9f27e4b10
Revises: a92f6e1b3c58
Create Date: 2026-01-12 09:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "c3d9f27e4b10"
down_revision = "a92f6e1b3c58"
branch_labels = None
depends_on = None


def upgrade():
    # Everyone who signed up before plans existed is on the free plan: the default fills their rows.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan", sa.String(length=20), nullable=False, server_default="free"))


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("plan")
