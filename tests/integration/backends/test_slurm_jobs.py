"""The Slurm backend against real Slurm daemons (scripts/slurm-test-cluster): what is
particular to Slurm (its queue's reasons, adoption by name, cancel of pending and running
jobs, GPUs through the GRES, identity, batch scripts). What every backend promises (exit
codes, idempotent start and stop, Deleted final, restart) is in tests/conformance/."""

from __future__ import annotations

import os
import pwd
import re
import sys
from datetime import UTC, datetime

import pytest

from corral.backends.base import Backend, BackendError, Launch
from corral.backends.identity import Identities, user_name_for
from corral.backends.recipes import ComponentRef, build_launches
from corral.backends.slurm import SlurmBackend
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher
from .slurm_support import blocker, job, make_slurm, slurm_cluster, wait_for  # noqa: F401 - fixtures


def test_a_batch_job_waits_in_slurms_queue_runs_and_completes_with_its_output(make_slurm, blocker):
    backend = make_slurm()
    assert isinstance(backend, Backend) and backend.kind == "slurm"
    watcher = Watcher(backend)
    blocking = blocker()  # another user's job holds every GPU: ours waits in Slurm's queue
    before = datetime.now(UTC)
    backend.start(job(1, "echo hello from $SLURM_JOB_ID; echo to stderr >&2; sleep 0.3", gpu=1))
    # Slurm's reason, once its scheduler looked at the job ("None" before that)
    pending = watcher.wait(1, lambda o: o.status is S.PENDING and o.reason != "waiting in Slurm's queue")
    assert pending.reason == "waiting in Slurm's queue: Resources" and pending.native_name == "proj-w10-job"
    backend.slurm.scancel(blocking)
    running = watcher.wait(1, S.RUNNING)
    assert running.reason == f"running as Slurm job {backend._jobs[1].job_id}" and running.workload_id == 10  # no limit
    done = watcher.wait(1, S.COMPLETED)
    seen = watcher.statuses(1)
    assert done.exit_code == 0 and sorted(set(seen), key=seen.index) == [S.PENDING, S.RUNNING, S.COMPLETED]
    # Never older than the submission (Slurm's own times have whole seconds only).
    assert before <= pending.observed_at <= running.observed_at <= done.observed_at
    job_id = backend._jobs[1].job_id
    output = backend.logs(1)
    assert f"hello from {job_id}\n" in output and "to stderr\n" in output
    read = backend.read_output(1, offset=0)
    assert read.over and read.data.decode() == output
    assert list(backend.follow_logs(1, tail_lines=1)) == ["to stderr\n"]
    backend.forget(1)
    assert backend.all_observations() == [] and not backend.work.component_dir(1).exists()


def test_an_agent_that_lost_its_state_finds_its_job_by_name_and_comment(make_slurm, slurm_cluster):
    # (Idempotent start and adoption by a new backend on the same state: tests/conformance.)
    backend = make_slurm()
    backend.start(job(1, "sleep 1.5"))
    Watcher(backend).wait(1, S.RUNNING)
    backend.close()
    # Its state lost (a crash between sbatch and writing it down): found by name.
    fresh = make_slurm("slurm-lost", work="slurm")
    fresh.start(job(1, "sleep 1.5"))
    assert len(slurm_cluster.jobs(make_slurm.prefix)) == 1
    assert Watcher(fresh).wait(1, S.COMPLETED, timeout=20).exit_code == 0
    assert len(slurm_cluster.jobs(make_slurm.prefix)) == 1
    # A job of that name that is not this component's (another Corral's, whose comment
    # differs) is not taken over.
    foreign = slurm_cluster.sbatch("-J", f"{make_slurm.prefix}2", "--comment=someone else", "-o", "/dev/null")
    fresh.start(job(2, "true"))
    assert fresh._jobs[2].job_id != foreign
    assert Watcher(fresh).wait(2, S.COMPLETED).exit_code == 0


def test_a_preempted_component_run_again_gets_a_new_job_even_after_a_restart(make_slurm):
    backend = make_slurm()
    watcher = Watcher(backend)
    backend.start(job(1, "sleep 60"))
    watcher.wait(1, S.RUNNING)
    first = backend._jobs[1].job_id
    backend.stop(1)
    watcher.wait(1, S.DELETED)
    backend.forget(1)  # the agent does once the control plane has the Deleted
    backend.close()
    again = make_slurm()  # restarted meanwhile: Slurm still lists the cancelled job by that name
    again.start(job(1, "echo second run"))
    assert again._jobs[1].job_id != first
    Watcher(again).wait(1, S.COMPLETED)
    assert again.logs(1) == "second run\n"


def test_stop_cancels_pending_and_running_jobs_which_end_deleted(make_slurm, blocker, slurm_cluster):
    backend = make_slurm()
    watcher = Watcher(backend)
    backend.start(job(1, "sleep 60"))
    watcher.wait(1, S.RUNNING)
    blocker()
    backend.start(job(2, "sleep 60", gpu=1))
    watcher.wait(2, S.PENDING)
    backend.stop(1)
    backend.stop(2)
    backend.stop(2)  # idempotent
    assert "cancelled" in watcher.wait(1, S.DELETED).reason
    assert watcher.wait(2, S.DELETED).reason == f"Slurm job {backend._jobs[2].job_id} cancelled"
    assert {state for _, _, state in slurm_cluster.jobs(make_slurm.prefix)} == {"CANCELLED"}


def test_a_job_cancelled_outside_corral_fails(make_slurm):
    backend = make_slurm()
    watcher = Watcher(backend)
    backend.start(job(1, "sleep 60"))
    watcher.wait(1, S.RUNNING)
    backend.slurm.scancel(backend._jobs[1].job_id)
    assert "cancelled outside Corral" in watcher.wait(1, S.FAILED).reason


def test_gpus_are_visible_through_the_gres_and_hidden_without_one(make_slurm):
    backend = make_slurm()
    watcher = Watcher(backend)
    show = 'echo "cuda=[$CUDA_VISIBLE_DEVICES] hip=[$HIP_VISIBLE_DEVICES]"'
    backend.start(job(1, show, gpu=2))
    backend.start(job(2, show))
    watcher.wait(1, S.COMPLETED)
    watcher.wait(2, S.COMPLETED)
    assert re.search(r"^cuda=\[(\d),(\d)\] hip=\[\1,\2\]$", backend.logs(1), re.M), backend.logs(1)
    assert "cuda=[] hip=[]" in backend.logs(2)


def test_jobs_run_as_their_projects_user_with_its_home_and_their_env(make_slurm):
    assert os.geteuid() == 0  # slurm_cluster insists on root
    backend = make_slurm()
    watcher = Watcher(backend)
    backend.start(job(1, 'id -un; echo "home=$HOME token=$TOKEN project=$CORRAL_PROJECT"; pwd',
                      project="alpha", env={"TOKEN": "it's a secret"}, working_dir=None))
    watcher.wait(1, S.COMPLETED)
    user = user_name_for("alpha")
    lines = backend.logs(1).splitlines()
    assert lines[0] == user and pwd.getpwnam(user).pw_uid == backend._jobs[1].uid
    assert lines[1] == f"home={backend.work.project_dir('alpha')} token=it's a secret project=alpha"
    assert backend.work.component_dir(1).stat().st_uid == pwd.getpwnam(user).pw_uid
    assert "own" in backend.capacity().isolation


def test_progress_and_results_come_back_as_on_the_local_cluster(make_slurm):
    backend = make_slurm()
    watcher = Watcher(backend)
    report = ("from corral.backends.local.files import report_progress as p; import time; "
              "p({'phase': 'downloading', 'bytes_done': 5_000_000, 'bytes_total': 10_000_000}); time.sleep(30)")
    backend.start(job(1, f"{sys.executable} -c \"{report}\""))
    moving = watcher.wait(1, lambda o: o.progress is not None)
    assert moving.status is S.RUNNING and moving.reason == "downloading: 5.0 MB of 10 MB"
    assert moving.progress == {"phase": "downloading", "bytes_done": 5_000_000, "bytes_total": 10_000_000}
    # An evaluation, through its recipe: the metrics it writes are the component's result.
    [launch] = build_launches(
        workload_id=5, project="proj", workload_type="evaluation",
        spec={"name": "ev", "model": "m", "dataset": "d", "command": "echo '{\"acc\": 0.5}' > $CORRAL_METRICS_FILE"},
        components=[ComponentRef(2, "job", cpu_millicores=500, memory_bytes=256 << 20)], work_root=backend.work.root)
    backend.start(launch)
    done = watcher.wait(2, S.COMPLETED, timeout=30)
    assert done.result == {"metrics": {"acc": 0.5}}, backend.logs(2)


def test_a_batch_script_is_the_jobs_own_script_with_its_sbatch_lines(make_slurm):
    backend = make_slurm()
    watcher = Watcher(backend)
    # Resources beyond what the quota admitted (and whom it runs as) are not the script's to ask.
    script = ("#!/bin/bash\n#SBATCH --time=7\n#SBATCH --job-name=not-this-one\n#SBATCH --gres=gpu:4\n"
              "#SBATCH --uid=0\n#SBATCH --exclusive\n\n"
              'echo "name=$SLURM_JOB_NAME project=$CORRAL_PROJECT gpus=[$CUDA_VISIBLE_DEVICES] $(id -un)"\nexit 5\n')
    backend.start(Launch(1, 10, "proj", "custom", "proj-w10-job", script=script, cpu_millicores=1000,
                         memory_bytes=256 << 20))
    python = Launch(2, 20, "proj", "custom", "proj-w20-job", script=f"#!{sys.executable}\nprint('from python')\n")
    backend.start(python)
    detail = backend.inspect(1)["job"]
    assert detail["TimeLimit"] == "00:07:00" and detail["OverSubscribe"] != "NO"  # the script's own directive
    assert "TresPerNode" not in detail or "gpu" not in detail["TresPerNode"]
    assert watcher.wait(1, S.FAILED).exit_code == 5
    # Corral's name wins, its environment is there, no GPU, the project's user
    assert backend.logs(1) == f"name={make_slurm.prefix}1 project=proj gpus=[] {user_name_for('proj')}\n"
    watcher.wait(2, S.COMPLETED)
    assert backend.logs(2) == "from python\n"  # another language: run as a program


def test_an_agent_running_as_root_never_submits_jobs_as_root(tmp_path):
    with pytest.raises(BackendError, match="would run as root"):
        SlurmBackend(tmp_path / "state", identities=Identities(isolated=False), work_root=tmp_path / "work")
