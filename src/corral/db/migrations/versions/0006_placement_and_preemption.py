"""workloads.cluster_named (placed at admission unless the user named a cluster) and
workloads.preempted_for (a preempted workload's preemptor, held until its components are gone)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 14:40:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing workloads keep the cluster they were given at submission.
    op.add_column('workloads', sa.Column('cluster_named', sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column('workloads', sa.Column('preempted_for', sa.BigInteger(), nullable=True))
    op.create_index('ix_workloads_preempted_for', 'workloads', ['preempted_for'])


def downgrade() -> None:
    op.drop_index('ix_workloads_preempted_for', table_name='workloads')
    with op.batch_alter_table('workloads', schema=None) as batch_op:
        batch_op.drop_column('preempted_for')
        batch_op.drop_column('cluster_named')
