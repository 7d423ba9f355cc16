"""What the Slurm backend remembers of each component, in its state directory.

One small JSON file per component (``<state_dir>/jobs/<component id>.json``, 0600 in a
0700 directory) says which Slurm job runs it, whether Corral asked to stop it, and how it
ended once it did: enough for a new backend (agent restart) to go on where the last one
stopped. Secrets are not in it: they travel in the batch script only, which Slurm keeps
readable by root and the job's user.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from corral.backends.base import Launch, Observation
from corral.backends.local import files as f
from corral.domain.statuses import ComponentStatus as S


@dataclass
class JobRecord:
    component_id: int
    workload_id: int | None
    project: str
    native_name: str
    kind: str  # job | server | endpoint
    job_id: int | None = None
    uid: int | None = None
    stopping: bool = False
    service_port: bool = False  # the job writes the port it listens on to its directory
    readiness: str | None = None  # "tcp", an HTTP path, or None (ready once running)
    endpoint_path: str = "/"
    final: dict[str, Any] | None = None  # {"status", "reason", "exit_code", "observed_at"}
    # When start() submitted (or adopted) it: no observation is older. Slurm's own times
    # have whole seconds, so a job started within the second of its admission would look
    # older than what the control plane recorded at admission.
    submitted_at: str | None = None
    # Said after "could not start X" when the job's program is not on the node (Launch.missing_hint).
    missing_hint: str | None = None
    requeued: bool = False  # it ran, and Slurm put it back in its queue (node failure, preemption)
    # The Failed reason of a TIMEOUT end when the workload asked for a time limit
    # (Launch.time_limit_reason: "time limit of 2h reached"); None: the site's or partition's limit.
    time_limit_reason: str | None = None

    @classmethod
    def for_launch(cls, launch: Launch, uid: int | None) -> JobRecord:
        readiness = None
        if launch.readiness is not None:
            readiness = launch.readiness.http_path if launch.readiness.kind == "http" else "tcp"
        return cls(launch.component_id, launch.workload_id, launch.project, launch.native_name, launch.kind, uid=uid,
                   service_port=launch.is_service and bool(launch.needs_port or launch.fixed_port),
                   readiness=readiness, endpoint_path=launch.endpoint_path, submitted_at=f.now_iso(),
                   missing_hint=launch.missing_hint,
                   time_limit_reason=launch.time_limit_reason() if launch.time_limit_s else None)

    def not_before(self, at: datetime) -> datetime:
        submitted = f.parse_iso(self.submitted_at)
        return max(at, submitted) if submitted else at

    @property
    def final_status(self) -> S | None:
        return S(self.final["status"]) if self.final else None

    def final_observation(self) -> Observation | None:
        if not self.final:
            return None
        return Observation(self.component_id, self.native_name, S(self.final["status"]), self.final["reason"],
                           f.parse_iso(self.final["observed_at"]) or f.parse_iso(f.now_iso()),  # type: ignore[arg-type]
                           workload_id=self.workload_id, exit_code=self.final.get("exit_code"),
                           result=self.final.get("result"))


FORGOTTEN = "forgotten.json"


class JobStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)

    def path(self, component_id: int) -> Path:
        return self.directory / f"{component_id}.json"

    def load(self) -> dict[int, JobRecord]:
        records = {}
        for entry in os.scandir(self.directory):
            stem = entry.name.removesuffix(".json")
            if not (entry.name.endswith(".json") and stem.isdigit()):
                continue
            data = f.read_json(entry.path)
            if isinstance(data, dict):
                records[int(stem)] = JobRecord(**data)
        return records

    def save(self, record: JobRecord) -> None:
        f.write_json_atomic(self.path(record.component_id), asdict(record))  # 0600

    def forgotten(self) -> set[int]:
        """Ids of jobs whose components were forgotten: never adopted again (a component
        preempted and admitted anew gets a new job, not its cancelled one)."""
        return set(f.read_json(self.directory / FORGOTTEN) or [])

    def set_forgotten(self, job_ids: set[int]) -> None:
        f.write_json_atomic(self.directory / FORGOTTEN, sorted(job_ids))

    def remove(self, component_id: int) -> None:
        try:
            os.unlink(self.path(component_id))
        except FileNotFoundError:
            pass
