"""Submitting a sweep to Slurm with submitit: checks first, then one Ray job or one job array.

Everything a user can get wrong is asked of sbatch itself (`sbatch --test-only`) before the
sweep directory is touched; submitted jobs are recorded in <sweep>/slurm/jobs.jsonl for
`orchestrator status` and `orchestrator cancel`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainables.errors import UserError

from .. import unreadable
from .slurm_settings import SlurmSettings

SLURM_FOLDER = "slurm"
JOBS_FILE = "jobs.jsonl"
EVENTS_FILE = "events.jsonl"
# Job states after which Slurm will not run the job again (a REQUEUED job comes back as PENDING).
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED")


@dataclass
class SubmittedJob:
    """One sbatch submission of a sweep: a Ray driver job, or a job array of trials."""

    job_id: str
    mode: str
    submitted_at: float
    log_folder: str
    tasks: int = 1


def slurm_dir(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / SLURM_FOLDER


def require_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise UserError("--backend slurm: no sbatch on PATH (run on a Slurm login node, or use --backend local)")


def make_executor(settings: SlurmSettings, *, name: str, resources: dict[str, float], log_root: Path):
    """A submitit SlurmExecutor (not AutoExecutor: that one also picks Slurm by itself whenever
    sbatch is on PATH) writing its pickles and logs under log_root/<job id>."""
    import submitit

    executor = submitit.SlurmExecutor(folder=str(log_root / "%j"), max_num_timeout=settings.max_requeues)
    parameters: dict[str, Any] = {
        "job_name": settings.job_name or f"cropd-{name}",
        "time": settings.time_min,
        "nodes": settings.nodes,
        # One task per node: the Ray head or worker (ray mode) or the trial (array mode).
        "ntasks_per_node": 1,
        "cpus_per_task": settings.cpus_per_task or default_cpus(settings, resources),
        "signal_delay_s": settings.signal_delay_s,
        "array_parallelism": settings.array_parallelism,
    }
    optional = {"partition": settings.partition, "account": settings.account, "qos": settings.qos,
                "mem": settings.mem, "constraint": settings.constraint,
                "gpus_per_node": settings.gpus_per_node or None,
                "additional_parameters": dict(settings.additional) or None,
                "setup": list(settings.setup) or None}
    parameters.update({key: value for key, value in optional.items() if value is not None})
    executor.update_parameters(**parameters)
    return executor


def default_cpus(settings: SlurmSettings, resources: dict[str, float]) -> int:
    """A whole trial per array task; in ray mode, room for two trials per node."""
    per_trial = max(1, math.ceil(resources["cpu"]))
    return per_trial if settings.mode == "array" else 2 * per_trial


def sbatch_script(executor, tasks: int | None = None) -> str:
    """The sbatch script submitit will write for this executor (a job array when `tasks` is set)."""
    from ..private_apis import sbatch_script_text

    return sbatch_script_text(executor, tasks)


def preflight(executor, *, source: str, tasks: int | None = None) -> None:
    """Ask sbatch whether it would take this job (`--test-only`: nothing is submitted).

    Unknown options, a partition, account or QOS that does not exist, a request no node can
    hold: sbatch's own message, as one line.
    """
    with tempfile.TemporaryDirectory(prefix="cropd-sbatch-") as folder:
        script = Path(folder) / "preflight.sh"
        script.write_text(sbatch_script(executor, tasks))
        result = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower() or "unrecognized" in line.lower()] or lines
        raise UserError(f"{source}: slurm: sbatch refuses this job: {errors[0] if errors else 'exit code %d' % result.returncode}")


def warn_about_paths(sweep_dir: Path, settings: SlurmSettings) -> None:
    # A multi-node job's workers write results into the sweep dir: /tmp is local to each node.
    if settings.nodes > 1 and (str(sweep_dir) == "/tmp" or str(sweep_dir).startswith(("/tmp/", "/var/tmp/", "/dev/shm/"))):
        print(f"orchestrator: warning: {sweep_dir} is probably local to each node; a {settings.nodes}-node job's "
              "workers need a shared filesystem (use --out on one)", file=sys.stderr)


def record_job(sweep_dir: Path, job: SubmittedJob) -> None:
    append_line(slurm_dir(sweep_dir) / JOBS_FILE, json.dumps(asdict(job)))


def append_line(path: Path, line: str) -> None:
    """Append one line to a JSONL file, durably; after a torn last line (a writer killed mid-line)
    start on a new line, so the torn one stays alone and this one stays readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        handle.seek(0, os.SEEK_END)
        torn = False
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
        handle.write((("\n" if torn else "") + line + "\n").encode())
        handle.flush()
        os.fsync(handle.fileno())


def recorded_jobs(sweep_dir: Path) -> list[SubmittedJob]:
    """Every job recorded for the sweep; a torn or foreign line (a submit killed mid-write) is
    skipped and noted, so status and cancel still see the others."""
    path = slurm_dir(sweep_dir) / JOBS_FILE
    if not path.is_file():
        return []
    jobs, damaged = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            jobs.append(SubmittedJob(**json.loads(line)))
        except (ValueError, TypeError) as err:
            damaged.append(f"line {number}: {type(err).__name__}")
    if damaged:
        unreadable.note(path, ", ".join(damaged))
    return jobs


def record_event(sweep_dir: Path, event: str, **details: Any) -> None:
    """A line in <sweep>/slurm/events.jsonl: what happened to the driver or a task, and when."""
    path = slurm_dir(sweep_dir) / EVENTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"time": time.time(), "event": event, "job_id": os.environ.get("SLURM_JOB_ID"),
             "array_task": os.environ.get("SLURM_ARRAY_TASK_ID"),
             "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0")), **details}
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
            raise UserError(f"{sweep_dir}: cannot ask Slurm (sacct and squeue both failed) whether the sweep's jobs "
                            f"{', '.join(job.job_id for job in jobs)} are still live; try again when it answers")
        return {}
    return {job_id: state for job_id, state in states.items() if state not in FINAL_STATES and state != "UNKNOWN"}


def cancel_jobs(sweep_dir: Path) -> list[str]:
    """scancel every recorded job of the sweep that is still pending or running; returns their ids."""
    live = sorted({job_id.split("_")[0] for job_id in active_jobs(sweep_dir)})
    if live:
        result = _run(["scancel", *live])
        if result is None or result.returncode != 0:
            raise UserError(f"scancel {' '.join(live)} failed: {(result.stderr.strip() if result else 'scancel not found')}")
        record_event(sweep_dir, "cancelled", jobs=live)
    return live


def _run(command: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
