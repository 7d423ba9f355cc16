"""Seed a Corral database with a realistic workload history, fast.

    .venv/bin/python bench/seed.py --database-url sqlite:////tmp/corral-bench/corral.db --workloads 1000000
    .venv/bin/python bench/seed.py --database-url postgresql://postgres@127.0.0.1:5432/corral_bench --workloads 1000000

The database is dropped and re-created (SQLite: the file; PostgreSQL: the database named
in the URL, through the server's ``postgres`` database), migrated with
``corral.db.migrate.upgrade``, then filled:

* users (an admin, 40 people, a submitter), 10 clusters (agents heard from now), 1,000
  projects with members and quotas: all through the services, as the API would write them;
* 1,000,000 workloads (default): 3 projects of 200,000 each (``--big-size``), the rest spread
  over 997 small projects with a long-tailed size distribution; 8 types; all 10 statuses
  (Failed 8%, Added rare); names like ``llama-3-8b-finetune-lr3e5-0421`` where "llama" is in
  ~18.5% of names and "quokka" in 11 names of the first big project; specs as
  ``parse_spec(...).model_dump`` gives them; clocks consistent with each status;
* one or two components per workload (``--no-components`` to skip), with statuses that
  aggregate to the workload's status by ``aggregate_status``;
* ``workload_counts`` and ``project_usage`` exactly as the status writer keeps them;
* name search: on SQLite the migration's FTS5 triggers fill ``workload_names`` as rows are
  inserted; on PostgreSQL the GIN trigram index is built after the COPY.

Bulk-load tricks that do not change what is stored: rows are written with SQLAlchemy's own
bind processors (so dates and JSON are spelt exactly as the app spells them) through
``executemany`` (SQLite) or ``COPY`` (PostgreSQL); the workloads/components secondary
indexes (and PostgreSQL foreign keys) are dropped before the load and re-created from their
own saved DDL afterwards (foreign keys re-validated); PostgreSQL then gets VACUUM ANALYZE
(what autovacuum would do). SQLite gets no ANALYZE unless ``--sqlite-analyze``: the app
never runs it, so the benchmarks see the planner a deployment sees.

Consistency is checked at the end (counts per key against the table, FTS against LIKE).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

import _common as C  # noqa: E402
from corral.db.engine import make_engine, normalise_url, write_tx  # noqa: E402
from corral.db.migrate import upgrade  # noqa: E402
from corral.db.tables import components, events, project_usage, workload_counts, workloads  # noqa: E402
from corral.domain.resources import Limit, Resources  # noqa: E402
from corral.domain.statuses import FINISHED_STATUSES, WorkloadStatus  # noqa: E402
from corral.domain.workloads import SERVICE_TYPES, WorkloadType, is_preemptible, plan_components  # noqa: E402
from corral.services import clusters as cluster_service  # noqa: E402
from corral.services import projects as project_service  # noqa: E402
from corral.services import quotas as quota_service  # noqa: E402
from corral.services import users as user_service  # noqa: E402
from corral.services.principal import SYSTEM, Principal  # noqa: E402
from corral.services.workloads import QUEUED_REASON, parse_spec  # noqa: E402

GI = 2**30
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


# --------------------------------------------------------------------------- vocabulary

FIRST = ["maria", "james", "wei", "aisha", "lucas", "sofia", "arjun", "emma", "kenji", "olivia", "mateo", "nora",
         "ahmed", "chloe", "ivan", "priya", "noah", "lena", "omar", "yuki", "david", "fatima", "samuel", "ines",
         "tomas", "mei", "daniel", "sara", "hugo", "anna", "leo", "zara", "felix", "julia", "ravi", "elena",
         "marco", "amara", "victor", "hana"]
LAST = ["garcia", "smith", "zhang", "khan", "silva", "rossi", "patel", "muller", "tanaka", "brown", "lopez",
        "berg", "hassan", "martin", "petrov", "iyer", "wilson", "novak", "haddad", "sato", "cohen", "ali",
        "okafor", "costa", "dvorak", "lin", "kim", "larsen", "dubois", "nowak", "park", "ahmed", "weber",
        "santos", "gupta", "ivanova", "ricci", "mensah", "moreau", "mori"]

# (family, hf repo, weight). Families containing "llama" weigh 18.5% of family-based names.
FAMILIES = [
    ("llama-3-8b", "meta-llama/Meta-Llama-3-8B", 7.5), ("llama-3-70b", "meta-llama/Meta-Llama-3-70B", 4.0),
    ("llama-2-13b", "meta-llama/Llama-2-13b-hf", 3.0), ("codellama-7b", "meta-llama/CodeLlama-7b-hf", 2.0),
    ("tinyllama-1b", "TinyLlama/TinyLlama-1.1B", 1.0),
    ("mistral-7b", "mistralai/Mistral-7B-v0.3", 9.0), ("mixtral-8x7b", "mistralai/Mixtral-8x7B-v0.1", 5.0),
    ("qwen2-7b", "Qwen/Qwen2-7B", 8.0), ("qwen2-72b", "Qwen/Qwen2-72B", 3.0), ("gemma-2b", "google/gemma-2b", 5.0),
    ("gemma-7b", "google/gemma-7b", 5.0), ("phi-3-mini", "microsoft/Phi-3-mini-4k-instruct", 6.0),
    ("falcon-40b", "tiiuae/falcon-40b", 2.0), ("bert-base", "google-bert/bert-base-uncased", 6.0),
    ("t5-large", "google-t5/t5-large", 3.0), ("gpt2-xl", "openai-community/gpt2-xl", 2.0),
    ("deepseek-coder-6.7b", "deepseek-ai/deepseek-coder-6.7b-base", 4.0),
    ("starcoder2-15b", "bigcode/starcoder2-15b", 3.0), ("sdxl-base", "stabilityai/stable-diffusion-xl-base-1.0", 4.0),
    ("whisper-large-v3", "openai/whisper-large-v3", 4.0), ("vit-huge", "google/vit-huge-patch14-224-in21k", 3.0),
    ("resnet-152", "microsoft/resnet-152", 3.0), ("clip-vit-l", "openai/clip-vit-large-patch14", 3.0),
    ("olmo-7b", "allenai/OLMo-7B", 2.5),
]
_llama = sum(w for f, _, w in FAMILIES if "llama" in f)
_other = sum(w for f, _, w in FAMILIES if "llama" not in f)
# Scale so that llama families are 18.5% of all names (5% of names are family-less).
_share = 0.185 / 0.95
FAMILY_W = [w * (_share / _llama if "llama" in f else (1 - _share) / _other) for f, _, w in FAMILIES]

TASKS = {
    "model_download": ["download", "mirror", "pull", "fetch"],
    "inference": ["serve", "infer", "endpoint", "api", "chat"],
    "training": ["train", "classifier", "train-from-ckpt", "distill"],
    "pre_training": ["pretrain", "pt-stage1", "pt-stage2", "continued-pt"],
    "fine_tuning": ["finetune", "sft", "lora", "qlora", "dpo", "instruct-ft"],
    "evaluation": ["eval", "bench", "mmlu", "humaneval", "gsm8k", "helm"],
    "workspace": ["notebook", "dev", "ws", "jupyter", "vscode"],
    "custom": ["job", "etl", "preprocess", "sweep", "tokenize", "export-onnx"],
}
VARIANTS = ["lr3e5", "lr1e4", "lr2e5", "bs32", "bs64", "bs128", "r16", "r64", "ep3", "ep10", "v2", "v3", "seed42",
            "seed7", "fp8", "bf16", "ctx8k", "ctx32k", "warmup", "ablation", "baseline", "rerun", "final", "exp12",
            "exp37", "a100", "h100", "int4", "awq", "gptq"]
DATASETS = ["s3://datasets/alpaca-clean", "s3://datasets/openwebtext", "hf://HuggingFaceH4/ultrachat_200k",
            "s3://datasets/internal-support-tickets", "hf://allenai/c4", "s3://datasets/imagenet-1k",
            "s3://datasets/code-review-pairs"]

TYPE_W = {"model_download": 8, "inference": 12, "training": 20, "pre_training": 5, "fine_tuning": 18,
          "evaluation": 15, "workspace": 10, "custom": 12}
# Failed 8%: a status filter on a 200k project matches ~16k rows.
STATUS_W = {"Added": 0.05, "Pending": 5.0, "Running": 10.0, "Complete": 55.0, "Failed": 8.0, "Deleting": 0.5,
            "Deleted": 15.0, "DeleteFailed": 0.3, "Terminated": 5.0, "Unknown": 1.15}
FAIL_REASONS = ["exit code 1", "OOMKilled", "exit code 137", "CUDA error: out of memory", "NCCL timeout after 1800s",
                "ImagePullBackOff", "exit code 2", "node lost", "loss became NaN", "evicted: node pressure"]
# Resource profiles per type: (gpu, cpu cores, memory Gi, replicas)
PROFILES = {
    "model_download": [(0, 2, 8, 1), (0, 4, 16, 1)],
    "inference": [(1, 4, 32, 1), (1, 8, 64, 2), (2, 16, 128, 1), (4, 32, 256, 2), (8, 64, 512, 1)],
    "training": [(1, 8, 64, 1), (2, 16, 128, 1), (4, 32, 256, 1), (8, 64, 512, 1)],
    "pre_training": [(8, 96, 1024, 1), (8, 64, 768, 1)],
    "fine_tuning": [(1, 8, 64, 1), (2, 16, 128, 1), (4, 32, 256, 1), (8, 64, 512, 1)],
    "evaluation": [(1, 8, 64, 1), (2, 16, 96, 1), (0, 4, 16, 1)],
    "workspace": [(0, 2, 8, 1), (1, 4, 32, 1), (1, 8, 64, 1)],
    "custom": [(0, 1, 4, 1), (0, 4, 16, 1), (1, 8, 32, 1), (2, 16, 64, 1)],
}
PRIORITIES = (["medium"] * 8) + ["high", "low"]
CLUSTERS = [("gpu-a100-east", "kubernetes"), ("gpu-a100-west", "kubernetes"), ("gpu-h100-east", "kubernetes"),
            ("gpu-h100-west", "kubernetes"), ("gpu-l40s-1", "kubernetes"), ("hpc-slurm-1", "slurm"),
            ("hpc-slurm-2", "slurm"), ("edge-t4-1", "kubernetes"), ("research-mi300", "kubernetes"),
            ("dev-local", "local")]
TEAMS = ["nlp", "vision", "speech", "recsys", "search", "ads", "fraud", "robotics", "genomics", "finance", "legal",
         "support", "safety", "infra", "data", "growth", "health", "maps", "music", "video"]


# --------------------------------------------------------------------------- database set-up

def reset_database(url: str) -> None:
    backend = C.dialect_of(url)
    if backend == "sqlite":
        path = Path(make_url(url).database)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    import psycopg

    name = make_url(url).database
    admin = make_url(C.plain_pg_url(url)).set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def seed_metadata(engine: Any, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    """Users, clusters, projects, members, quotas: through the services, in one transaction."""
    people = []
    for i in range(args.users):
        people.append(f"{FIRST[i % len(FIRST)]}.{LAST[(i * 7) % len(LAST)]}@example.com")
    assert C.MEMBER_EMAIL in people
    with write_tx(engine) as conn:
        admin_row = user_service.create_user(conn, email=C.ADMIN_EMAIL, display_name="Bench Admin", role="admin",
                                             actor=SYSTEM)
        admin = Principal(admin_row["id"], admin_row["email"], "admin")
        user_ids = {}
        for email in [*people, C.SUBMIT_EMAIL]:
            user_ids[email] = user_service.create_user(conn, email=email, display_name=None, role="member",
                                                       actor=SYSTEM)["id"]
        cluster_ids = {}
        for name, kind in CLUSTERS[: args.clusters]:
            _, c = cluster_service.create_cluster(
                conn, admin, name=name, kind=kind, description=f"{kind} cluster {name}",
                capacity=Resources(4096, 4096 * 64_000, 4096 * 512 * GI, 4096 * 4 * 2**40), unhealthy_after_s=90)
            cluster_service.record_heartbeat(conn, c["id"], capacity=None, nodes=None, unhealthy_after_s=90)
            cluster_ids[name] = c["id"]
        cluster_names = list(cluster_ids)

        n_small = args.projects - len(C.BIG_PROJECTS)
        names = list(C.BIG_PROJECTS)
        for i in range(n_small):
            names.append(f"{TEAMS[i % len(TEAMS)]}-{['exp', 'prod', 'dev', 'lab', 'poc'][i % 5]}-{i:03d}")
        projects: list[dict[str, Any]] = []
        for idx, pname in enumerate(names):
            p = project_service.create_project(conn, admin, name=pname, description=f"bench project {pname}")
            big = idx < len(C.BIG_PROJECTS)
            if big:
                members = [C.MEMBER_EMAIL] + rng.sample([e for e in people if e != C.MEMBER_EMAIL], 29)
                pclusters = list(cluster_names)
            else:
                members = rng.sample(people, rng.randint(2, 6))
                pclusters = rng.sample(cluster_names, rng.randint(1, 3))
            for email in members:
                project_service.add_member(conn, admin, pname, email)
            for cname in pclusters:
                g = Resources(64, 64 * 32_000, 64 * 256 * GI, 0) if big else Resources(2, 64_000, 256 * GI, 0)
                quota_service.set_quota(conn, admin, pname, cname, guaranteed=g, limit=Limit())
            # Zipf-like spread over members (creators) and clusters.
            cw = [1 / (k + 1) ** 0.8 for k in range(len(members))]
            kw = [1 / (k + 1) ** 0.7 for k in range(len(pclusters))]
            projects.append({
                "id": p["id"], "name": pname, "big": big,
                "creators": [(e, user_ids[e]) for e in members], "creator_cum": list(itertools.accumulate(cw)),
                "clusters": [(cluster_ids[c], c) for c in pclusters], "cluster_cum": list(itertools.accumulate(kw)),
            })
        # The submission benchmark's project: empty, one member, quota on two clusters, no limit.
        project_service.create_project(conn, admin, name=C.SUBMIT_PROJECT, description="submission benchmark")
        project_service.add_member(conn, admin, C.SUBMIT_PROJECT, C.SUBMIT_EMAIL)
        for cname in cluster_names[:2]:
            quota_service.set_quota(conn, admin, C.SUBMIT_PROJECT, cname, guaranteed=Resources(8, 64_000, 512 * GI, 0),
                                    limit=Limit())
    return {"projects": projects, "clusters": cluster_ids}


def project_sizes(n: int, n_projects: int, big: int, big_size: int, rng: random.Random) -> list[int]:
    rest = n - big * big_size
    n_small = n_projects - big
    assert rest >= n_small, "too few workloads for that many projects"
    weights = [rng.paretovariate(1.2) for _ in range(n_small)]
    total = sum(weights)
    cap = max(1, rest // 25)
    sizes = [max(1, min(cap, int(rest * w / total))) for w in weights]
    # Fix the sum exactly.
    diff = rest - sum(sizes)
    i = 0
    while diff != 0:
        j = i % n_small
        if diff > 0 and sizes[j] < cap:
            sizes[j] += 1
            diff -= 1
        elif diff < 0 and sizes[j] > 1:
            sizes[j] -= 1
            diff += 1
        i += 1
    return [big_size] * big + sizes


# --------------------------------------------------------------------------- rows

class Generator:
    def __init__(self, args: argparse.Namespace, meta: dict[str, Any], rng: random.Random) -> None:
        self.rng = rng
        self.args = args
        self.projects = meta["projects"]
        self.n = args.workloads
        sizes = project_sizes(self.n, len(self.projects), len(C.BIG_PROJECTS), args.big_size, rng)
        assign = [i for i, s in enumerate(sizes) for _ in range(s)]
        rng.shuffle(assign)
        self.assign = assign
        big0 = [i for i, p in enumerate(assign) if p == 0]
        others = [i for i, p in enumerate(assign) if p >= len(C.BIG_PROJECTS)]
        self.rare = set(rng.sample(big0, min(11, len(big0)))) | set(rng.sample(others, min(4, len(others))))
        self.end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        self.start = self.end - timedelta(days=730)
        self.step = (self.end - self.start) / self.n
        self.types = list(TYPE_W)
        self.type_cum = list(itertools.accumulate(TYPE_W.values()))
        self.statuses = list(STATUS_W)
        self.status_cum = list(itertools.accumulate(STATUS_W.values()))
        self.family_cum = list(itertools.accumulate(FAMILY_W))
        self.templates: dict[tuple[str, int, int, str], tuple[dict[str, Any], Resources, list[Any], bool]] = {}
        self.counts: Counter[tuple[int, int, str, str]] = Counter()
        self.usage: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        self.component_id = 0

    def template(self, type_: str, fam: int, prof: int, priority: str) -> tuple[dict[str, Any], Resources, list, bool]:
        key = (type_, fam, prof, priority)
        t = self.templates.get(key)
        if t is None:
            gpu, cpu, mem, replicas = PROFILES[type_][prof]
            repo = FAMILIES[fam][1]
            body: dict[str, Any] = {"type": type_, "name": "x", "project": "p", "cluster": "c", "priority": priority,
                                    "resources": {"gpu": gpu, "cpu": cpu, "memory": f"{mem}Gi"}}
            ds = DATASETS[fam % len(DATASETS)]
            if type_ == "model_download":
                body |= {"source": repo, "model_name": FAMILIES[fam][0]}
            elif type_ == "inference":
                body |= {"model": repo, "replicas": replicas}
            elif type_ == "training":
                body |= {"dataset": ds, "base_model": repo, "image": "ghcr.io/acme/trainer:2.4",
                         "command": ["python", "train.py", "--config", "configs/base.yaml"]}
            elif type_ == "pre_training":
                body |= {"dataset": ds, "image": "ghcr.io/acme/megatron:24.05",
                         "command": "torchrun --nproc-per-node 8 pretrain.py", "env": {"NCCL_DEBUG": "WARN"}}
            elif type_ == "fine_tuning":
                body |= {"base_model": repo, "dataset": ds, "command": "python finetune.py --epochs 3",
                         "output_model": f"{FAMILIES[fam][0]}-ft"}
            elif type_ == "evaluation":
                body |= {"model": repo, "tasks": ["mmlu", "gsm8k"], "command": "lm_eval --model hf"}
            elif type_ == "workspace":
                body |= {"flavor": "jupyterlab" if prof % 2 == 0 else "vscode"}
            else:
                body |= {"command": "python run.py", "image": "python:3.12-slim"}
            spec = parse_spec(body)
            plans = [(p.kind, p.requests) for p in plan_components(spec)]
            request = Resources.total([r for _, r in plans])
            t = (spec.model_dump(mode="json", exclude_none=True), request, plans, is_preemptible(spec))
            self.templates[key] = t
        return t

    def rows(self, lo: int, hi: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """Workloads with ids lo+1..hi (as dicts of Python values), their components and events."""
        rng = self.rng
        k = hi - lo
        types = rng.choices(self.types, cum_weights=self.type_cum, k=k)
        statuses = rng.choices(self.statuses, cum_weights=self.status_cum, k=k)
        fams = rng.choices(range(len(FAMILIES)), cum_weights=self.family_cum, k=k)
        wl: list[dict[str, Any]] = []
        comps: list[dict[str, Any]] = []
        evs: list[dict[str, Any]] = []
        for j in range(k):
            i = lo + j
            wid = i + 1
            proj = self.projects[self.assign[i]]
            type_, status, fam = types[j], statuses[j], fams[j]
            if status == "Terminated" and type_ not in SERVICE_TYPES:
                type_ = "inference" if rng.random() < 0.6 else "workspace"  # only services terminate
            cid, cname = proj["clusters"][bisect.bisect(proj["cluster_cum"], rng.random() * proj["cluster_cum"][-1])]
            email, uid = proj["creators"][bisect.bisect(proj["creator_cum"], rng.random() * proj["creator_cum"][-1])]
            prof = rng.randrange(len(PROFILES[type_]))
            priority = PRIORITIES[rng.randrange(len(PRIORITIES))]
            spec_t, request, plans, preemptible = self.template(type_, fam, prof, priority)
            created = self.start + self.step * i + timedelta(microseconds=rng.randrange(1_000_000))
            mmdd = created.strftime("%m%d")
            task = rng.choice(TASKS[type_])
            if i in self.rare:
                name = f"{FAMILIES[fam][0]}-{task}-{C.RARE_WORD}-{mmdd}"
            elif rng.random() < 0.05:
                name = f"{email.split('.')[0]}-{task}-{rng.randint(1, 99)}"
            elif rng.random() < 0.7:
                name = f"{FAMILIES[fam][0]}-{task}-{rng.choice(VARIANTS)}-{mmdd}"
            else:
                name = f"{FAMILIES[fam][0]}-{task}-{mmdd}"
            spec = dict(spec_t)
            spec["name"], spec["project"], spec["cluster"] = name, proj["name"], cname

            # Clock and reason consistent with the status (services/status.py, advance_clock).
            admitted = first_run = running_since = finished = delete_req = None
            run_s = 0.0
            version = 0
            changed = created
            reason = ""
            comp_status: list[str]
            if status == "Added":
                reason, comp_status = "no component registered yet", []
            elif status == "Pending":
                reason, comp_status = QUEUED_REASON.format(cluster=cname), ["Pending"] * len(plans)
            else:
                admitted = created + timedelta(seconds=rng.expovariate(1 / 600))
                first_run = admitted + timedelta(seconds=rng.uniform(5, 120))
                runtime = rng.expovariate(1 / (86_400 if type_ in SERVICE_TYPES else 10_800))
                stop = first_run + timedelta(seconds=runtime)
                changed, version = first_run, 1
                if status == "Running":
                    running_since = first_run
                    comp_status = ["Running"] + ["Completed"] * (len(plans) - 1)
                else:
                    run_s = runtime
                    changed, version = stop, 2
                    if status == "Complete":
                        finished, comp_status = stop, ["Completed"] * len(plans)
                    elif status == "Failed":
                        reason = rng.choice(FAIL_REASONS)
                        finished, comp_status = stop, ["Failed"] + ["Completed"] * (len(plans) - 1)
                    elif status == "Terminated":
                        reason = "removed by the cluster before completing"
                        finished, comp_status = stop, ["Deleted", "Completed"]
                    elif status == "Unknown":
                        reason, comp_status = "node unreachable", ["Unknown"] + ["Completed"] * (len(plans) - 1)
                    elif status == "Deleting":
                        delete_req, reason = stop, "deletion requested"
                        comp_status = ["Running"] + ["Completed"] * (len(plans) - 1)
                    elif status == "Deleted":
                        delete_req, reason = stop, "deleted by user"
                        finished = changed = stop + timedelta(seconds=rng.uniform(1, 60))
                        comp_status, version = ["Deleted"] * len(plans), 3
                    else:  # DeleteFailed
                        delete_req, reason = stop, "finalizer timed out"
                        changed = stop + timedelta(seconds=rng.uniform(60, 600))
                        comp_status, version = ["DeleteFailed"] + ["Deleted"] * (len(plans) - 1), 3
            wl.append({
                "id": wid, "project_id": proj["id"], "cluster_id": cid, "cluster_name": cname, "created_by": email,
                "created_by_id": uid, "name": name, "type": type_, "priority": {"high": 100, "low": -100}
                .get(priority, 0), "preemptible": preemptible, "gpu": request.gpu, "cpu": request.cpu,
                "memory": request.memory, "ephemeral_storage": request.ephemeral_storage, "spec": spec,
                "status": status, "status_reason": reason, "status_changed_at": changed, "created_at": created,
                "delete_requested_at": delete_req, "admitted_at": admitted, "first_running_at": first_run,
                "running_since": running_since, "run_seconds": run_s, "finished_at": finished, "endpoints": (
                    {"http": f"https://{cname}.example.com/wl-{wid}"} if status == "Running"
                    and type_ in SERVICE_TYPES else {}), "version": version, "cluster_named": True,
                "preempted_for": None, "units": 1, "spread": False,
            })
            if self.args.components:
                for (kind, req), cst in zip(plans, comp_status):
                    self.component_id += 1
                    comps.append({
                        "id": self.component_id, "workload_id": wid, "kind": kind, "name": f"wl-{wid}-{kind}",
                        "status": cst, "reason": reason if cst in ("Failed", "Unknown", "DeleteFailed") else (
                            "waiting for admission" if cst == "Pending" else ""),
                        "observed_at": changed, "placed": admitted is not None, "gpu": req.gpu, "cpu": req.cpu,
                        "memory": req.memory, "ephemeral_storage": req.ephemeral_storage, "result": None,
                    })
            if self.args.events:
                evs.append({"at": created, "actor": email, "subject_type": "workload", "subject_id": wid,
                            "project_id": proj["id"], "kind": "submitted",
                            "message": f"{WorkloadType(type_).label} workload {name!r} submitted to cluster {cname}; "
                                       "Pending"})
                if status not in ("Pending", "Added"):
                    evs.append({"at": changed, "actor": f"system:agent:{cname}", "subject_type": "workload",
                                "subject_id": wid, "project_id": proj["id"], "kind": "status_changed",
                                "message": f"Pending -> {WorkloadStatus(status).label}"
                                           + (f": {reason}" if reason else "")})
            # The kept tables, as write_submissions / write_statuses keep them.
            self.counts[(proj["id"], cid, type_, status)] += 1
            st = WorkloadStatus(status)
            if st not in FINISHED_STATUSES:
                u = self.usage[(proj["id"], cid)]
                if admitted is None:
                    u[4] += 1
                else:
                    u[0] += request.gpu
                    u[1] += request.cpu
                    u[2] += request.memory
                    u[3] += request.ephemeral_storage
        return wl, comps, evs


# --------------------------------------------------------------------------- loaders

def bind_processors(table: Any, dialect: Any) -> list[tuple[str, Any]]:
    return [(c.name, c.type._cached_bind_processor(dialect)) for c in table.columns]


def to_tuples(rows: list[dict[str, Any]], procs: list[tuple[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for r in rows:
        # None as SQL NULL, as the app leaves a column it does not set (a JSON column's
        # processor would write the text 'null').
        out.append(tuple(p(r[n]) if p is not None and r[n] is not None else r[n] for n, p in procs))
    return out


def load_sqlite(engine: Any, gen: Generator, args: argparse.Namespace) -> None:
    dialect = engine.dialect
    raw = engine.raw_connection()
    dbapi = raw.driver_connection
    cur = dbapi.cursor()
    cur.execute("PRAGMA synchronous=OFF")
    cur.execute("PRAGMA cache_size=-1048576")  # this session only: 1 GiB for the index builds
    saved = cur.execute("SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL AND tbl_name IN "
                        "('workloads', 'components')").fetchall()
    for name, _ in saved:
        cur.execute(f'DROP INDEX "{name}"')
    log(f"sqlite: dropped {len(saved)} secondary indexes for the load (FTS5 triggers stay)")
    tables = [(workloads, 0), (components, 1), (events, 2)]
    stmts = {}
    procs = {}
    for t, idx in tables:
        cols = [c.name for c in t.columns if not (t is events and c.name == "id")]
        procs[idx] = [(n, p) for n, p in bind_processors(t, dialect) if n in cols]
        stmts[idx] = f"INSERT INTO {t.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    chunk = args.chunk
    for lo in range(0, gen.n, chunk):
        hi = min(gen.n, lo + chunk)
        parts = gen.rows(lo, hi)
        cur.execute("BEGIN")
        for idx, rows in enumerate(parts):
            if rows:
                cur.executemany(stmts[idx], to_tuples(rows, procs[idx]))
        cur.execute("COMMIT")
        if (hi // chunk) % 4 == 0 or hi == gen.n:
            log(f"sqlite: {hi:,} / {gen.n:,} workloads written")
    write_kept(engine, gen)
    for name, sql in saved:
        t = time.monotonic()
        cur.execute(sql)
        log(f"sqlite: index {name} rebuilt in {time.monotonic() - t:.1f}s")
    if args.sqlite_analyze:
        cur.execute("ANALYZE")
        log("sqlite: ANALYZE done")
    cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cur.close()
    raw.close()


def load_postgres(engine: Any, gen: Generator, args: argparse.Namespace) -> None:
    import psycopg

    url = C.plain_pg_url(args.database_url)
    with psycopg.connect(url) as conn:
        idx = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename IN "
            "('workloads', 'components') AND indexname NOT IN (SELECT conname FROM pg_constraint)").fetchall()
        fks = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid IN ('workloads'::regclass, 'components'::regclass)").fetchall()
        for table, name, _ in fks:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in idx:
            conn.execute(f'DROP INDEX "{name}"')
        conn.commit()
        log(f"postgres: dropped {len(idx)} secondary indexes and {len(fks)} foreign keys for the load")
        wcols = [c.name for c in workloads.columns]
        ccols = [c.name for c in components.columns]
        ecols = [c.name for c in events.columns if c.name != "id"]
        json_cols = {"spec", "endpoints"}
        for lo in range(0, gen.n, args.chunk):
            hi = min(gen.n, lo + args.chunk)
            wl, comps, evs = gen.rows(lo, hi)
            with conn.cursor() as cur:
                with cur.copy(f"COPY workloads ({', '.join(wcols)}) FROM STDIN") as copy:
                    for r in wl:
                        copy.write_row([json.dumps(r[c]) if c in json_cols else r[c] for c in wcols])
                if comps:
                    with cur.copy(f"COPY components ({', '.join(ccols)}) FROM STDIN") as copy:
                        for r in comps:
                            copy.write_row([r[c] for c in ccols])
                if evs:
                    with cur.copy(f"COPY events ({', '.join(ecols)}) FROM STDIN") as copy:
                        for r in evs:
                            copy.write_row([r[c] for c in ecols])
            conn.commit()
            if (hi // args.chunk) % 4 == 0 or hi == gen.n:
                log(f"postgres: {hi:,} / {gen.n:,} workloads copied")
        for seq_table in ("workloads", "components"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{seq_table}', 'id'), "
                         f"(SELECT coalesce(max(id), 0) + 1 FROM {seq_table}), false)")
        conn.commit()
    write_kept(engine, gen)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        for name, ddl in idx:
            t = time.monotonic()
            conn.execute(ddl)
            log(f"postgres: index {name} rebuilt in {time.monotonic() - t:.1f}s")
        for table, name, definition in fks:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        log(f"postgres: {len(fks)} foreign keys re-added (validated)")
        t = time.monotonic()
        conn.execute("VACUUM (ANALYZE)")
        log(f"postgres: VACUUM ANALYZE in {time.monotonic() - t:.1f}s")


def write_kept(engine: Any, gen: Generator) -> None:
    """workload_counts and project_usage, as the status writer would have left them."""
    counts = [{"project_id": p, "cluster_id": c, "type": t, "status": s, "count": n}
              for (p, c, t, s), n in sorted(gen.counts.items())]
    usage = [{"project_id": p, "cluster_id": c, "gpu": u[0], "cpu": u[1], "memory": u[2], "ephemeral_storage": u[3],
              "queued": u[4]} for (p, c), u in sorted(gen.usage.items())]
    with write_tx(engine) as conn:
        conn.execute(workload_counts.insert(), counts)
        if usage:
            conn.execute(project_usage.insert(), usage)
    log(f"kept tables: {len(counts):,} workload_counts rows, {len(usage):,} project_usage rows")


# --------------------------------------------------------------------------- checks

def check(engine: Any, backend: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        out["workloads"] = conn.execute(text("SELECT count(*) FROM workloads")).scalar_one()
        out["components"] = conn.execute(text("SELECT count(*) FROM components")).scalar_one()
        out["counts_total"] = int(conn.execute(text("SELECT coalesce(sum(count), 0) FROM workload_counts")).scalar_one())
        grouped = ("SELECT project_id, cluster_id, type, status, count(*) AS n FROM workloads "
                   "GROUP BY project_id, cluster_id, type, status")
        kept = "SELECT project_id, cluster_id, type, status, count AS n FROM workload_counts WHERE count <> 0"
        out["counts_mismatched_keys"] = conn.execute(text(
            f"SELECT count(*) FROM (SELECT * FROM ({grouped}) g EXCEPT SELECT * FROM ({kept}) k) x")).scalar_one() + \
            conn.execute(text(f"SELECT count(*) FROM (SELECT * FROM ({kept}) k EXCEPT SELECT * FROM ({grouped}) g) x")
                         ).scalar_one()
        big = conn.execute(text("SELECT id FROM projects WHERE name = :n"), {"n": C.BIG_PROJECTS[0]}).scalar_one()
        out["big_project"] = C.BIG_PROJECTS[0]
        out["big_total"] = conn.execute(text("SELECT count(*) FROM workloads WHERE project_id = :p"),
                                        {"p": big}).scalar_one()
        out["big_failed"] = conn.execute(text(
            "SELECT count(*) FROM workloads WHERE project_id = :p AND status = 'Failed'"), {"p": big}).scalar_one()
        for word in (C.COMMON_WORD, C.RARE_WORD):
            out[f"big_name_{word}"] = conn.execute(text(
                "SELECT count(*) FROM workloads WHERE project_id = :p AND lower(name) LIKE :w"),
                {"p": big, "w": f"%{word}%"}).scalar_one()
            out[f"all_name_{word}"] = conn.execute(text(
                "SELECT count(*) FROM workloads WHERE lower(name) LIKE :w"), {"w": f"%{word}%"}).scalar_one()
            if backend == "sqlite":
                out[f"fts_{word}"] = conn.execute(text(
                    "SELECT count(*) FROM workload_names WHERE workload_names MATCH :q"), {"q": f'"{word}"'}
                ).scalar_one()
        out["big_by_status"] = dict(conn.execute(text(
            "SELECT status, sum(count) FROM workload_counts WHERE project_id = :p GROUP BY status"), {"p": big}).all())
        out["big_top_creators"] = [list(r) for r in conn.execute(text(
            "SELECT created_by, count(*) FROM workloads WHERE project_id = :p GROUP BY created_by "
            "ORDER BY count(*) DESC LIMIT 5"), {"p": big}).all()]
        out["big_top_clusters"] = [list(r) for r in conn.execute(text(
            "SELECT cluster_name, count(*) FROM workloads WHERE project_id = :p GROUP BY cluster_name "
            "ORDER BY count(*) DESC LIMIT 3"), {"p": big}).all()]
        if backend == "postgresql":
            out["db_size"] = conn.execute(text("SELECT pg_size_pretty(pg_database_size(current_database()))")
                                          ).scalar_one()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--workloads", type=int, default=1_000_000)
    ap.add_argument("--projects", type=int, default=1000)
    ap.add_argument("--big-size", type=int, default=None, help="workloads in each of the 3 big projects "
                    "(default 200,000, or 20%% of --workloads if that is smaller)")
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--no-components", dest="components", action="store_false")
    ap.add_argument("--events", action="store_true", help="also write the submitted/status events")
    ap.add_argument("--sqlite-analyze", action="store_true", help="run ANALYZE on SQLite (the app never does)")
    args = ap.parse_args()
    if args.big_size is None:
        args.big_size = min(200_000, int(args.workloads * 0.2))
    backend = C.dialect_of(args.database_url)
    rng = random.Random(args.seed)
    log(f"seeding {args.workloads:,} workloads into {backend} ({make_url(normalise_url(args.database_url))!r})")
    reset_database(args.database_url)
    engine = make_engine(args.database_url)
    upgrade(engine)
    log("schema migrated")
    meta = seed_metadata(engine, args, rng)
    log(f"metadata: {len(meta['projects'])} projects, {len(meta['clusters'])} clusters, users, members, quotas")
    gen = Generator(args, meta, rng)
    if backend == "sqlite":
        load_sqlite(engine, gen, args)
    else:
        load_postgres(engine, gen, args)
    result = check(engine, backend)
    result["seconds"] = round(time.monotonic() - T0, 1)
    engine.dispose()
    ok = result["workloads"] == result["counts_total"] == args.workloads and result["counts_mismatched_keys"] == 0
    if backend == "sqlite":
        ok = ok and all(result[f"fts_{w}"] == result[f"all_name_{w}"] for w in (C.COMMON_WORD, C.RARE_WORD))
    result["consistent"] = ok
    C.save_json(f"seed-{backend}.json", result)
    log("summary:\n" + json.dumps(result, indent=2, default=str))
    if not ok:
        sys.exit("INCONSISTENT seed: see the summary above")


if __name__ == "__main__":
    main()
