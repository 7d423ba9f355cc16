"""Sorting workloads by name ignores case: ix_workloads_project_name is on lower(name)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 14:25:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_TRAILING = ['created_at', 'id', 'status', 'type']


def upgrade() -> None:
    op.drop_index('ix_workloads_project_name', table_name='workloads')
    op.create_index('ix_workloads_project_name', 'workloads',
                    ['project_id', sa.text('lower(name)'), *_TRAILING], unique=False)


def downgrade() -> None:
    op.drop_index('ix_workloads_project_name', table_name='workloads')
    op.create_index('ix_workloads_project_name', 'workloads', ['project_id', 'name', *_TRAILING], unique=False)
