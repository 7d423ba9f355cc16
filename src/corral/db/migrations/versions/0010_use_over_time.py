"""component_usage (what running components use, sampled by the agents), quota_history
(each project's quota use per cluster) and allocation_history (each cluster's allocation),
sampled by the server: the charts of issue 14

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 17:45:00.000000
"""
from alembic import op
import sqlalchemy as sa

from corral.db.types import BigIntPK, UTCDateTime


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def _counts(*names: str, nullable: bool = False) -> list[sa.Column]:
    return [sa.Column(name, sa.BigInteger(), nullable=nullable) for name in names]


def upgrade() -> None:
    op.create_table(
        'component_usage',
        sa.Column('id', BigIntPK, nullable=False),
        sa.Column('component_id', BigIntPK, nullable=False),
        sa.Column('at', UTCDateTime(), nullable=False),
        sa.Column('cpu', sa.BigInteger(), nullable=True),
        sa.Column('memory', sa.BigInteger(), nullable=True),
        sa.Column('gpu_utilization', sa.Float(), nullable=True),
        sa.Column('gpu_memory', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['component_id'], ['components.id'],
                                name=op.f('fk_component_usage_component_id_components'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_component_usage')),
    )
    op.create_index('ix_component_usage_component_at', 'component_usage', ['component_id', 'at'])
    op.create_index('ix_component_usage_at', 'component_usage', ['at'])
    op.create_table(
        'quota_history',
        sa.Column('id', BigIntPK, nullable=False),
        sa.Column('project_id', BigIntPK, nullable=False),
        sa.Column('cluster_id', BigIntPK, nullable=False),
        sa.Column('at', UTCDateTime(), nullable=False),
        *_counts('used_gpu', 'used_cpu', 'used_memory', 'guaranteed_gpu', 'guaranteed_cpu', 'guaranteed_memory'),
        *_counts('limit_gpu', 'limit_cpu', 'limit_memory', nullable=True),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_quota_history_project_id_projects'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_quota_history_cluster_id_clusters'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_quota_history')),
    )
    op.create_index('ix_quota_history_project_at', 'quota_history', ['project_id', 'cluster_id', 'at'])
    op.create_index('ix_quota_history_at', 'quota_history', ['at'])
    op.create_table(
        'allocation_history',
        sa.Column('id', BigIntPK, nullable=False),
        sa.Column('cluster_id', BigIntPK, nullable=False),
        sa.Column('at', UTCDateTime(), nullable=False),
        *_counts('capacity_gpu', 'capacity_cpu', 'capacity_memory', 'allocated_gpu', 'allocated_cpu',
                 'allocated_memory', 'guaranteed_gpu', 'guaranteed_cpu', 'guaranteed_memory'),
        sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'],
                                name=op.f('fk_allocation_history_cluster_id_clusters'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_allocation_history')),
    )
    op.create_index('ix_allocation_history_cluster_at', 'allocation_history', ['cluster_id', 'at'])


def downgrade() -> None:
    op.drop_index('ix_allocation_history_cluster_at', table_name='allocation_history')
    op.drop_table('allocation_history')
    op.drop_index('ix_quota_history_at', table_name='quota_history')
    op.drop_index('ix_quota_history_project_at', table_name='quota_history')
    op.drop_table('quota_history')
    op.drop_index('ix_component_usage_at', table_name='component_usage')
    op.drop_index('ix_component_usage_component_at', table_name='component_usage')
    op.drop_table('component_usage')
