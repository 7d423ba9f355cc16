"""Use over time through the real API (issue 14): agents' usage samples in, series out;
retention bounds the tables; another project's member, or an agent of another cluster,
gets nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from corral.db.engine import read_tx, write_tx
from corral.db.tables import clusters, component_usage
from corral.services import usage as usage_service
from corral.services.admission import run_pass
from tests.integration.conftest import heartbeat, submit


def _running(world, name: str = "busy") -> tuple[int, int]:
    wid = submit(world.alice, name=name, resources={"gpu": 2, "cpu": 4, "memory": "8Gi"}).json()["id"]
    run_pass(world.api.engine)
    [comp] = world.alice.get(f"/api/v1/workloads/{wid}").json()["components"]
    return wid, comp["id"]


def _sample(cid: int, at: datetime, cpu: int = 950, memory: int = 300 << 20) -> dict:
    return {"component_id": cid, "at": at.isoformat(), "cpu": cpu, "memory": memory, "gpu_utilization": 87.5,
            "gpu_memory": 40 << 30}


def test_samples_in_series_out_and_only_for_members(world):
    wid, cid = _running(world)
    agent = world.api.as_token(world.agent_token)
    now = datetime.now(UTC)
    posted = agent.post("/api/v1/agent/usage", json={"samples": [
        _sample(cid, now - timedelta(seconds=20), cpu=900), _sample(cid, now - timedelta(seconds=10), cpu=1000)]})
    assert posted.status_code == 200 and posted.json() == {"accepted": 2}, posted.text

    series = world.alice.get(f"/api/v1/workloads/{wid}/usage")
    assert series.status_code == 200, series.text
    [comp] = series.json()["components"]
    assert comp["component_id"] == cid and comp["samples"] == 2
    assert comp["cpu"] == [0.9, 1] and comp["memory"] == [300 << 20] * 2
    assert comp["gpu_utilization"] == [87.5, 87.5] and comp["gpu_memory"] == [40 << 30] * 2
    assert comp["t"] == sorted(comp["t"]) and abs(comp["t"][1] - (now - timedelta(seconds=10)).timestamp()) < 0.01
    # A range that ends before them: none.
    earlier = world.alice.get(f"/api/v1/workloads/{wid}/usage",
                              params={"until": (now - timedelta(minutes=5)).isoformat()}).json()
    assert earlier["components"][0]["samples"] == 0

    # Another project's member, and a user of no project: as if it did not exist.
    for outsider in (world.bob, world.carol):
        refused = outsider.get(f"/api/v1/workloads/{wid}/usage")
        assert refused.status_code == 404, refused.text
        assert "samples" not in refused.text
    assert world.bob.get("/api/v1/projects/vision/quota-history").status_code == 404
    assert world.alice.get("/api/v1/clusters/gpu-a/allocation-history").status_code == 403
    assert world.api.anonymous.get(f"/api/v1/workloads/{wid}/usage").status_code == 401

    # A bad range is explained.
    backwards = world.alice.get(f"/api/v1/workloads/{wid}/usage", params={
        "since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()})
    assert backwards.status_code == 422 and "since must be before until" in backwards.text


def test_an_agent_speaks_only_for_its_own_cluster(world):
    wid, cid = _running(world)
    other = world.admin.post("/api/v1/clusters", json={"name": "gpu-b", "kind": "kubernetes",
                                                       "capacity": {"gpu": 4, "cpu": 8, "memory": "64Gi"}})
    assert other.status_code == 201
    intruder = world.api.as_token(other.json()["agent_token"])
    answer = intruder.post("/api/v1/agent/usage", json={"samples": [_sample(cid, datetime.now(UTC))]})
    assert answer.status_code == 200 and answer.json() == {"accepted": 0}
    assert world.alice.get(f"/api/v1/workloads/{wid}/usage").json()["components"][0]["samples"] == 0
    # Users' tokens are not agent tokens; nonsense is refused with the field named.
    assert world.admin.post("/api/v1/agent/usage", json={"samples": []}).status_code == 401
    bad = world.api.as_token(world.agent_token).post("/api/v1/agent/usage", json={"samples": [
        {**_sample(cid, datetime.now(UTC)), "gpu_utilization": 250}]})
    assert bad.status_code == 422 and "gpu_utilization" in bad.text


def test_retention_drops_old_samples_and_caps_each_component(world):
    wid, cid = _running(world)
    engine = world.api.engine
    retention = usage_service.Retention(usage_days=1, max_samples_per_component=50)
    now = datetime.now(UTC)
    old = [usage_service.Sample(cid, now - timedelta(days=2, seconds=i), 1, 1, None, None) for i in range(30)]
    fresh = [usage_service.Sample(cid, now - timedelta(seconds=i), i, 1, None, None) for i in range(80)]
    with write_tx(engine) as conn:
        gpu_a = conn.execute(select(clusters.c.id).where(clusters.c.name == "gpu-a")).scalar_one()
        assert usage_service.record_usage(conn, gpu_a, old + fresh, retention) == {"accepted": 110}
    with read_tx(engine) as conn:
        kept = conn.execute(select(component_usage.c.at, component_usage.c.cpu)
                            .where(component_usage.c.component_id == cid)
                            .order_by(component_usage.c.at)).all()
    assert len(kept) == 50  # the newest 50; the two-day-old ones are gone
    assert [r.cpu for r in kept] == list(range(49, -1, -1))


def test_quota_use_and_allocation_are_sampled_on_heartbeats(world):
    wid, _ = _running(world)
    engine = world.api.engine
    # The world's first heartbeat sampled the allocation (no quotas, nothing admitted yet);
    # the next sample is due history_interval_s later (here: forced 5 s on).
    with write_tx(engine) as conn:
        gpu_a = conn.execute(select(clusters.c.id).where(clusters.c.name == "gpu-a")).scalar_one()
        assert usage_service.record_history_if_due(conn, gpu_a, usage_service.Retention(history_interval_s=1),
                                                   now=datetime.now(UTC) + timedelta(seconds=5))
    # Within the interval a heartbeat takes no sample.
    assert heartbeat(world.api, world.agent_token).status_code == 200

    history = world.alice.get("/api/v1/projects/vision/quota-history",
                              params={"until": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()})
    assert history.status_code == 200, history.text
    [gpu] = history.json()["clusters"]
    assert gpu["cluster"] == "gpu-a" and gpu["samples"] == 1
    assert gpu["gpu"] == {"used": [2], "guaranteed": [8], "borrowed": [0], "limit": [8]}
    assert gpu["cpu"]["used"] == [4] and gpu["memory"]["used"] == [8 << 30]
    speech = world.bob.get("/api/v1/projects/speech/quota-history",
                           params={"until": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}).json()
    assert speech["clusters"][0]["gpu"]["used"] == [0]

    allocation = world.admin.get("/api/v1/clusters/gpu-a/allocation-history",
                                 params={"until": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}).json()
    assert allocation["samples"] == 2
    assert allocation["gpu"] == {"capacity": [16, 16], "allocated": [0, 2], "guaranteed": [0, 16]}
    assert allocation["cpu"]["capacity"] == [128, 128] and allocation["cpu"]["guaranteed"] == [0, 128]  # cores
    assert world.admin.get("/api/v1/clusters/nope/allocation-history").status_code == 404


def test_the_charting_library_is_served_by_corral(api):
    """uPlot is bundled (static/vendor/), served from Corral's origin, cached by its hash;
    nothing outside the static files is reachable through the path."""
    page = api.anonymous.get("/sign-in").text
    assert "/static/vendor/" not in page  # only pages with charts load it
    js = api.anonymous.get("/static/vendor/uPlot.iife.min.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert js.text.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert "MIT" in api.anonymous.get("/static/vendor/uPlot.LICENSE.txt").text
    assert api.anonymous.get("/static/charts.js").status_code == 200
    for path in ("/static/vendor/..%2F..%2Ftemplating.py", "/static/vendor/%2E%2E/app.css", "/static/vendor/nope.js"):
        assert api.anonymous.get(path).status_code == 404, path


def test_a_steady_agent_stays_near_the_cap(world):
    """One sample per component per post (the agent's way): the cap is checked now and then,
    so a component overshoots it by a few posts' worth at most."""
    _, cid = _running(world)
    retention = usage_service.Retention(usage_days=1, max_samples_per_component=20)
    start = datetime.now(UTC) - timedelta(hours=1)
    with write_tx(world.api.engine) as conn:
        gpu_a = conn.execute(select(clusters.c.id).where(clusters.c.name == "gpu-a")).scalar_one()
        for i in range(2000):
            usage_service.record_usage(conn, gpu_a, [usage_service.Sample(cid, start + timedelta(seconds=i), i, 1,
                                                                         None, None)], retention)
    with read_tx(world.api.engine) as conn:
        kept = conn.execute(select(component_usage.c.cpu).where(component_usage.c.component_id == cid)).scalars().all()
    # Past the cap by more than 16 x CAP_CHECK_ONE_IN posts only if 800 posts in a row were
    # not checked: (49/50)^800 < 1e-7.
    assert 20 <= len(kept) <= 20 + 16 * usage_service.CAP_CHECK_ONE_IN, len(kept)
    assert max(kept) == 1999  # the newest stay


def test_ranges_at_the_edges_of_time_are_refused_or_answered(world):
    wid, _ = _running(world)
    for params, status in (({"until": "0001-01-01T01:00:00Z"}, 422), ({"since": "2026-01-01T00:00:00"}, 422),
                           ({"since": "0001-01-01T00:00:00Z"}, 422),
                           ({"since": "9999-12-31T00:00:00Z", "until": "9999-12-31T23:00:00Z"}, 200)):
        answer = world.alice.get(f"/api/v1/workloads/{wid}/usage", params=params)
        assert answer.status_code == status, (params, answer.text)


def test_a_sample_from_the_future_is_clamped_to_the_servers_clock(world):
    wid, cid = _running(world)
    agent = world.api.as_token(world.agent_token)
    future = datetime.now(UTC) + timedelta(days=365)
    assert agent.post("/api/v1/agent/usage", json={"samples": [_sample(cid, future)]}).json() == {"accepted": 1}
    [comp] = world.alice.get(f"/api/v1/workloads/{wid}/usage").json()["components"]
    assert comp["samples"] == 1 and comp["t"][0] <= datetime.now(UTC).timestamp()


def test_a_long_range_is_bucketed_to_at_most_max_points(world):
    wid, cid = _running(world)
    now = datetime.now(UTC)
    samples = [usage_service.Sample(cid, now - timedelta(seconds=2 * (5000 - i)), 1000, i * 1000, 50.0, None)
               for i in range(5000)]
    with write_tx(world.api.engine) as conn:
        gpu_a = conn.execute(select(clusters.c.id).where(clusters.c.name == "gpu-a")).scalar_one()
        usage_service.record_usage(conn, gpu_a, samples, usage_service.Retention())
    [comp] = world.alice.get(f"/api/v1/workloads/{wid}/usage").json()["components"]
    # 2.8 hours of the 6 asked for, in buckets of 6 h / MAX_POINTS (10.8 s): about 930 points.
    assert comp["samples"] == 5000 and 900 <= len(comp["t"]) <= 950
    assert comp["t"] == sorted(comp["t"]) and set(comp["cpu"]) == {1} and set(comp["gpu_utilization"]) == {50.0}
    assert comp["memory"] == sorted(comp["memory"]) and comp["memory"][-1] > 4990 * 1000  # means, in order
    assert comp["gpu_memory"] == [None] * len(comp["t"])
    # A short range of the same samples: every one of them.
    short = world.alice.get(f"/api/v1/workloads/{wid}/usage",
                            params={"since": (now - timedelta(minutes=10)).isoformat()}).json()["components"][0]
    assert short["samples"] == len(short["t"]) == 300 and short["memory"][-1] == 4999 * 1000
