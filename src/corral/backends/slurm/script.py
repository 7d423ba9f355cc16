"""What Corral submits for one component: the batch script and the ``sbatch`` options.

The script (run by bash as the project's user on the first node of the allocation):

1. sets the environment from nothing (``sbatch --export=NONE``: the agent's own
   environment never reaches a job): PATH, HOME (the project's directory in the work
   area), USER, the launch's env (secrets included) and Corral's ``CORRAL_*`` variables;
   ``SLURM_EXPORT_ENV=ALL`` so that ``srun`` steps inside get the same environment;
2. a service picks its port (a free one on the node, or the fixed one), exports ``PORT``
   and writes it to ``port`` in its component directory, where the agent reads it;
3. changes to the working directory (created as the user) and runs the command (argv,
   ``{port}`` replaced by ``$PORT``) or the user's script (``command.sh`` in the component
   directory, run by its own ``#!`` line or ``/bin/sh``). A user's shell batch script is
   instead the job's script itself, with steps 1-3 inserted after its ``#SBATCH`` lines
   (``split_shell_script``).

Output (stdout and stderr) goes to ``output.log`` in the component directory, written by
slurmstepd as the job's user. The job is named ``<prefix><component id>`` (the
idempotency key an agent looks for before submitting) and its comment names the
component and workload.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from corral.backends.base import BackendError, Launch
from corral.backends.identity import RunAs

OUTPUT = "output.log"
PORT_FILE = "port"
MISSING_PREFIX = "could not start "
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Picks a free TCP port on the node (the same way the local backend does, on the node itself).
_PICK_PORT = ('python3 -c \'import socket; s = socket.socket(); s.bind(("", 0)); '
              'print(s.getsockname()[1])\'')


@dataclass(frozen=True)
class SlurmSite:
    """Per-cluster settings (``corral agent --backend slurm``, CORRAL_SLURM_*)."""

    partition: str | None = None
    account: str | None = None  # for every project without an entry in account_map
    account_map: Mapping[str, str] = field(default_factory=dict)  # project -> Slurm account
    qos: str | None = None
    constraint: str | None = None
    gres: str = "gpu"  # the GPU GRES, with its type where the site needs one: "gpu:mi300x"
    extra_options: tuple[str, ...] = ()  # passed to sbatch unchanged (an admin's choice)
    project_options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # more, for one project's jobs
    job_prefix: str = "corral-c"  # job name = prefix + component id
    project_from: str = "account"  # a discovered job's project: its "account" or "partition"
    time_limit: str | None = None  # sbatch --time for every job (none: the partition's default)
    # Where a built-in service (inference, workspace) listens on its node: reachable from the
    # control plane's proxy across the cluster's network (they require their service token).
    service_host: str = "0.0.0.0"

    @classmethod
    def from_options(cls, *, partition: str | None = None, account: str | None = None, qos: str | None = None,
                     constraint: str | None = None, gres: str | None = None, sbatch_options: str | None = None,
                     project_from: str | None = None, time_limit: str | None = None,
                     job_prefix: str | None = None, project_sbatch_options: str | None = None) -> SlurmSite:
        """From the agent's options: ``account`` is "ACCOUNT", "PROJECT=ACCOUNT,..." or both
        ("ml,vision=cv": cv for vision, ml for the rest); ``sbatch_options`` is split as a
        shell would ("--exclusive --mail-type=NONE"); ``project_sbatch_options`` gives
        more for some projects, "PROJECT=OPTIONS;..." ("vision=--qos=high --exclusive;nlp=-p big")."""
        per_project = {}
        for item in (project_sbatch_options or "").split(";"):
            project, sep, options = item.partition("=")
            if not item.strip():
                continue
            if not sep or not project.strip() or project.strip().startswith("-") or not options.strip():
                raise ValueError(f"Slurm project options {item.strip()!r} are not PROJECT=OPTIONS")
            per_project[project.strip()] = tuple(shlex.split(options))
        default, mapping = None, {}
        for item in (account or "").split(","):
            project, sep, name = item.partition("=")
            if sep and project.strip() and name.strip():
                mapping[project.strip()] = name.strip()
            elif item.strip() and not sep:
                default = item.strip()
            elif item.strip():
                raise ValueError(f"Slurm account entry {item.strip()!r} is not ACCOUNT or PROJECT=ACCOUNT")
        if (project_from or "account") not in ("account", "partition"):
            raise ValueError(f"project_from {project_from!r}: expected account or partition")
        return cls(partition=partition or None, account=default, account_map=mapping, qos=qos or None,
                   constraint=constraint or None, gres=gres or "gpu",
                   extra_options=tuple(shlex.split(sbatch_options or "")), project_from=project_from or "account",
                   time_limit=time_limit or None, job_prefix=job_prefix or "corral-c", project_options=per_project)

    @property
    def gres_name(self) -> str:
        return self.gres.split(":", 1)[0]

    def options_for(self, project: str) -> tuple[str, ...]:
        """The extra sbatch options of a project's jobs: the cluster's, then the project's."""
        return (*self.extra_options, *self.project_options.get(project, ()))

    def places_nodes(self, project: str) -> bool:
        """The admin's options decide the nodes and tasks (Corral then asks for none; a spec
        asking for nodes too is refused: see ``SlurmBackend._nodes_for``)."""
        return bool(self.node_options(project))

    def node_options(self, project: str) -> list[str]:
        """The admin's options for a project that place its jobs ("--nodes=2", "-N 2", "-N2")."""
        options, found = self.options_for(project), []
        for i, option in enumerate(options):
            name = option.split("=")[0]
            if name in NODE_OPTIONS:
                separate = "=" not in option and i + 1 < len(options)
                found.append(f"{option} {options[i + 1]}" if separate else option)
            elif option[:2] in ("-N", "-n") and len(option) > 2 and option[2:3] != "-":  # -N2
                found.append(option)
        return found

    def account_for(self, project: str) -> str | None:
        return self.account_map.get(project) or self.account

    @staticmethod
    def comment(launch: Launch) -> str:
        """The job's comment: checked before adopting a job by its name, so that a job of
        another Corral (or of this one before its database was reset) is not taken over."""
        return f"corral component {launch.component_id} workload {launch.workload_id} project {launch.project}"

    def job_name(self, component_id: int) -> str:
        return f"{self.job_prefix}{component_id}"

    def component_of(self, job_name: str) -> int | None:
        """The component id a job name carries, or None for a job Corral did not name."""
        rest = job_name[len(self.job_prefix):] if job_name.startswith(self.job_prefix) else ""
        return int(rest) if rest.isdigit() else None


NODE_OPTIONS = frozenset({"--nodes", "-N", "--ntasks", "-n", "--ntasks-per-node"})


def split_nodes(gpu: int, gpus_per_node: int) -> int:
    """How many nodes ``gpu`` GPUs need, at most ``gpus_per_node`` on each and the same
    number on every node (12 on 8-GPU nodes: 2 nodes of 6); 1 when one node holds them."""
    if gpu <= gpus_per_node or gpus_per_node <= 0:
        return 1
    nodes = math.ceil(gpu / gpus_per_node)
    while gpu % nodes:  # an even split where one exists (no node holds more than its share)
        nodes += 1
        if nodes > gpu:
            return math.ceil(gpu / gpus_per_node)
    return nodes


def sbatch_options(launch: Launch, site: SlurmSite, component_dir: Path, run_as: RunAs | None,
                   nodes: int = 1) -> list[str]:
    """``nodes`` > 1: the job spans that many nodes, one task on each holding an equal
    share of the GPUs, CPUs and memory (``batch_script`` then runs the command with
    ``srun`` on every node)."""
    options = [
        f"--job-name={site.job_name(launch.component_id)}",
        f"--comment={site.comment(launch)}",
        f"--output={component_dir / OUTPUT}", "--open-mode=append", f"--chdir={component_dir}",
        "--export=NONE",
    ]
    if not site.places_nodes(launch.project):  # one task (per node); an admin's options may say otherwise
        options += [f"--nodes={nodes}", "--ntasks-per-node=1"] if nodes > 1 else ["--nodes=1", "--ntasks=1"]
    if run_as is not None:  # root submits for the project's user; never silently as root
        options += [f"--uid={run_as.uid}", f"--gid={run_as.gid}"]
    if launch.gpu:  # --gres, --cpus-per-task and --mem are per node (per task)
        options.append(f"--gres={site.gres}:{math.ceil(launch.gpu / nodes)}")
    if launch.cpu_millicores:
        options.append(f"--cpus-per-task={math.ceil(launch.cpu_millicores / 1000 / nodes)}")
    if launch.memory_bytes:
        options.append(f"--mem={math.ceil(launch.memory_bytes / (1 << 20) / nodes)}M")
    for flag, value in (("--partition", site.partition), ("--account", site.account_for(launch.project)),
                        ("--qos", site.qos), ("--constraint", site.constraint),
                        ("--time", slurm_time(launch.time_limit_s) if launch.time_limit_s else site.time_limit)):
        if value:
            options.append(f"{flag}={value}")
    return [*options, *site.options_for(launch.project)]


def slurm_time(seconds: int) -> str:
    """A time limit as ``sbatch --time`` reads it, D-HH:MM:SS (Slurm counts whole minutes
    and rounds seconds up: a 90 s limit ends the job after 2 minutes)."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def _export(name: str, value: str, port_aware: bool) -> str:
    if not _ENV_NAME.match(name):
        raise BackendError(f"environment variable name {name!r} cannot be passed to a Slurm job")
    return f"export {name}={_port(shlex.quote(value)) if port_aware else shlex.quote(value)}"


def _port(quoted: str) -> str:
    """``{port}`` inside shell-quoted text, replaced by the job's ``$PORT`` at run time."""
    return quoted.replace("{port}", "'\"$PORT\"'") if "{port}" in quoted else quoted


def batch_script(launch: Launch, *, component_dir: Path, home: Path, run_as: RunAs | None,
                 event_file: Path | None = None, path: str | None = None,
                 base_env: Mapping[str, str] | None = None, nodes: int = 1, service_host: str | None = None) -> str:
    service_port = launch.is_service and (launch.needs_port or launch.fixed_port)
    inline = split_shell_script(launch.script) if launch.script is not None and not launch.is_service else None
    lines = [inline[0] if inline else "#!/bin/bash", *(inline[1] if inline else []),
             f"# Corral component {launch.component_id} of workload {launch.workload_id} "
             f"(project {launch.project}, {launch.workload_type})"]
    env: dict[str, str] = {"PATH": path or os.environ.get("PATH") or DEFAULT_PATH, "HOME": str(home),
                           "PYTHONUNBUFFERED": "1", **(base_env or {})}
    if run_as is not None:
        env.update(USER=run_as.user, LOGNAME=run_as.user)
    env.update({str(k): str(v) for k, v in launch.env.items()})
    env.update(CORRAL_COMPONENT_ID=str(launch.component_id), CORRAL_WORKLOAD_ID=str(launch.workload_id),
               CORRAL_PROJECT=launch.project, CORRAL_NATIVE_NAME=launch.native_name, SLURM_EXPORT_ENV="ALL",
               # Progress and results, as on the local cluster (corral.backends.local.files.report_progress)
               CORRAL_PROGRESS_FILE=str(component_dir / "progress.json"),
               CORRAL_RESULT_FILE=str(component_dir / "result.json"))
    if event_file is not None:
        env["CORRAL_EVENT_FILE"] = str(event_file)
    lines.append(_export("PATH", env.pop("PATH"), False))
    if service_port:
        pick = str(launch.fixed_port) if launch.fixed_port else f"$({_PICK_PORT})"
        lines += [f"PORT={pick}", "export PORT",
                  f'echo "$PORT" > {shlex.quote(str(component_dir / (PORT_FILE + ".tmp")))} && '
                  f'mv -f {shlex.quote(str(component_dir / (PORT_FILE + ".tmp")))} '
                  f"{shlex.quote(str(component_dir / PORT_FILE))}"]
    lines += [_export(k, v, bool(service_port)) for k, v in env.items()]
    if not launch.gpu:  # no GPU asked: none visible, as on the local cluster
        lines.append("export CUDA_VISIBLE_DEVICES= HIP_VISIBLE_DEVICES= ROCR_VISIBLE_DEVICES=")
    else:  # Slurm sets CUDA_VISIBLE_DEVICES from the GRES; AMD's runtimes read these
        lines.append('export HIP_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}" '
                     'ROCR_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}"')
    if launch.working_dir:
        workdir = shlex.quote(launch.working_dir)
        lines.append(f"mkdir -p {workdir} && cd {workdir} || exit 1")
    if nodes > 1 and not inline:  # one task per node, started by srun, as torchrun and its kin expect
        lines += [*SPAN_ENV, run_line(launch, component_dir, bool(service_port), span=True)]
    else:
        lines.append(inline[2] if inline else run_line(launch, component_dir, bool(service_port),
                                                         service_host=service_host))
    return "\n".join(lines) + "\n"


# A job spanning nodes: what distributed launchers read (torchrun --nnodes $NNODES
# --node-rank $NODE_RANK --master-addr $MASTER_ADDR ...); NODE_RANK is set in each task.
SPAN_ENV = ['MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            "MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))", 'NNODES="$SLURM_NNODES"',
            "export MASTER_ADDR MASTER_PORT NNODES"]
_IN_TASK = "exec srun --ntasks-per-node=1 --kill-on-bad-exit=1 /bin/sh -c 'NODE_RANK=$SLURM_NODEID; export NODE_RANK; "


_SHELLS = ("sh", "bash", "dash", "ksh", "zsh")
# The #SBATCH options of a user's script that apply: none asks for resources, places the
# job or changes who it runs as (what it holds is what its quota admitted; site options
# are the admin's). The others are left in the script as plain comments.
SCRIPT_OPTIONS = frozenset({"--time", "-t", "--time-min", "--job-name", "-J", "--mail-type", "--mail-user",
                            "--signal", "--requeue", "--no-requeue", "--begin", "-b", "--deadline", "--dependency",
                            "-d", "--kill-on-invalid-dep", "--open-mode", "--hint", "--nice"})


def split_shell_script(script: str) -> tuple[str, list[str], str] | None:
    """A user's shell batch script as (``#!`` line, its leading comments with the
    ``#SBATCH`` lines, the rest), so it is submitted as the job's script itself, Corral's
    set-up between its directives and its commands: its ``#SBATCH`` lines count (the
    options Corral gives on the command line win where both say something). None for a
    script in another language (run as a program instead)."""
    lines = script.splitlines()
    shebang = lines[0] if lines and lines[0].startswith("#!") else "#!/bin/sh"
    words = shebang[2:].split()
    interpreter = os.path.basename(words[1] if words and words[0].endswith("/env") and len(words) > 1
                                   else (words[0] if words else ""))
    if interpreter not in _SHELLS:
        return None
    rest = lines[1:] if lines and lines[0].startswith("#!") else lines
    head = 0
    while head < len(rest) and (not rest[head].strip() or rest[head].lstrip().startswith("#")):
        head += 1
    return shebang, [_directive(line) for line in rest[:head]], "\n".join(rest[head:])


def _directive(line: str) -> str:
    words = line.split()
    if not words or words[0] != "#SBATCH":
        return line
    option = words[1].split("=", 1)[0] if len(words) > 1 else ""
    return line if option in SCRIPT_OPTIONS else f"# not applied by Corral: {line.strip()[1:]}"


_LOOPBACK = "127.0.0.1"
_BIND_FLAGS = ("--host", "--ip")


def listening_on(command: tuple[str, ...], host: str) -> tuple[str, ...]:
    """A service's command with its loopback bind address (``--host 127.0.0.1``,
    ``--ip=127.0.0.1``: what the built-in recipes say, for a local cluster where only this
    host's proxy connects) replaced by ``host``: on a compute node the proxy connects from
    elsewhere."""
    out = list(command)
    for i, word in enumerate(out):
        if word == _LOOPBACK and i and out[i - 1] in _BIND_FLAGS:
            out[i] = host
        elif word in (f"{flag}={_LOOPBACK}" for flag in _BIND_FLAGS):
            out[i] = f"{word.split('=')[0]}={host}"
    return tuple(out)


def run_line(launch: Launch, component_dir: Path, port_aware: bool, span: bool = False,
             service_host: str | None = None) -> str:
    """The line that runs the command (``span``: with srun, once on each node of the job;
    ``service_host``: where a service binds instead of the loopback address)."""
    if launch.command is not None and launch.is_service and service_host:
        launch = replace(launch, command=listening_on(launch.command, service_host))
    if span:
        if launch.command is not None:
            words = [shlex.quote(word) for word in launch.command]
            return _IN_TASK + "exec \"$@\"' corral-task " + " ".join(_port(w) if port_aware else w for w in words)
        script = shlex.quote(str(component_dir / "command.sh"))
        return (_IN_TASK + "if head -c2 \"$0\" | grep -q \"#!\"; then exec \"$0\"; else exec /bin/sh \"$0\"; fi' "
                + script)
    if launch.command is not None:
        words = [shlex.quote(word) for word in launch.command]
        program = words[0]
        # As the local backend says it (jobrun.py): the backend reads this line to tell a
        # missing program (and what to install: Launch.missing_hint) from an exit code 127.
        missing = (f"command -v -- {program} >/dev/null 2>&1 || {{ echo {shlex.quote(MISSING_PREFIX)}"
                   f"{program}': No such file or directory on node '\"$SLURMD_NODENAME\" >&2; exit 127; }}")
        return missing + "\nexec " + " ".join(_port(w) if port_aware else w for w in words)
    script = shlex.quote(str(component_dir / "command.sh"))
    if port_aware:  # the user's script mentions {port}: substitute the port picked above
        ported = shlex.quote(str(component_dir / "command.port.sh"))
        return (f'sed "s/{{port}}/$PORT/g" {script} > {ported} && chmod 700 {ported} && '
                f"if head -c2 {ported} | grep -q '#!'; then exec {ported}; else exec /bin/sh {ported}; fi")
    return f"if head -c2 {script} | grep -q '#!'; then exec {script}; else exec /bin/sh {script}; fi"

