"""`--backend slurm` against a real Slurm (slurm/local_cluster/cluster.sh): runs, preemption, requeues, arrays.

Every job here is a real sbatch job running the real engine on the embedded data. Without a
reachable cluster these tests skip, unless CROPD_REQUIRE_SLURM=1 (CI sets it), where they fail.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from slurm_helpers import (
    REPO,
    assert_each_trial_once_and_every_epoch_once,
    events_of,
    jobs_of,
    lock_owner,
    orchestrator,
    require_cluster,
    running_trial_past,
    sacct_state,
    slurm_spec,
    submit,
    wait_for,
    wait_until_done,
)

from orchestrator.engine.search import journal_storage
from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.paths import SweepPaths
from orchestrator.store.query import load_trials

# The only tests that may need Slurm: `-m "not slurm_cluster"` leaves them out (.ci/run runs the rest
# with Slurm's commands hidden, as on a machine without it).
pytestmark = pytest.mark.slurm_cluster


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    require_cluster()


def test_a_sweep_runs_to_completion_through_slurm(tmp_path, cache_root, tiny_foundation_config, tiny_arch):
    spec_path = slurm_spec(tmp_path, tiny_foundation_config, tiny_arch, name="onslurm")
    sweep_dir = tmp_path / "runs" / "onslurm"
    done = orchestrator("sweep", str(spec_path), "--out", str(sweep_dir), "--backend", "slurm", "--wait", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    [job] = jobs_of(sweep_dir)
    assert f"submitted Slurm job {job['job_id']}" in done.stderr and sacct_state(job["job_id"]) == "COMPLETED"
    assert_each_trial_once_and_every_epoch_once(sweep_dir, load_spec(spec_path), epochs=3)
    assert [e["event"] for e in events_of(sweep_dir)] == ["driver started", "driver finished"]

    # status shows the job, Slurm's state of it and where its log is; the log is the job's own.
    status = orchestrator("status", str(sweep_dir), cwd=tmp_path, timeout=120)
    line = next(line for line in status.stdout.splitlines() if line.startswith("slurm job"))
    assert f"slurm job {job['job_id']} (ray): COMPLETED; log " in line
    log = Path(line.split("; log ", 1)[1])
    assert log.is_file() and f"job_id={job['job_id']}" in log.read_text()

    # Submitting the finished sweep again resumes it: the job finds every row and reruns nothing.
    before = sorted(load_trials(sweep_dir)["finished_at"])
    again = orchestrator("sweep", str(spec_path), "--out", str(sweep_dir), "--backend", "slurm", "--wait", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(load_trials(sweep_dir)["finished_at"]) == before and len(jobs_of(sweep_dir)) == 2


def test_preemption_and_an_outside_requeue_resume_from_the_epoch_checkpoint(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch, epoch_s
):
    epochs = max(30, math.ceil(20 / epoch_s))  # about 20 s of training per trial
    spec_path = slurm_spec(
        tmp_path,
        tiny_foundation_config,
        tiny_arch,
        name="preempted",
        epochs=epochs,
        max_concurrent=1,
        grid={"preprocessor.kind": ["cropd"], "preprocessor.lambda": [1, 10]},
    )
    sweep_dir = tmp_path / "runs" / "preempted"
    job_id = submit(spec_path, sweep_dir)

    # Preemption: USR2, the signal submitit checkpoints and requeues on (as `job._interrupt(timeout=True)`).
    first, reached = wait_for(lambda: running_trial_past(sweep_dir, 3), "a trial at pre-processor epoch 3")
    subprocess.run(["scancel", "--signal", "USR2", job_id], check=True)
    wait_for(
        lambda: any(e["event"] == "driver started" and e["restart_count"] == 1 for e in events_of(sweep_dir)),
        "the requeued driver to start",
    )

    # An outside `scontrol requeue`, which submitit never sees: the job just starts over.
    # Well before its end, so that the requeue lands inside it.
    second, _ = wait_for(
        lambda: (running := running_trial_past(sweep_dir, reached + 3)) and running[1] < epochs * 3 // 4 and running,
        "a trial past the resumed epochs",
    )
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    wait_for(
        lambda: any(e["event"] == "driver started" and e["restart_count"] == 2 for e in events_of(sweep_dir)),
        "the driver to start after scontrol requeue",
    )
    wait_until_done(sweep_dir, job_id)

    assert sacct_state(job_id) == "COMPLETED"
    assert [e["event"] for e in events_of(sweep_dir)].count(
        "requeue requested"
    ) == 1  # only the USR2 went through submitit
    spec = load_spec(spec_path)
    assert_each_trial_once_and_every_epoch_once(sweep_dir, spec, epochs)
    trials = load_trials(sweep_dir).set_index("config_hash")
    assert trials.loc[second, "resumed_from"].startswith("preprocessor epoch")
    if first == second:  # both interruptions hit the same trial: it resumed past the first one's epochs
        assert int(trials.loc[first, "resumed_from"].split()[-1]) > reached


def test_a_time_limit_requeues_and_the_trial_goes_on_from_its_checkpoint(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch, epoch_s
):
    # Slurm sends the time-limit USR2 "up to 60 s earlier than specified" (sbatch --signal): to land it
    # inside a trial, the test shortens the running job's limit once the trial is under way. The
    # signal then comes within about 45 s, so the trial trains for about 120 s on this machine.
    epochs = max(150, math.ceil(120 / epoch_s))
    spec_path = slurm_spec(
        tmp_path,
        tiny_foundation_config,
        tiny_arch,
        name="timelimit",
        epochs=epochs,
        grid={"preprocessor.kind": ["cropd"], "preprocessor.lambda": [1]},
        slurm={"signal_delay_s": 90},
    )
    sweep_dir = tmp_path / "runs" / "timelimit"
    job_id = submit(spec_path, sweep_dir)
    interrupted, reached = wait_for(lambda: running_trial_past(sweep_dir, 3), "the trial at pre-processor epoch 3")
    elapsed_s = _seconds(
        subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%M"], capture_output=True, text=True).stdout
    )
    # A whole-minute limit leaving 45-105 s: within the 90 s signal delay, so the signal is due at
    # once, and long enough for slurmctld's periodic time-limit pass (about every 30 s) to send it
    # before the kill. (`elapsed // 60 + 1` once left 5 s on a loaded machine: killed unsignalled.)
    limit_min = -(-(elapsed_s + 45) // 60)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", f"TimeLimit={limit_min}"], check=True)
    wait_for(
        lambda: "requeue requested" in [e["event"] for e in events_of(sweep_dir)],
        f"the time-limit signal (limit {limit_min} min set at {elapsed_s} s elapsed)",
        timeout=180,
    )
    # The requeued run gets the study's own limit back, as a fresh allocation would.
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=20"], check=True)
    wait_until_done(sweep_dir, job_id)

    assert sacct_state(job_id) == "COMPLETED"
    restarts = [e["restart_count"] for e in events_of(sweep_dir) if e["event"] == "driver started"]
    assert restarts == [0, 1]
    assert_each_trial_once_and_every_epoch_once(sweep_dir, load_spec(spec_path), epochs)
    resumed_from = load_trials(sweep_dir).set_index("config_hash").loc[interrupted, "resumed_from"]
    assert resumed_from is not None, f"the trial ended before the signal ({epochs} epochs of {epoch_s:.3f} s)"
    assert resumed_from.startswith("preprocessor epoch") and int(resumed_from.split()[-1]) >= reached


def _seconds(elapsed: str) -> int:
    """squeue's %M ([D-][H:]M:SS) in seconds."""
    days, _, clock = elapsed.strip().rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def test_array_mode_runs_a_grid_one_task_per_trial_and_tells_optuna(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch
):
    spec_path = slurm_spec(
        tmp_path,
        tiny_foundation_config,
        tiny_arch,
        name="arrayed",
        slurm={"mode": "array", "array_parallelism": 2, "cpus_per_task": 1, "mem": "3G"},
    )
    sweep_dir = tmp_path / "runs" / "arrayed"
    done = orchestrator("sweep", str(spec_path), "--out", str(sweep_dir), "--backend", "slurm", "--wait", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    [job] = jobs_of(sweep_dir)
    assert job["mode"] == "array" and job["tasks"] == 3
    spec = load_spec(spec_path)
    assert_each_trial_once_and_every_epoch_once(sweep_dir, spec, epochs=3)
    trials = load_trials(sweep_dir)
    assert sorted(trials["trial_id"]) == [f"slurm-{job['job_id']}_{task}" for task in range(3)]
    study = optuna.load_study(study_name="arrayed", storage=journal_storage(sweep_dir))
    told = sorted(tuple(t.values) for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert len(study.trials) == 3 and told == sorted(zip(trials["acc_natural"], trials["acc_pgd20"]))
    status = orchestrator("status", str(sweep_dir), cwd=tmp_path, timeout=120).stdout
    assert all(f"slurm job {job['job_id']}_{task} (array): COMPLETED" in status for task in range(3))

    # Nothing left to run: a resubmission submits nothing.
    again = orchestrator("sweep", str(spec_path), "--out", str(sweep_dir), "--backend", "slurm", cwd=tmp_path)
    assert again.returncode == 0 and "nothing submitted" in again.stderr and len(jobs_of(sweep_dir)) == 1


def test_cancel_stops_the_sweeps_jobs_and_a_second_submission_is_refused_while_one_runs(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch
):
    spec_path = slurm_spec(tmp_path, tiny_foundation_config, tiny_arch, name="cancelled", epochs=200)
    sweep_dir = tmp_path / "runs" / "cancelled"
    assert (
        orchestrator("sweep", str(spec_path), "--out", str(sweep_dir), "--backend", "slurm", cwd=tmp_path).returncode
        == 0
    )
    job_id = jobs_of(sweep_dir)[0]["job_id"]
    wait_for(lambda: sacct_state(job_id) == "RUNNING", "the job to run")
    # RUNNING comes before the driver job has loaded and taken the lock (its imports); a second
    # submission that imports no torch now gets to the lock first, refused then by Slurm's answer
    # that the job is live. This test is about the lock: wait for the driver job to hold it.
    wait_for(lambda: str(lock_owner(sweep_dir).get("slurm_job_id")) == str(job_id), "the driver job to take the lock")

    twice = orchestrator("sweep", str(spec_path), "--out", str(sweep_dir), "--backend", "slurm", cwd=tmp_path)
    # The running driver job holds the sweep's lock: the refusal names it (and Slurm says it is live).
    assert twice.returncode == 2 and "another driver is running this sweep (pid " in twice.stderr
    assert f"Slurm job {job_id}," in twice.stderr
    assert len(jobs_of(sweep_dir)) == 1

    cancelled = orchestrator("cancel", str(sweep_dir), cwd=tmp_path, timeout=120)
    assert cancelled.returncode == 0 and f"cancelled Slurm job(s) {job_id}" in cancelled.stderr
    wait_for(lambda: sacct_state(job_id) == "CANCELLED", "the job to be cancelled", timeout=60)
    assert (
        "no Slurm job of this sweep is pending or running"
        in orchestrator("cancel", str(sweep_dir), cwd=tmp_path, timeout=120).stderr
    )


@pytest.mark.parametrize(
    "slurm, expected",
    [
        (
            {"partition": "nosuchpartition"},
            "sbatch refuses this job: sbatch: error: invalid partition specified: nosuchpartition",
        ),
        ({"additional": {"frobnicate": 3}}, "sbatch refuses this job: sbatch: unrecognized option '--frobnicate=3'"),
        (
            {"partition": "debug$(touch MARKER)"},
            "sbatch refuses this job: sbatch: error: invalid partition specified: debug$(touch MARKER)",
        ),
    ],
)
def test_bad_slurm_settings_get_sbatchs_own_line_and_nothing_is_submitted_or_written(
    tmp_path, tiny_foundation_config, tiny_arch, slurm, expected
):
    marker = tmp_path / "MARKER"
    slurm = {
        key: (value.replace("MARKER", str(marker)) if isinstance(value, str) else value) for key, value in slurm.items()
    }
    expected = expected.replace("MARKER", str(marker))
    spec_path = slurm_spec(tmp_path, tiny_foundation_config, tiny_arch, name="bad", slurm=slurm)
    refused = orchestrator("sweep", str(spec_path), "--backend", "slurm", cwd=tmp_path, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"orchestrator: error: {spec_path}: slurm: {expected}"
    assert not (tmp_path / "runs").exists() and not marker.exists()  # nothing written, nothing executed


def test_the_submit_path_takes_the_sweeps_lock_and_names_the_driver_that_holds_it(
    tmp_path, tiny_foundation_config, tiny_arch
):
    spec_path = slurm_spec(tmp_path, tiny_foundation_config, tiny_arch, name="locked")
    sweep_dir = tmp_path / "runs" / "locked"
    # A driver of this sweep in a Slurm job elsewhere holds the lock (here: a process of ours, by PID).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom orchestrator.store.lock import sweep_lock\n"
            f"with sweep_lock({str(sweep_dir)!r}):\n    print('held', flush=True)\n    time.sleep(300)",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO), "SLURM_JOB_ID": "777"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = orchestrator(
            "sweep", str(spec_path), "--out", str(sweep_dir), "--backend", "slurm", cwd=tmp_path, timeout=120
        )
    finally:
        holder.kill()
        holder.wait()
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith(
        f"orchestrator: error: {sweep_dir}: another driver is running this sweep (pid {holder.pid} on "
    )
    assert "Slurm job 777" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not SweepPaths(sweep_dir).jobs.exists()  # nothing submitted


def queued_job_ids() -> set[str]:
    return set(subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=60).stdout.split())


def test_plan_shows_the_script_and_sbatchs_own_verdict_without_submitting(tmp_path, tiny_foundation_config, tiny_arch):
    spec_path = slurm_spec(tmp_path, tiny_foundation_config, tiny_arch, name="planned")
    before = queued_job_ids()
    accepted = orchestrator(
        "plan", str(spec_path), "--backend", "slurm", "--history", str(tmp_path), cwd=tmp_path, timeout=120
    )
    assert accepted.returncode == 0, accepted.stderr
    assert "sbatch --test-only: accepted: " in accepted.stdout and "#SBATCH --partition=debug" in accepted.stdout
    refused = orchestrator(
        "plan", str(spec_path), "--backend", "slurm", "--partition", "nosuchpartition", cwd=tmp_path, timeout=120
    )
    assert refused.returncode == 0 and "sbatch --test-only: REFUSED: " in refused.stdout
    assert "invalid partition specified: nosuchpartition" in refused.stdout
    # Nothing submitted (no job id that was not queued before; an earlier test's job may have left
    # the queue meanwhile), nothing written.
    assert queued_job_ids() - before == set()
    assert not (tmp_path / "runs").exists()
