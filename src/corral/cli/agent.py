"""`corral agent`: a cluster's agent, standalone; and the same agent inside `corral serve`
for the built-in local cluster."""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from corral.backends.base import BackendError
from corral.backends.identity import IdentityError
from corral.cli import output

if TYPE_CHECKING:
    from corral.agent.loop import Agent
    from corral.backends.base import Backend
    from corral.agent.logs_api import LogsServer

log = logging.getLogger("corral.agent")


@dataclass(frozen=True)
class Workloads:
    """Who workloads run as and where their files go (see corral.backends.identity, workarea)."""

    users: str = "auto"
    user_map: str | None = None
    root: Path | None = None
    log_max_bytes: int = 64 << 20
    user_prefix: str = "corral-"  # created users are <prefix><project>


def _build(server: str, token: str, backend_kind: str, state_dir: Path, workloads: Workloads, listen_host: str,
           listen_port: int, advertise_host: str | None, poll_s: float,
           site: dict[str, str | None] | None = None, discover_s: float = 30.0,
           heartbeat_s: float = 10.0) -> tuple[Agent, LogsServer]:
    from corral.agent.client import AgentClient
    from corral.agent.logs_api import LogsServer, logs_app
    from corral.agent.loop import Agent
    from corral.backends.identity import Identities
    from corral.backends.local import LocalBackend
    from corral.backends.local.workarea import default_root
    from corral.services.reach import agent_logs_key
    from corral.services.users import hash_token

    if backend_kind not in ("local", "slurm", "kubernetes"):
        raise ValueError(f"backend {backend_kind!r} is not available; use --backend local, slurm or kubernetes")
    isolated = Identities.from_settings(workloads.users).isolated
    root = (workloads.root or default_root(state_dir, isolated)).resolve()
    identities = Identities.from_settings(workloads.users, workloads.user_map, prefix=workloads.user_prefix,
                                          home_root=str(root))
    backend: Backend
    if backend_kind == "kubernetes":  # settings: see corral.backends.kubernetes.settings (--kube-config FILE)
        from corral.backends.kubernetes import KubernetesBackend, KubeSettings

        backend = KubernetesBackend(KubeSettings.from_file((site or {}).get("kube_config")))
    elif backend_kind == "slurm":  # site options: see corral.backends.slurm.script.SlurmSite.from_options
        from corral.backends.slurm import SlurmBackend, SlurmSite

        options = {k: v for k, v in (site or {}).items() if k != "kube_config"}  # the Kubernetes backend's
        backend = SlurmBackend(state_dir, site=SlurmSite.from_options(**options), identities=identities,
                               work_root=root)
    else:
        backend = LocalBackend(state_dir, identities=identities, work_root=root, log_max_bytes=workloads.log_max_bytes)
    if backend_kind != "kubernetes":  # there a project is a namespace, not an OS user
        log.log(logging.INFO if identities.isolated else logging.WARNING, "%s cluster: %s", backend_kind,
                identities.notice)
    key = agent_logs_key(hash_token(token))
    logs = LogsServer(logs_app(backend, key), listen_host, listen_port)
    port = logs.start()
    url = f"http://{advertise_host or listen_host}:{port}"
    agent = Agent(AgentClient(server, token), backend, work_root=root, poll_s=poll_s, logs_url=url,
                  discover_s=discover_s, heartbeat_s=heartbeat_s)
    return agent, logs


def agent(
    server: Annotated[str, typer.Option("--server", envvar="CORRAL_SERVER", help="The control plane's URL.")] = "",
    token_file: Annotated[Path | None, typer.Option("--token-file", help="File holding the cluster's agent token "
                                                    "(else CORRAL_AGENT_TOKEN).")] = None,
    backend: Annotated[str, typer.Option("--backend", envvar="CORRAL_AGENT_BACKEND",
                                         help="Backend kind: local (this host), kubernetes, or slurm (run it "
                                              "where sbatch works, with the work area on a filesystem the nodes "
                                              "share).")]
    = "local",
    state_dir: Annotated[Path, typer.Option("--state-dir", help="Where the backend keeps its components' state.")]
    = Path("~/.local/share/corral/agent").expanduser(),
    workload_root: Annotated[Path | None, typer.Option(
        "--workload-root", "--data-dir", envvar="CORRAL_WORKLOAD_ROOT",
        help="The work area: each project's models, runs and workspaces (default /var/lib/corral/workloads when "
             "workloads run as per-project users, else STATE_DIR/work).")] = None,
    workload_users: Annotated[str, typer.Option(
        "--workload-users", envvar="CORRAL_WORKLOAD_USERS",
        help="Who workloads run as: auto (an OS user per project when run as root), per-project, shared.")] = "auto",
    user_map: Annotated[str | None, typer.Option(
        "--user-map", envvar="CORRAL_WORKLOAD_USER_MAP",
        help="PROJECT=USER,...: run these projects' workloads as existing users.")] = None,
    user_prefix: Annotated[str, typer.Option(
        "--user-prefix", envvar="CORRAL_WORKLOAD_USER_PREFIX",
        help="Created users are PREFIX<project>: give each Corral on a host its own.")] = "corral-",
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT of the agent's log API, which the control "
                                        "plane calls (port 0: any free one).")] = "127.0.0.1:0",
    advertise_host: Annotated[str | None, typer.Option("--advertise-host", help="Host name the control plane "
                                                       "reaches the log API at (default: the listen host).")] = None,
    poll_s: Annotated[float, typer.Option("--poll", min=0.01, help="Seconds between polls for work when the "
                                          "server does not hold them (it waits for work itself), and between "
                                          "looks at a backend that cannot say when it changed (slurm).")] = 0.1,
    discover_s: Annotated[float, typer.Option("--discover-interval", min=0.1, help="Seconds between looks for "
                                              "workloads Corral did not start.")] = 30.0,
    heartbeat_s: Annotated[float, typer.Option("--heartbeat-interval", min=0.1, help="Seconds between heartbeats "
                                               "(keep it well under the server's "
                                               "CORRAL_CLUSTER_UNHEALTHY_AFTER_S).")] = 10.0,
    slurm_partition: Annotated[str | None, typer.Option(envvar="CORRAL_SLURM_PARTITION",
                                                        help="Slurm: partition for every job.")] = None,
    slurm_account: Annotated[str | None, typer.Option(envvar="CORRAL_SLURM_ACCOUNT", help="Slurm: account, "
                                                      "or PROJECT=ACCOUNT,... per project (ml,vision=cv).")] = None,
    slurm_qos: Annotated[str | None, typer.Option(envvar="CORRAL_SLURM_QOS", help="Slurm: QoS.")] = None,
    slurm_constraint: Annotated[str | None, typer.Option(envvar="CORRAL_SLURM_CONSTRAINT",
                                                         help="Slurm: node features (--constraint).")] = None,
    slurm_gres: Annotated[str, typer.Option(envvar="CORRAL_SLURM_GRES",
                                            help="Slurm: the GPU GRES (gpu, gpu:a100).")] = "gpu",
    slurm_sbatch_options: Annotated[str | None, typer.Option(envvar="CORRAL_SLURM_SBATCH_OPTIONS",
                                                             help="Slurm: more sbatch options, as is.")] = None,
    slurm_project_from: Annotated[str, typer.Option(envvar="CORRAL_SLURM_PROJECT_FROM", help="Slurm: a found "
                                                    "job's project is its account or partition.")] = "account",
    slurm_job_prefix: Annotated[str, typer.Option(envvar="CORRAL_SLURM_JOB_PREFIX", help="Slurm: job names are "
                                                  "this and the component id (one prefix per Corral).")] = "corral-c",
    slurm_time_limit: Annotated[str | None, typer.Option(envvar="CORRAL_SLURM_TIME_LIMIT", help="Slurm: --time "
                                                         "for every job (default: the partition's).")] = None,
    slurm_project_sbatch_options: Annotated[str | None, typer.Option(
        envvar="CORRAL_SLURM_PROJECT_SBATCH_OPTIONS",
        help="Slurm: more sbatch options for some projects' jobs, as is: PROJECT=OPTIONS;... "
             "(vision=--qos=high --exclusive;nlp=--partition=big).")] = None,
    kube_config: Annotated[Path | None, typer.Option("--kube-config", envvar="CORRAL_KUBE_CONFIG", help="Kubernetes: "
                                                     "a YAML file of cluster settings (GPU resource name, node "
                                                     "selector, tolerations, images, apps domain; see README).")]
    = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Kubernetes: print the objects --spec would become, "
                                          "as YAML (for kubectl apply --dry-run=client -f -), and exit.")] = False,
    spec: Annotated[Path | None, typer.Option("--spec", help="With --dry-run: a workload spec file (YAML or "
                                              "JSON).")] = None,
) -> None:
    """Run a cluster's agent: heartbeat, take admitted workloads, run them, report statuses."""
    if dry_run:
        if backend != "kubernetes" or spec is None:
            output.fail("--dry-run prints a workload's Kubernetes objects: give --backend kubernetes and --spec FILE")
        from corral.backends.kubernetes.dryrun import dry_run as render

        try:
            typer.echo(render(str(spec), str(kube_config) if kube_config else None), nl=False)
        except ValueError as exc:
            output.fail(str(exc))
        return
    if not server:
        output.fail("no control plane: pass --server URL or set CORRAL_SERVER")
    token = token_file.read_text().strip() if token_file else os.environ.get("CORRAL_AGENT_TOKEN", "")
    if not token:
        output.fail("no agent token: pass --token-file FILE or set CORRAL_AGENT_TOKEN "
                    "(a token is shown once by `corral clusters create` or `corral clusters rotate-token`)")
    host, _, port = listen.rpartition(":")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s agent %(levelname)s %(message)s")
    try:
        site = {"partition": slurm_partition, "account": slurm_account, "qos": slurm_qos,
                "constraint": slurm_constraint, "gres": slurm_gres, "sbatch_options": slurm_sbatch_options,
                "project_from": slurm_project_from, "job_prefix": slurm_job_prefix, "time_limit": slurm_time_limit,
                "project_sbatch_options": slurm_project_sbatch_options,
                "kube_config": str(kube_config) if kube_config else None}
        runner, logs = _build(server, token, backend, state_dir, Workloads(workload_users, user_map, workload_root,
                                                                        user_prefix=user_prefix),
                              host or "127.0.0.1", int(port or 0), advertise_host, poll_s, site, discover_s,
                              heartbeat_s)
    except (ValueError, OSError, IdentityError, BackendError) as exc:
        output.fail(f"cannot start the agent: {exc}")
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    signal.signal(signal.SIGINT, lambda *_: runner.stop())
    log.info("agent for %s started (%s backend, state in %s)", server, backend, state_dir)
    try:
        runner.run()
    finally:
        logs.stop()
        runner.backend.close()
        runner.client.close()


class LocalAgent:
    """The built-in local cluster's agent, in a thread of `corral serve` (same code, same
    protocol: it talks HTTP to this very server with the cluster's own token)."""

    def __init__(self, server_url: str, token: str, data_dir: Path, workloads: Workloads, poll_s: float = 0.05) -> None:
        self.server_url = server_url
        self.agent, self.logs = _build(server_url, token, "local", data_dir / "local-cluster", workloads,
                                       "127.0.0.1", 0, None, poll_s)
        self.thread = threading.Thread(target=self._run, name="local-cluster-agent", daemon=True)

    def _run(self) -> None:
        import httpx

        # The server starts listening just after this thread starts: wait for it quietly.
        for _ in range(600):
            try:
                if httpx.get(f"{self.server_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.agent.stopped(0.05):
                return
        self.agent.run()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(timeout=10)
        self.logs.stop()
        self.agent.backend.close()  # components keep running; the next start re-adopts them
        self.agent.client.close()
