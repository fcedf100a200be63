"""Index sessions by expiry

Revision ID: e5a1b8c04d72
Revises: c3d9f27e4b10
Create Date: 2026-01-12 09:40:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "e5a1b8c04d72"
down_revision = "c3d9f27e4b10"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])


def downgrade():
    op.drop_index("ix_sessions_expires_at", table_name="sessions")
