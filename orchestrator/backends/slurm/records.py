"""What Slurm says about a sweep's recorded jobs (sacct, squeue), cancelling them, and the event log.

Submitted jobs are recorded in <sweep>/slurm/jobs.jsonl (backends/jobs.py) for `orchestrator
status` and `orchestrator cancel`; what happens to a driver or task goes to events.jsonl.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from orchestrator.backends.jobs import SubmittedJob, append_line, recorded_jobs
from orchestrator.store.paths import SweepPaths
from trainables.errors import UserError

# Job states after which Slurm will not run the job again (a REQUEUED job comes back as PENDING).
FINAL_STATES = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
)


def record_event(sweep_dir: Path, event: str, **details: Any) -> None:
    """A line in <sweep>/slurm/events.jsonl: what happened to the driver or a task, and when."""
    path = SweepPaths(sweep_dir).events
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "time": time.time(),
        "event": event,
        "job_id": os.environ.get("SLURM_JOB_ID"),
        "array_task": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
        **details,
    }
    append_line(path, json.dumps(entry))


def job_states(jobs: list[SubmittedJob]) -> dict[str, str] | None:
    """Slurm's state of every job (and array task: '123_4') by id; sacct first, squeue if it fails.

    None when neither command answered (no Slurm here, controller down): unknown, not "none live".
    """
    if not jobs:
        return {}
    ids = ",".join(job.job_id for job in jobs)
    sacct = _run(["sacct", "-X", "-n", "-P", "-j", ids, "-o", "JobID,State"])
    states = _id_state_lines(sacct)
    if states:
        return _expand_pending_arrays(states, jobs)
    squeue = _run(["squeue", "-h", "-r", "-j", ids, "-o", "%i|%T"])
    if squeue is None or squeue.returncode != 0:
        # squeue fails on ids Slurm has forgotten; an answering sacct that knows none of them is an answer.
        return {} if sacct is not None and sacct.returncode == 0 else None
    return _id_state_lines(squeue)


def _id_state_lines(result: subprocess.CompletedProcess | None) -> dict[str, str]:
    """'<job id>|<state>' lines of sacct or squeue as a dict; empty when the command failed."""
    if result is None or result.returncode != 0:
        return {}
    states = {}
    for line in result.stdout.splitlines():
        if "|" in line:
            job_id, state = line.split("|", 1)
            states[job_id] = state.split()[0] if state.strip() else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
    return states


def _expand_pending_arrays(states: dict[str, str], jobs: list[SubmittedJob]) -> dict[str, str]:
    # sacct shows not-yet-started array tasks as one line "123_[2-3%2]": give each task its state.
    for job in jobs:
        if job.mode != "array":
            continue
        for task in range(job.tasks):
            task_id = f"{job.job_id}_{task}"
            if task_id not in states:
                pending = [state for key, state in states.items() if key.startswith(f"{job.job_id}_[")]
                states[task_id] = pending[0] if pending else "UNKNOWN"
    return {key: value for key, value in states.items() if "[" not in key}


def active_jobs(sweep_dir: Path, *, fail_closed: bool = False) -> dict[str, str]:
    """Jobs or array tasks of this sweep that Slurm may still run, with their states.

    When Slurm cannot be asked, `fail_closed` (the submit path: a second driver must not start
    beside a live one) raises; otherwise (status, --wait) nothing counts as live.
    """
    jobs = recorded_jobs(sweep_dir)
    states = job_states(jobs)
    if states is None:
        if fail_closed:
            raise UserError(
                f"{sweep_dir}: cannot ask Slurm (sacct and squeue both failed) whether the sweep's jobs "
                f"{', '.join(job.job_id for job in jobs)} are still live; try again when it answers"
            )
        return {}
    return {job_id: state for job_id, state in states.items() if state not in FINAL_STATES and state != "UNKNOWN"}


def cancel_jobs(sweep_dir: Path) -> list[str]:
    """scancel every recorded job of the sweep that is still pending or running; returns their ids."""
    live = sorted({job_id.split("_")[0] for job_id in active_jobs(sweep_dir)})
    if live:
        result = _run(["scancel", *live])
        if result is None or result.returncode != 0:
            raise UserError(
                f"scancel {' '.join(live)} failed: {(result.stderr.strip() if result else 'scancel not found')}"
            )
        record_event(sweep_dir, "cancelled", jobs=live)
    return live


def _run(command: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
