"""Slurm's job states, exit codes, GRES/TRES and scontrol lines, as the Slurm backend reads them."""

from __future__ import annotations

import pytest

from corral.backends.slurm.commands import SEP, parse_squeue
from corral.backends.slurm.states import (
    gres_count,
    is_final,
    map_state,
    memory_bytes,
    node_available,
    parse_exit_code,
    parse_kv,
)
from corral.domain.statuses import ComponentStatus as S


@pytest.mark.parametrize(("state", "reason", "code", "stopping", "status", "text"), [
    ("PENDING", "Resources", None, False, S.PENDING, "waiting in Slurm's queue: Resources"),
    ("PENDING", "None", None, False, S.PENDING, "waiting in Slurm's queue"),
    ("CONFIGURING", "None", None, False, S.PENDING, "Slurm job 7 is configuring"),
    ("REQUEUE_HOLD", "JobHeldAdmin", None, False, S.PENDING, "Slurm job 7 is requeue_hold: JobHeldAdmin"),
    ("RUNNING", "None", None, False, S.RUNNING, "running as Slurm job 7"),
    ("COMPLETING", "None", None, False, S.RUNNING, "running as Slurm job 7"),
    ("COMPLETED", "None", 0, False, S.COMPLETED, "Slurm job 7 completed"),
    ("FAILED", "NonZeroExitCode", 3, False, S.FAILED, "Slurm job 7 failed: exit code 3"),
    ("FAILED", "NonZeroExitCode", -9, False, S.FAILED, "Slurm job 7 failed: killed by signal 9"),
    ("TIMEOUT", "TimeLimit", -15, False, S.FAILED, "Slurm job 7 reached its time limit: killed by signal 15 (TimeLimit)"),
    ("OUT_OF_MEMORY", "OutOfMemory", 0, False, S.FAILED, "Slurm job 7 ran out of memory (OutOfMemory)"),
    ("NODE_FAIL", "None", None, False, S.FAILED, "Slurm job 7 failed with a node it ran on"),
    ("PREEMPTED", "None", None, False, S.FAILED, "Slurm job 7 was preempted by Slurm"),
    ("BOOT_FAIL", "None", None, False, S.FAILED, "Slurm job 7 failed: its node did not boot"),
    ("DEADLINE", "None", None, False, S.FAILED, "Slurm job 7 reached its deadline"),
    ("CANCELLED by 1000", "None", -15, False, S.FAILED, "Slurm job 7 was cancelled outside Corral (by 1000)"),
    ("CANCELLED", "None", -15, True, S.DELETED, "Slurm job 7 cancelled"),
    ("COMPLETED", "None", 0, True, S.DELETED, "Slurm job 7 ended (completed) when stopped"),
    ("WEIRD_NEW_STATE", "None", None, False, S.FAILED, "Slurm job 7 ended in state WEIRD_NEW_STATE"),
])
def test_job_states_map_onto_component_statuses(state, reason, code, stopping, status, text):
    assert map_state(state, reason, code, stopping=stopping, job_id=7) == (status, text)


def test_final_states_and_exit_codes():
    assert [is_final(s) for s in ("PENDING", "RUNNING", "COMPLETING", "COMPLETED", "CANCELLED by 0", "")] == [
        False, False, False, True, True, False]
    assert [parse_exit_code(t) for t in ("0:0", "3:0", "0:9", "", None, "x:y")] == [0, 3, -9, None, None, None]


@pytest.mark.parametrize(("text", "count"), [
    ("gpu:8", 8), ("gpu:a100:4(S:0-1)", 4), ("gpu:a100:4,gpu:v100:2", 6), ("gres:gpu:2", 2), ("gres/gpu:2", 2),
    ("gres/gpu=2,gres/gpu:a100=2", 2), ("cpu=2,mem=1G,gres/gpu:a100=3", 3), ("gpu", 1), ("(null)", 0), (None, 0),
    ("shard:4", 0),
])
def test_gpus_in_gres_and_tres(text, count):
    assert gres_count(text) == count


def test_sizes_node_states_and_scontrol_lines():
    assert [memory_bytes(t) for t in ("4000", "100M", "2G", "1.5T", "", "x")] == [
        4000 << 20, 100 << 20, 2 << 30, int(1.5 * (1 << 40)), 0, 0]
    assert [node_available(s) for s in ("IDLE", "MIXED", "ALLOCATED", "IDLE+DRAIN", "MIXED+DRAIN", "DOWN",
                                        "DOWN+NOT_RESPONDING", "IDLE+POWERED_DOWN", "idle*", "")] == [
        True, True, True, False, False, False, False, False, False, False]
    line = "NodeName=n1 Arch=x86_64 OS=Linux 6.1 #1 SMP PREEMPT @0  RealMemory=4000 Gres=gpu:8 Reason=disk full [root]"
    fields = parse_kv(line)
    assert fields["OS"] == "Linux 6.1 #1 SMP PREEMPT @0" and fields["RealMemory"] == "4000"
    assert fields["Reason"] == "disk full [root]" and fields["Gres"] == "gpu:8"


def test_squeue_rows_keep_free_text_last():
    line = SEP.join(["12", "corral-c3", "PENDING", "Priority", "alice", "ml", "gpu", "n/a",
                     "2026-12-06T12:03:49", "N/A", "N/A", "1:00:00", "a comment"])
    [row] = parse_squeue(line + "\n" + SEP.join(["12_1", *["x"] * 12]))
    assert (row.job_id, row.name, row.reason, row.comment, row.started) == (12, "corral-c3", "Priority", "a comment",
                                                                           None)
    assert row.time_limit == "1:00:00"
    assert row.submitted is not None and row.submitted.tzinfo is not None
