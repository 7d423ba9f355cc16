"""components.result (what a finished component left: a model or evaluation metrics) and
models (each cluster's model store, as its agent reports the inventory)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 17:30:00.000000
"""
from alembic import op
import sqlalchemy as sa

from corral.db.types import BigIntPK, UTCDateTime


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('components', sa.Column('result', sa.JSON(), nullable=True))
    op.create_table(
        'models',
        sa.Column('id', BigIntPK, nullable=False),
        sa.Column('cluster_id', BigIntPK, nullable=False),
        sa.Column('project_id', BigIntPK, nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('source', sa.String(length=2048), nullable=True),
        sa.Column('revision', sa.String(length=256), nullable=True),
        sa.Column('base_model', sa.String(length=512), nullable=True),
        sa.Column('dataset', sa.String(length=512), nullable=True),
        sa.Column('workload_id', sa.BigInteger(), nullable=True),
        sa.Column('files', sa.BigInteger(), nullable=False),
        sa.Column('bytes', sa.BigInteger(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=True),
        sa.Column('reported_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_models_cluster_id_clusters'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_models_project_id_projects'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
        sa.UniqueConstraint('cluster_id', 'project_id', 'name', name=op.f('uq_models_cluster_id_project_id_name')),
    )
    op.create_index('ix_models_project_name', 'models', ['project_id', 'name'])


def downgrade() -> None:
    op.drop_index('ix_models_project_name', table_name='models')
    op.drop_table('models')
    with op.batch_alter_table('components', schema=None) as batch_op:
        batch_op.drop_column('result')
