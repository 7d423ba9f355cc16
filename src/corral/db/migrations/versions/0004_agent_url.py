"""clusters.agent_url: where a cluster's agent serves component output

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 20:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (nullable, no default) on both databases: no table rebuild.
    op.add_column('clusters', sa.Column('agent_url', sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.drop_column('agent_url')
