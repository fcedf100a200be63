"""Add last seen to users

Revision ID: f8b2d6a39e15
Revises: e5a1b8c04d72
Create Date: 2026-01-12 09:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "f8b2d6a39e15"
down_revision = "e5a1b8c04d72"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(), nullable=True))
    # Backfill: a user was last seen when their newest session started (users without a session stay NULL).
    op.execute("UPDATE users SET last_seen_at = (SELECT max(s.created_at) FROM sessions s WHERE s.user_id = users.id)")


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("last_seen_at")
