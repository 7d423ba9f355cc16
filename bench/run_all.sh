#!/usr/bin/env bash
# Seed both databases with 1,000,000 workloads and run every benchmark on them.
#
#   bench/run_all.sh                  # everything (about 25-35 minutes on 2 cores)
#   SKIP_SEED=1 bench/run_all.sh      # reuse the seeded databases
#   WORKLOADS=20000 bench/run_all.sh  # a quick smoke run
#
# Environment: SQLITE_URL, POSTGRES_URL (the database in it is dropped and re-created),
# WORKLOADS, SKIP_SEED. Results (markdown tables, JSON, plans, server logs) land in
# bench/results/ (git-ignored). Needs wrk for the submission benchmark (apt-get install -y wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SQLITE_URL=${SQLITE_URL:-sqlite:////tmp/corral-bench/corral.db}
POSTGRES_URL=${POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/corral_bench}
WORKLOADS=${WORKLOADS:-1000000}
mkdir -p bench/results

if [[ -z "${SKIP_SEED:-}" ]]; then
  $PY bench/seed.py --database-url "$SQLITE_URL" --workloads "$WORKLOADS" | tee bench/results/seed-sqlite.log
  $PY bench/seed.py --database-url "$POSTGRES_URL" --workloads "$WORKLOADS" | tee bench/results/seed-postgres.log
fi

# Reads first: the submission benchmark adds the newest rows (to the bench-submit project),
# which changes the planner's view of other projects' time-ordered queries.
for url in "$SQLITE_URL" "$POSTGRES_URL"; do
  $PY bench/list_latency.py --database-url "$url"
  $PY bench/server_memory.py --database-url "$url"
  $PY bench/web_page.py --database-url "$url"
done

$PY bench/submit_throughput.py --database-url "$POSTGRES_URL" --workers 1 2 --connections 8 16 32 64 --duration 20
$PY bench/submit_throughput.py --database-url "$SQLITE_URL" --workers 1 --connections 8 32 --duration 20 --no-breakdown

$PY bench/schedule_decision.py
for url in "sqlite:////tmp/corral-adm.db" "postgresql://postgres@127.0.0.1:5432/corral_adm"; do
  $PY bench/admission_throughput.py --database-url "$url" | tee "bench/results/admission-$(basename "$url").txt"
done
$PY bench/scheduler_memory.py | tee bench/results/scheduler-memory.txt
$PY bench/agent_latency.py | tee bench/results/agent-latency.txt

echo
echo "Results:"
ls -1 bench/results/*.md
