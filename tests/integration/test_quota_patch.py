"""PATCH /projects/{p}/quotas/{c}: only what is given changes, read and written in one
transaction, so two administrators changing different fields at once both keep their
change (issue 14: the read-then-write race of `quotas set`)."""

from __future__ import annotations

import threading
import time

from sqlalchemy import event

from corral.db.engine import read_tx, write_tx
from corral.services import quotas as quota_service
from corral.services.principal import Principal
from corral.services.users import get_user_by_email

GI = 2**30


def _patch(client, body, project="vision"):  # type: ignore[no-untyped-def]
    response = client.patch(f"/api/v1/projects/{project}/quotas/gpu-a", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_patch_changes_only_the_dimensions_given(world):
    # vision: guaranteed gpu 8, cpu 64, memory 512Gi; each limit equal to its guarantee.
    quota = _patch(world.admin, {"guaranteed": {"gpu": 4}})
    assert quota["guaranteed"] == {"gpu": 4, "cpu": 64, "memory": 512 * GI, "ephemeral_storage": 0}
    assert quota["limit"]["gpu"] == 4  # a hard limit follows its guarantee
    quota = _patch(world.admin, {"limit": {"cpu": "96", "memory": None}})
    assert quota["guaranteed"]["cpu"] == 64 and quota["limit"]["cpu"] == 96
    assert quota["limit"]["memory"] is None and quota["limit"]["gpu"] == 4
    quota = _patch(world.admin, {"guaranteed": {"cpu": "500m"}})
    assert quota["limit"]["cpu"] == 96  # a limit above its guarantee is kept
    quota = _patch(world.admin, {"hard": True})
    assert quota["limit"] == quota["guaranteed"]
    quota = _patch(world.admin, {"limit": "unbounded"})
    assert set(quota["limit"].values()) == {None}
    # A new quota: what is not given is 0, each limit its guarantee.
    assert world.admin.delete("/api/v1/projects/speech/quotas/gpu-a").status_code == 204
    quota = _patch(world.admin, {"guaranteed": {"memory": "16Gi"}}, project="speech")
    assert quota["guaranteed"] == {"gpu": 0, "cpu": 0, "memory": 16 * GI, "ephemeral_storage": 0}
    assert quota["limit"] == quota["guaranteed"]


def test_patch_is_for_admins_and_checks_what_it_is_given(world):
    refused = world.alice.patch("/api/v1/projects/vision/quotas/gpu-a", json={"guaranteed": {"gpu": 1}})
    assert refused.status_code == 403
    bad = world.admin.patch("/api/v1/projects/vision/quotas/gpu-a", json={"guaranteed": {"cpu": "lots"}})
    assert bad.status_code == 422 and "not a CPU quantity" in bad.text
    below = world.admin.patch("/api/v1/projects/vision/quotas/gpu-a", json={"limit": {"gpu": 2}})
    assert below.status_code == 422 and "below guaranteed" in below.text
    both = world.admin.patch("/api/v1/projects/vision/quotas/gpu-a", json={"limit": "unbounded", "hard": True})
    assert both.status_code == 422
    missing = world.admin.patch("/api/v1/projects/vision/quotas/nowhere", json={"guaranteed": {"gpu": 1}})
    assert missing.status_code == 404


def test_two_admins_changing_different_fields_at_once_both_keep_theirs(world):
    """The first change is held between its read and its write; the second starts then.
    Had the second read the quota before the first wrote it, it would write the old value
    of the first one's field back."""
    engine = world.api.engine
    with read_tx(engine) as conn:
        admin = get_user_by_email(conn, "admin@example.com")
    principal = Principal(admin["id"], admin["email"], "admin")
    first_has_read = threading.Event()
    holder: list[int] = []

    def hold_the_first_write(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE QUOTAS") and threading.get_ident() in holder:
            first_has_read.set()
            time.sleep(0.5)

    def change(guaranteed: dict[str, int], hold: bool) -> None:
        if hold:
            holder.append(threading.get_ident())
        else:
            assert first_has_read.wait(10)
        with write_tx(engine) as conn:
            quota_service.update_quota(conn, principal, "vision", "gpu-a", guaranteed=guaranteed, limit={})

    event.listen(engine, "before_cursor_execute", hold_the_first_write)
    try:
        for round_, (first, second) in enumerate([({"gpu": 3}, {"cpu": 7000}), ({"memory": 9 * GI}, {"gpu": 5}),
                                                  ({"cpu": 11000}, {"memory": 13 * GI})]):
            first_has_read.clear()
            holder.clear()
            threads = [threading.Thread(target=change, args=(first, True)),
                       threading.Thread(target=change, args=(second, False))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            quota = world.admin.get("/api/v1/projects/vision/quotas/gpu-a").json()
            for name, value in {**first, **second}.items():
                shown = value / 1000 if name == "cpu" else value  # the API says cores
                assert quota["guaranteed"][name] == shown, (round_, quota["guaranteed"])
    finally:
        event.remove(engine, "before_cursor_execute", hold_the_first_write)
