"""How a job that left ``squeue`` ended: its state, Slurm's reason, exit code and end time
from ``scontrol show job`` while the controller remembers it, else from ``sacct -c`` or
``sacct``; mapped onto a final component status and a reason worded as on the local
cluster (the last line of output, a missing program and what to install)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from corral.backends import output
from corral.backends.slurm.commands import JobRow, SlurmCommands, parse_time
from corral.backends.slurm.jobs import JobRecord
from corral.backends.slurm.script import MISSING_PREFIX
from corral.backends.slurm.states import base_state, map_state, parse_exit_code
from corral.domain.statuses import ComponentStatus as S


def how_it_ended(slurm: SlurmCommands, record: JobRecord, row: JobRow | None,
                 output_path: Path) -> tuple[S, str, int | None, datetime | None]:
    """(status, reason, exit code, end time) of a finished job (``row``: its last squeue row, if any)."""
    assert record.job_id is not None
    state, reason, ended, exit_code = (row.state, row.reason, row.ended, None) if row else ("", "", None, None)
    detail = slurm.show_job(record.job_id)
    if detail is not None:
        state = state or detail.get("JobState", "")
        reason = reason or detail.get("Reason", "")
        exit_code = parse_exit_code(detail.get("ExitCode"))
        ended = ended or parse_time(detail.get("EndTime"))
    else:
        accounted = slurm.accounting(record.job_id)
        if accounted is not None:
            state = state or accounted.get("State", "")
            exit_code = parse_exit_code(accounted.get("ExitCode"))
            ended = ended or parse_time(accounted.get("End"))
    if not state:  # nothing anywhere knows how it ended
        status, text = ((S.DELETED, f"Slurm job {record.job_id} cancelled") if record.stopping else
                        (S.FAILED, f"Slurm job {record.job_id} is gone and no record says how it ended"))
    else:
        status, text = map_state(state, reason, exit_code, stopping=record.stopping, job_id=record.job_id)
    if status is S.FAILED:
        text = timeout_reason(record, state, text)
    if status is S.COMPLETED and record.kind == "server":  # a service that ends has failed, as on local
        status, text = S.FAILED, f"the service exited with code 0 ({text})"
    if status is S.FAILED:  # the last line of output often says why, as on local
        last = output.last_line(output_path)
        if exit_code == 127 and last.startswith(MISSING_PREFIX):  # not on the node: say what to install
            text = f"{last} (Slurm job {record.job_id}, exit code 127)" + (
                f"; {record.missing_hint}" if record.missing_hint else "")
        elif last:
            text += f"; last output: {last}"
    return status, text, exit_code, ended


def timeout_reason(record: JobRecord, state: str, text: str) -> str:
    """A job that Slurm ended at the time limit its workload asked for (TIMEOUT) says so
    as every cluster does ("time limit of 2h reached"), with the job; other ends keep ``text``."""
    if base_state(state) != "TIMEOUT" or not record.time_limit_reason:
        return text
    return f"{record.time_limit_reason} (Slurm job {record.job_id} ended in state TIMEOUT)"
