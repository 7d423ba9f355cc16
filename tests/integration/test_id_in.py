"""``dialect.id_in``: ids as one parameter (an array on PostgreSQL, a JSON array on SQLite),
as the admission pass and the status writer send them, pick exactly those rows, in a
SELECT and in an UPDATE, whatever their number."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from corral.db.dialect import id_in
from corral.db.engine import write_tx
from corral.db.tables import projects
from corral.services.admission_sql import CHUNK
from corral.services.clock import utcnow
from tests.integration.plans import statements_run


def test_id_in_picks_exactly_the_ids_given_as_one_parameter(engine):
    postgres = engine.dialect.name == "postgresql"
    with write_tx(engine) as conn:
        ids = [conn.execute(insert(projects).values(name=f"p{i}", created_at=utcnow()).returning(projects.c.id))
               .scalar_one() for i in range(5)]
    asked = [ids[0], ids[3], ids[3], 10**12]  # a repeat, and an id no row has
    many = [ids[1], *range(10**12, 10**12 + CHUNK - 1)]  # a whole chunk's worth, mostly absent
    with statements_run(engine, lambda sql: "projects" in sql and "INSERT" not in sql) as statements, \
            write_tx(engine) as conn:
        assert set(conn.execute(select(projects.c.id).where(id_in(projects.c.id, asked, postgres))).scalars()) \
            == {ids[0], ids[3]}
        changed = conn.execute(update(projects).where(id_in(projects.c.id, asked, postgres))
                               .values(description="picked")).rowcount
        assert list(conn.execute(select(projects.c.id).where(id_in(projects.c.id, many, postgres))).scalars()) \
            == [ids[1]]
        assert list(conn.execute(select(projects.c.id).where(id_in(projects.c.id, [], postgres)))) == []
    assert changed == 2
    # One parameter for the ids whatever their number (the UPDATE's value is its other one).
    assert [len(parameters) for _, parameters in statements] == [1, 2, 1, 1]
    with engine.connect() as conn:
        assert dict(conn.execute(select(projects.c.id, projects.c.description)).all()) == {
            i: "picked" if i in (ids[0], ids[3]) else "" for i in ids}
