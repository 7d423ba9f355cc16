"""project secrets: project_secrets

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import corral.db.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('project_secrets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('ciphertext', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=254), nullable=False),
    sa.Column('created_at', corral.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', corral.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_project_secrets_project_id_projects'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_project_secrets')),
    sa.UniqueConstraint('project_id', 'name', name=op.f('uq_project_secrets_project_id_name'))
    )


def downgrade() -> None:
    op.drop_table('project_secrets')
