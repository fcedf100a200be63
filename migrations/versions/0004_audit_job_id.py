"""audit rows found by job, and the sealed verified-up-to mark

Revision ID: 0004_audit_job_id
Revises: 0003_deployments
Create Date: 2026-11-25 19:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_audit_job_id'
down_revision = '0003_deployments'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('job_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_audit_event_job_id', ['job_id', 'id'], unique=False)

    # Rows written before the column: the job id from their details (top-level key, a whole number).
    audit = sa.table('audit_event', sa.column('id'), sa.column('details'), sa.column('job_id'))
    conn = op.get_bind()
    rows = conn.execute(sa.select(audit.c.id, audit.c.details).where(audit.c.details.like('%"job_id":%')))
    import json

    fills = []
    for row_id, details in rows:
        try:
            job_id = json.loads(details).get('job_id')
        except (ValueError, AttributeError):
            continue
        if isinstance(job_id, int) and not isinstance(job_id, bool):
            fills.append({'row': row_id, 'job': job_id})
    update = audit.update().where(audit.c.id == sa.bindparam('row')).values(job_id=sa.bindparam('job'))
    for start in range(0, len(fills), 10000):
        conn.execute(update, fills[start:start + 10000])

    op.create_table('audit_mark',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('row_id', sa.Integer(), nullable=False),
    sa.Column('row_hash', sa.String(length=64), nullable=False),
    sa.Column('sealed_at', sa.DateTime(), nullable=True),
    sa.Column('seal', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    mark = sa.table('audit_mark', sa.column('id'), sa.column('row_id'), sa.column('row_hash'), sa.column('seal'))
    op.bulk_insert(mark, [{'id': 1, 'row_id': 0, 'row_hash': '0' * 64, 'seal': ''}])


def downgrade():
    op.drop_table('audit_mark')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_event_job_id')
        batch_op.drop_column('job_id')
