"""A workload's stored spec says its CPU in cores (2, 0.5), as the API shows it and a
resubmission reads it; it said millicores (2000), which a resubmitted spec read as 2,000
cores. Data only: the workloads' cpu column stays in millicores.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 23:30:00.000000
"""
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

# Whole cores stay integers (2000 -> 2), the rest fractions (500 -> 0.5). PostgreSQL goes
# through jsonb (json has no jsonb_set): an old spec's keys come back in jsonb's order,
# which changes only how it is laid out when shown.
_UP = {
    "sqlite": """
        UPDATE workloads SET spec = json_set(spec, '$.resources.cpu',
            CASE WHEN json_extract(spec, '$.resources.cpu') % 1000 = 0
                 THEN json_extract(spec, '$.resources.cpu') / 1000
                 ELSE json_extract(spec, '$.resources.cpu') / 1000.0 END)
        WHERE json_type(spec, '$.resources.cpu') = 'integer'""",
    "postgresql": """
        UPDATE workloads SET spec = jsonb_set(spec::jsonb, '{resources,cpu}',
            CASE WHEN (spec #>> '{resources,cpu}')::bigint % 1000 = 0
                 THEN to_jsonb((spec #>> '{resources,cpu}')::bigint / 1000)
                 ELSE to_jsonb((spec #>> '{resources,cpu}')::float8 / 1000) END)::json
        WHERE json_typeof(spec #> '{resources,cpu}') = 'number'
          AND spec #>> '{resources,cpu}' ~ '^[0-9]+$'""",
}
_DOWN = {
    "sqlite": """
        UPDATE workloads SET spec = json_set(spec, '$.resources.cpu',
            CAST(round(json_extract(spec, '$.resources.cpu') * 1000) AS INTEGER))
        WHERE json_type(spec, '$.resources.cpu') IN ('integer', 'real')""",
    "postgresql": """
        UPDATE workloads SET spec = jsonb_set(spec::jsonb, '{resources,cpu}',
            to_jsonb(round((spec #>> '{resources,cpu}')::numeric * 1000)::bigint))::json
        WHERE json_typeof(spec #> '{resources,cpu}') = 'number'""",
}


def upgrade() -> None:
    op.execute(_UP[op.get_bind().dialect.name])


def downgrade() -> None:
    op.execute(_DOWN[op.get_bind().dialect.name])
