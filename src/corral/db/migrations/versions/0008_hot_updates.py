"""PostgreSQL: room in every page of workloads and components for in-place (HOT) updates,
and autovacuum that keeps up with them

A status, reason or admission changes no indexed column of its row; with free space in the
row's page PostgreSQL writes the new version beside the old one without touching any of the
table's indexes (a workloads row has a dozen), and prunes the old one in place. At the
default fillfactor (100) no page has room, so every such update wrote a whole new entry in
every index, and the dead versions bloated tables and indexes until autovacuum (after 20%
of the table changed) caught up. Measured with 100,000 queued: a pass writing 500 waiting
reasons 90-130 ms -> ~60 ms; a submission admitted 290 ms -> 31 ms p50 after a day of churn.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 16:15:00.000000
"""
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_TABLES = {"workloads": 70, "components": 80}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite updates rows in place already
    for table, fill in _TABLES.items():
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {fill}, autovacuum_vacuum_scale_factor = 0.02, "
                   "autovacuum_analyze_scale_factor = 0.02)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor, autovacuum_vacuum_scale_factor, "
                   "autovacuum_analyze_scale_factor)")
