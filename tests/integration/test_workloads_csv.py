"""/workloads.csv: the Workloads table as CSV with the page's filters and sort, every
matching row (not one page), streamed; members only see their projects (issue 14, Export)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from corral.services.export import HEADER, csv_row
from tests.integration.conftest import submit, web_sign_in


def _rows(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert 'attachment; filename="workloads-vision.csv"' == response.headers["content-disposition"]
    reader = csv.DictReader(io.StringIO(response.text))
    assert tuple(reader.fieldnames or ()) == HEADER
    return list(reader)


def test_every_matching_row_with_the_filters_and_sort(world):
    names = [f"job-{i:03d}" for i in range(130)]  # more than the largest page (100)
    for name in names:
        assert submit(world.admin, name=name, resources={"gpu": 1, "cpu": "500m", "memory": "2Gi"}).status_code == 201
    assert submit(world.admin, name="Train-A", type="training", dataset="d").status_code == 201
    assert submit(world.admin, name="other", project="speech").status_code == 201
    client, _ = web_sign_in(world.api, "alice@example.com")

    rows = _rows(client.get("/workloads.csv", params={"project": "vision", "sort": "name"}))
    assert [r["name"] for r in rows] == ["job-%03d" % i for i in range(130)] + ["Train-A"]
    first = rows[0]
    assert first["type"] == "custom" and first["project"] == "vision" and first["cluster"] == "gpu-a"
    assert (first["gpu"], first["cpu_cores"], first["memory_bytes"]) == ("1", "0.5", str(2 * 2**30))
    assert first["status"] == "Pending" and first["created_by"] == "admin@example.com"
    assert datetime.fromisoformat(first["created_at"]).tzinfo is not None

    rows = _rows(client.get("/workloads.csv", params={"project": "vision", "type": "training"}))
    assert [r["name"] for r in rows] == ["Train-A"]
    rows = _rows(client.get("/workloads.csv", params={"project": "vision", "name": "job-12", "sort": "-name"}))
    assert [r["name"] for r in rows] == ["job-129", "job-128", "job-127", "job-126", "job-125", "job-124", "job-123",
                                         "job-122", "job-121", "job-120"]
    # The page's paging does not cut the export.
    assert len(_rows(client.get("/workloads.csv", params={"project": "vision", "page": 3, "page_size": 20}))) == 131


def test_only_the_callers_projects_and_clear_errors(world):
    submit(world.admin, name="secret-plan", project="speech")
    alice, _ = web_sign_in(world.api, "alice@example.com")
    assert alice.get("/workloads.csv", params={"project": "speech"}).status_code == 404
    assert alice.get("/workloads.csv").status_code == 422
    bad = alice.get("/workloads.csv", params={"project": "vision", "sort": "colour"})
    assert bad.status_code == 422 and "Cannot sort by &#39;colour&#39;" in bad.text
    anonymous = world.api.anonymous.get("/workloads.csv", params={"project": "vision"}, follow_redirects=False)
    assert anonymous.status_code in (303, 401) and "secret-plan" not in anonymous.text


def test_text_that_a_spreadsheet_would_run_is_written_as_text():
    row = csv_row({"id": 1, "name": "=HYPERLINK(\"http://evil\")", "type": "custom", "project": "p", "cluster": "c",
                   "resources": {"gpu": 0, "cpu": 2000, "memory": 0}, "status": "Failed",
                   "status_reason": "+cmd|' /C calc'!A0", "created_by": "@someone",
                   "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)})
    assert row[1] == "'=HYPERLINK(\"http://evil\")" and row[9] == "'+cmd|' /C calc'!A0" and row[10] == "'@someone"
    assert row[6] == 2 and row[11] == "2026-01-02T03:04:05+00:00"


def test_the_api_exports_the_same_csv_with_a_token(world):
    """GET /api/v1/workloads.csv: for scripts (a bearer token, no browser session), the
    list's filters, every matching row; another project's rows never."""
    for i in range(3):
        submit(world.admin, name=f"api-{i}", resources={"cpu": "250m"})
    submit(world.admin, name="api-train", type="training", dataset="d")
    submit(world.admin, name="their-secret", project="speech")
    response = world.alice.get("/api/v1/workloads.csv", params={"project": "vision", "name": "api-", "sort": "name",
                                                                "page_size": 1})
    rows = _rows(response)
    assert [r["name"] for r in rows] == ["api-0", "api-1", "api-2", "api-train"]  # every row, page_size ignored
    assert rows[0]["cpu_cores"] == "0.25"
    assert [r["name"] for r in _rows(world.alice.get("/api/v1/workloads.csv", params={
        "project": "vision", "type": "Training"}))] == ["api-train"]
    # Without a project: every project the caller sees (alice: vision only).
    everything = world.alice.get("/api/v1/workloads.csv")
    assert everything.status_code == 200 and "their-secret" not in everything.text
    assert everything.headers["content-disposition"] == 'attachment; filename="workloads-all.csv"'
    # Errors before any CSV: another project's export, a bad filter, no token.
    assert world.alice.get("/api/v1/workloads.csv", params={"project": "speech"}).status_code == 404
    bad = world.alice.get("/api/v1/workloads.csv", params={"project": "vision", "status": "Sleeping"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"
    assert world.api.anonymous.get("/api/v1/workloads.csv", params={"project": "vision"}).status_code == 401
