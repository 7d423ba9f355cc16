"""workloads.units and workloads.spread: how a workload's request is split over a cluster's
nodes (a multi-node job: one part per node, each on a node of its own; a service: one part
per replica), so that admission never admits what no node of the cluster can hold

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 18:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing workloads are one part: what they were admitted as.
    op.add_column('workloads', sa.Column('units', sa.SmallInteger(), nullable=False, server_default='1'))
    op.add_column('workloads', sa.Column('spread', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35): a batch copy of the table would lose the
    # expression index of 0007, which SQLite's reflection does not see.
    op.execute('ALTER TABLE workloads DROP COLUMN spread')
    op.execute('ALTER TABLE workloads DROP COLUMN units')
