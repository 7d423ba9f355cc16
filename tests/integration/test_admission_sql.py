"""The admission pass's ``id_in``: a chunk of ids as one parameter (an array on PostgreSQL,
a JSON array on SQLite) picks exactly those rows, in a SELECT and in an UPDATE."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from corral.db.engine import write_tx
from corral.db.tables import projects
from corral.services.admission_sql import CHUNK, id_in
from corral.services.clock import utcnow


def test_id_in_picks_exactly_the_ids_given(engine):
    postgres = engine.dialect.name == "postgresql"
    with write_tx(engine) as conn:
        ids = [conn.execute(insert(projects).values(name=f"p{i}", created_at=utcnow()).returning(projects.c.id))
               .scalar_one() for i in range(5)]
    asked = [ids[0], ids[3], ids[3], 10**12]  # a repeat, and an id no row has
    with write_tx(engine) as conn:
        assert set(conn.execute(select(projects.c.id).where(id_in(projects.c.id, asked, postgres))).scalars()) \
            == {ids[0], ids[3]}
        changed = conn.execute(update(projects).where(id_in(projects.c.id, asked, postgres))
                               .values(description="picked")).rowcount
        # A whole chunk's worth of ids (mostly absent) in one parameter.
        many = [ids[1], *range(10**12, 10**12 + CHUNK - 1)]
        assert list(conn.execute(select(projects.c.id).where(id_in(projects.c.id, many, postgres))).scalars()) \
            == [ids[1]]
    assert changed == 2
    with engine.connect() as conn:
        assert dict(conn.execute(select(projects.c.id, projects.c.description)).all()) == {
            i: "picked" if i in (ids[0], ids[3]) else "" for i in ids}
