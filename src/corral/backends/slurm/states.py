"""Slurm's words mapped onto Corral's: job states, exit codes, GRES and TRES strings.

Pure functions over the text Slurm prints (``squeue``, ``scontrol show job|node -o``,
``sacct -c``), table-tested in ``tests/unit/test_slurm_states.py``.

Job states (``shared/spec/statuses.md``):

- PENDING, CONFIGURING, REQUEUED, REQUEUE_HOLD, REQUEUE_FED, RESV_DEL_HOLD, SUSPENDED,
  STOPPED: Pending, with Slurm's reason ("waiting in Slurm's queue: Resources");
- RUNNING, COMPLETING, RESIZING, SIGNALING, STAGE_OUT: Running;
- COMPLETED: Completed;
- CANCELLED: Deleted when Corral cancelled it, else Failed ("cancelled outside Corral");
- FAILED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE, PREEMPTED (a preempted
  job that Slurm requeues shows as PENDING again instead), REVOKED, SPECIAL_EXIT and any
  state this code does not know: Failed, with the exit code and what Slurm said.
"""

from __future__ import annotations

import re
from corral.domain.statuses import ComponentStatus as S

PENDING_STATES = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                            "SUSPENDED", "STOPPED"})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT"})
FAILED_WHY = {
    "FAILED": "failed",
    "TIMEOUT": "reached its time limit",
    "NODE_FAIL": "failed with a node it ran on",
    "OUT_OF_MEMORY": "ran out of memory",
    "BOOT_FAIL": "failed: its node did not boot",
    "DEADLINE": "reached its deadline",
    "PREEMPTED": "was preempted by Slurm",
    "REVOKED": "was revoked by the federation",
    "SPECIAL_EXIT": "ended in a special exit state",
}
# Node states (and flags, after "+") that take a node's resources out of the capacity.
UNAVAILABLE_NODE = frozenset({"DOWN", "DRAIN", "DRAINED", "DRAINING", "FAIL", "FAILING", "FUTURE", "NOT_RESPONDING",
                              "POWERED_DOWN", "POWER_DOWN", "POWERING_DOWN", "INVAL", "INVALID", "MAINTENANCE",
                              "REBOOT_REQUESTED", "REBOOT_ISSUED", "UNKNOWN"})
_NO_REASON = {"", "None", "(null)", "N/A"}


def base_state(state: str) -> str:
    """ "CANCELLED by 1000" -> "CANCELLED"; "COMPLETING+..." -> "COMPLETING"."""
    return re.split(r"[ +]", state.strip(), maxsplit=1)[0].upper() if state.strip() else ""


def is_final(state: str) -> bool:
    base = base_state(state)
    return bool(base) and base not in PENDING_STATES and base not in RUNNING_STATES


def parse_exit_code(text: str | None) -> int | None:
    """Slurm's ``exit:signal`` ("3:0", "0:9") as subprocess does: the exit status, or
    minus the signal that killed it. None when Slurm does not say."""
    if not text or ":" not in text:
        return None
    code, _, signal = text.partition(":")
    try:
        code_n, signal_n = int(code), int(signal)
    except ValueError:
        return None
    return -signal_n if signal_n else code_n


def map_state(state: str, reason: str = "", exit_code: int | None = None, *,
              stopping: bool = False, job_id: int | str | None = None) -> tuple[S, str]:
    """A job's state (and Slurm's reason) as a component status and a human reason."""
    base = base_state(state)
    why = "" if reason.strip() in _NO_REASON else reason.strip()
    job = f"Slurm job {job_id}" if job_id is not None else "Slurm job"
    if base in PENDING_STATES:
        if base == "PENDING":
            return S.PENDING, f"waiting in Slurm's queue: {why}" if why else "waiting in Slurm's queue"
        return S.PENDING, f"{job} is {base.lower()}" + (f": {why}" if why else "")
    if base in RUNNING_STATES:
        return S.RUNNING, f"running as {job}"
    if stopping:
        return S.DELETED, f"{job} cancelled" if base == "CANCELLED" else f"{job} ended ({base.lower()}) when stopped"
    if base == "COMPLETED" and not exit_code:
        return S.COMPLETED, f"{job} completed"
    if base == "CANCELLED":
        by = state.strip()[len("CANCELLED"):].strip()
        return S.FAILED, f"{job} was cancelled outside Corral" + (f" ({by})" if by else "")
    what = FAILED_WHY.get(base, f"ended in state {base or 'unknown'}")
    text = f"{job} {what}"
    if exit_code:
        text += f": killed by signal {-exit_code}" if exit_code < 0 else f": exit code {exit_code}"
    if why and why != "NonZeroExitCode":
        text += f" ({why})"
    return S.FAILED, text


def parse_kv(line: str) -> dict[str, str]:
    """One ``scontrol show ... -o`` line as a dict. Values may hold spaces ("OS=Linux 6.1
    #1 SMP"): a new key starts only where a space is followed by ``Key=``."""
    fields: dict[str, str] = {}
    for match in re.finditer(r"(?:^|\s)([A-Za-z][\w/:.\-]*)=(.*?)(?=\s+[A-Za-z][\w/:.\-]*=|\s*$)", line.strip()):
        fields.setdefault(match.group(1), match.group(2).strip())
    return fields


def gres_count(text: str | None, name: str = "gpu") -> int:
    """GPUs in a GRES or TRES string: "gpu:8", "gpu:a100:4(S:0-1)", "gres:gpu:2",
    "gres/gpu:2" (squeue/scontrol per node, job or task), "gres/gpu=2,gres/gpu:a100=2"
    (allocated TRES, where the typed entries repeat the untyped total)."""
    if not text or text in _NO_REASON:
        return 0
    total = typed_total = 0
    for item in re.split(r",(?![^()]*\))", text):
        item = re.sub(r"\(.*\)$", "", item.strip())
        if item.startswith(("gres:", "gres/")):
            item = item[5:]
        key, sep, count = item.partition("=")
        if sep:  # TRES form: gpu=2 or gpu:a100=2
            parts = key.split(":")
            if parts[0] == name and count.isdigit():
                if len(parts) == 1:
                    total += int(count)
                else:
                    typed_total += int(count)
            continue
        parts = item.split(":")  # GRES form: gpu, gpu:2, gpu:a100:2
        if parts[0] != name:
            continue
        total += int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return total or typed_total


def gres_types(text: str | None, name: str = "gpu") -> list[str]:
    """The GRES types of ``name`` on a node ("gpu:a100:4" -> ["a100"]), if any."""
    found = []
    for item in re.split(r",(?![^()]*\))", text or ""):
        parts = re.sub(r"\(.*\)$", "", item.strip()).split(":")
        if len(parts) >= 3 and parts[0] == name:
            found.append(parts[1])
    return found


def memory_bytes(text: str | None) -> int:
    """A Slurm size ("4000", "100M", "2G", "1.5T"; bare numbers are megabytes) in bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGTP]?)\s*", text or "")
    if not match:
        return 0
    factor = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}[match.group(2)]
    return int(float(match.group(1)) * factor)


def tres(text: str | None) -> dict[str, str]:
    """ "cpu=2,mem=100M,node=1,gres/gpu=1" -> {"cpu": "2", "mem": "100M", ...}."""
    out = {}
    for item in (text or "").split(","):
        key, sep, value = item.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def node_available(state: str) -> bool:
    """False for a node that is down, drained, draining, failing, powered off, ..."""
    flags = {part.strip().rstrip("*~#!%$@^-").upper() for part in re.split(r"[+]", state or "")}
    return bool(state) and not state.endswith("*") and not (flags & UNAVAILABLE_NODE)
