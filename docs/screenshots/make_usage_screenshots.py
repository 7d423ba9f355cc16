"""Screenshots of use over time from a real run: `corral serve` (a fresh data directory, the
built-in local cluster) driven for MINUTES (default 20) with `sleep` workloads submitted at
random, then the Clusters page's allocation and the default project's quota use, taken in
Chromium.

    .venv/bin/python docs/screenshots/make_usage_screenshots.py [MINUTES] [OUT_DIR]

The charts' tests (tests/e2e/web/test_usage_charts.py) draw what they need in seconds, which
shows little; these show a real queue on this host for twenty minutes.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from _common import start_serve  # noqa: E402

MINUTES = float(sys.argv[1]) if len(sys.argv) > 1 else 20
OUT = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs" / "screenshots"


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="usage-shots-"))
    root.chmod(0o755)
    # Allocation and quota use are recorded every 10 s (not 60): twenty minutes draw a line.
    serve, url, token = start_serve(root / "data", env_extra={"CORRAL_HISTORY_INTERVAL_S": "10"})
    try:
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        rng = random.Random(3)
        end, n = time.time() + MINUTES * 60, 0
        while time.time() < end:
            for _ in range(rng.choice([0, 1, 1, 2, 3])):
                n += 1
                client.post("/api/v1/workloads", json={
                    "type": "custom", "project": "default", "name": f"job-{n}", "command": f"sleep {rng.randint(90, 420)}",
                    "resources": {"cpu": rng.choice(["250m", "500m"]), "memory": rng.choice(["1Gi", "2Gi", "3Gi"])}})
            print(f"{n} submitted", flush=True)
            time.sleep(45)
        password = (root / "data" / "admin-password").read_text().strip()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url + "/sign-in")
            page.get_by_label("Email").fill("admin@localhost")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("button", name="Sign out").wait_for()
            for path, box, name in (("/clusters", "#allocation-local", "cluster-allocation-over-time"),
                                    ("/projects/default", "#quota-charts", "project-quota-use")):
                page.goto(url + path)
                page.locator(f"{box} figure.chart canvas").first.wait_for()
                page.wait_for_timeout(1500)
                page.locator(box).screenshot(path=str(OUT / f"{name}.png"))
            browser.close()
    finally:
        os.killpg(serve.pid, 15)
        serve.wait()


if __name__ == "__main__":
    main()
