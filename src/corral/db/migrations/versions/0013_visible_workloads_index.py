"""A narrow partial index of the workloads the table shows by default (every status but
Deleted), in the default order: a jump deep into a big project's pages walks it without
testing each entry's status.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 15:00:00.000000
"""
import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

_VISIBLE = sa.text("status <> 'Deleted'")


def upgrade() -> None:
    op.create_index("ix_workloads_project_visible", "workloads", ["project_id", "created_at", "id", "status"],
                    sqlite_where=_VISIBLE, postgresql_where=_VISIBLE)


def downgrade() -> None:
    op.drop_index("ix_workloads_project_visible", table_name="workloads")
