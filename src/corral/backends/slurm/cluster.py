"""Reading the cluster: nodes and capacity, jobs Corral did not start, a service's
endpoint on its node, and a job's output file.

Capacity counts the nodes that can take work (of the configured partition, if any):
a node that is down, drained or draining, failing, powered down or not responding is
left out, so draining a node lowers the capacity the control plane admits against.
GPUs per node come from the node's GRES (``Gres=gpu:8``, ``gpu:a100:4(S:0-1)``).
"""

from __future__ import annotations

import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from corral.backends.base import Discovered, GpuDevice, NodeCapacity
from corral.backends.local import files as f
from corral.backends.slurm.commands import JobRow, SlurmCommands, SlurmUnavailable, parse_time
from corral.backends.slurm.jobs import JobRecord
from corral.backends.slurm.script import PORT_FILE, SlurmSite
from corral.backends.slurm.states import gres_count, gres_types, memory_bytes, node_available, tres
from corral.domain.statuses import ComponentStatus as S

_UNSET = {"", "(null)", "N/A", "None"}
_AMD = ("mi", "amd", "radeon", "instinct")


class NodeAddresses:
    """Node name -> address (``NodeAddr``), refreshed from ``scontrol show node`` when a
    name is not known yet."""

    def __init__(self, slurm: SlurmCommands) -> None:
        self.slurm = slurm
        self._addresses: dict[str, str] = {}
        self._lock = threading.Lock()

    def update(self, nodes: Iterable[dict[str, str]]) -> None:
        with self._lock:
            for node in nodes:
                self._addresses[node["NodeName"]] = node.get("NodeAddr") or node["NodeName"]

    def address(self, name: str) -> str:
        if name not in self._addresses:
            try:
                self.update(self.slurm.show_nodes())
            except SlurmUnavailable:
                pass
        return self._addresses.get(name, name)


def capacity_nodes(nodes: list[dict[str, str]], site: SlurmSite, addresses: NodeAddresses) -> list[NodeCapacity]:
    addresses.update(nodes)
    out = []
    for node in nodes:
        partitions = set((node.get("Partitions") or "").split(","))
        if site.partition and site.partition not in partitions:
            continue
        if not node_available(node.get("State", "")):
            continue
        cpus = _int(node.get("CPUEfctv") or node.get("CPUTot"))
        gpus = gres_count(node.get("Gres"), site.gres_name)
        model = (gres_types(node.get("Gres"), site.gres_name) or [site.gres.partition(":")[2] or "gpu"])[0]
        vendor = "amd" if model.lower().startswith(_AMD) else "nvidia"
        out.append(NodeCapacity(
            name=node["NodeName"], cpu_millicores=cpus * 1000, memory_bytes=_int(node.get("RealMemory")) << 20,
            gpus=tuple(GpuDevice(i, vendor, model) for i in range(gpus)),
            ephemeral_storage_bytes=_int(node.get("TmpDisk")) << 20))
    return out


def discovered(jobs: list[dict[str, str]], site: SlurmSite) -> list[Discovered]:
    """Running jobs that Corral did not submit (no ``corral-c<id>`` name), with the
    resources they hold and the project they belong to (their account or partition)."""
    found = []
    for job in jobs:
        if job.get("JobState", "").split("+")[0] not in ("RUNNING", "COMPLETING"):
            continue
        if site.component_of(job.get("JobName", "")) is not None:
            continue
        allocated = tres(job.get("AllocTRES") or job.get("TRES"))
        gpus = gres_count(",".join(f"{k}={v}" for k, v in allocated.items()), site.gres_name) or (
            gres_count(job.get("TresPerNode"), site.gres_name) * max(1, _int(job.get("NumNodes")))
            + gres_count(job.get("TresPerJob"), site.gres_name)
            + gres_count(job.get("TresPerTask"), site.gres_name) * max(1, _int(job.get("NumTasks"))))
        source = job.get("Account") if site.project_from == "account" else job.get("Partition")
        command = job.get("Command") if job.get("Command") not in _UNSET else job.get("JobName", "")
        found.append(Discovered(
            native_name=f"slurm-job-{job['JobId']}", kind="job", command=command or "",
            user=(job.get("UserId") or "").split("(")[0] or None, started_at=parse_time(job.get("StartTime")),
            project=source if source not in _UNSET else None, gpu=gpus,
            cpu_millicores=_int(allocated.get("cpu") or job.get("NumCPUs")) * 1000,
            memory_bytes=memory_bytes(allocated.get("mem"))))
    return found


def service_state(record: JobRecord, row: JobRow, component_dir: Path,
                  nodes: NodeAddresses) -> tuple[S, str, str | None]:
    """A running service job: Pending until its port is known and it answers, then
    Running with ``http://<node address>:<port><endpoint path>``."""
    node = row.batch_host
    if not record.service_port:
        return S.RUNNING, f"running as Slurm job {record.job_id} on {node}", None
    port = read_port(component_dir / PORT_FILE, record.uid)
    if port is None:
        return S.PENDING, f"starting on {node}: waiting for the service's port", None
    base = f"http://{nodes.address(node)}:{port}"
    if record.readiness is not None and not ready(base, record.readiness):
        return S.PENDING, f"starting on {node}: waiting for {base} to answer", None
    return S.RUNNING, f"serving on {node} (Slurm job {record.job_id})", base + record.endpoint_path


def ready(base: str, readiness: str, timeout_s: float = 0.5) -> bool:
    if readiness == "tcp":
        host, _, port = base.removeprefix("http://").rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                return True
        except OSError:
            return False
    try:
        with urllib.request.urlopen(base + readiness, timeout=timeout_s) as response:  # noqa: S310 - http only
            return 200 <= response.status < 400
    except urllib.error.HTTPError as exc:
        return 200 <= exc.code < 400
    except (OSError, ValueError):
        return False


def read_port(path: Path, uid: int | None) -> int | None:
    """The port a job wrote: a small regular file of the job's user, never through a link."""
    data = f.read_untrusted(path, uid=uid, max_bytes=16)
    text = data.decode(errors="replace").strip() if data is not None else ""
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def _int(text: str | None) -> int:
    """The leading number of a Slurm count ("8", "2-2" for a range of nodes, "4.0")."""
    match = re.match(r"\s*(\d+)", text or "")
    return int(match.group(1)) if match else 0
