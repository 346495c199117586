"""`orchestrator sweep --backend slurm`: check, then submit the sweep as a Ray job or a job array.

The login node only plans and submits; the trials, results and resume logic are the local
engine's, run inside the allocation (mode ray) or one trial per array task (mode array).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import optuna

from trainables.artifacts import atomic_write_json
from trainables.errors import ConfigError, UserError

from .backends.slurm import (SubmittedJob, active_jobs, default_cpus, make_executor, preflight, record_job,
                             require_sbatch, slurm_dir, warn_about_paths)
from .backends.slurm_settings import SlurmSettings
from .results import ERROR, TERMINATED, read_trial
from .runner import prepare_sweep_dir, write_state
from .search import journal_storage, make_sampler, optuna_space, points_to_evaluate, repair_journal
from .spec import SweepSpec
from .sweep_lock import sweep_lock
from .trainable import trial_key

ARRAY_PLAN = "array_plan.json"


def submit_sweep(spec: SweepSpec, sweep_dir: Path, settings: SlurmSettings, *, restart: bool = False,
                 retry_failed: bool = False) -> list[SubmittedJob]:
    """Validate against sbatch, prepare the sweep dir, submit; returns the jobs (none if all done)."""
    require_sbatch()
    sweep_dir = Path(sweep_dir).resolve()
    source = str(spec.path)
    _check_fits(spec, settings, source)
    warn_about_paths(sweep_dir, settings)
    executor = make_executor(settings, name=spec.name, resources=spec.resources, log_root=slurm_dir(sweep_dir) / "logs")
    # Before anything is written; an array as large as the plan (a resubmission runs fewer).
    preflight(executor, source=source, tasks=spec.num_trials if settings.mode == "array" else None)
    # Two drivers on one sweep would race for the same trials (and a job still running would write
    # into the folder a --restart starts afresh): the sweep's lock while we submit (a driver job
    # holds it while it runs), and no live job, asked of Slurm (not knowing counts as live).
    with sweep_lock(sweep_dir, "submit"):
        return _submit_locked(spec, sweep_dir, settings, executor, restart, retry_failed)


def _submit_locked(spec: SweepSpec, sweep_dir: Path, settings: SlurmSettings, executor, restart: bool,
                   retry_failed: bool) -> list[SubmittedJob]:
    live = active_jobs(sweep_dir, fail_closed=True) if sweep_dir.is_dir() else {}
    if live:
        listed = ", ".join(f"{job_id} {state}" for job_id, state in sorted(live.items()))
        raise UserError(f"{sweep_dir}: this sweep already has Slurm jobs that may run ({listed}); "
                        f"wait for them, or `orchestrator cancel {sweep_dir}` first")
    if prepare_sweep_dir(spec, sweep_dir, restart=restart):
        repair_journal(sweep_dir)
    write_state(spec, sweep_dir)
    if settings.mode == "ray":
        from .backends.slurm_job import SweepDriver

        job = executor.submit(SweepDriver(spec, str(sweep_dir), retry_failed=retry_failed))
        submitted = SubmittedJob(job.job_id, "ray", time.time(), str(job.paths.folder))
        record_job(sweep_dir, submitted)
        return [submitted]

    from .backends.slurm_job import ArrayTrial

    entries = [entry for entry in array_plan(spec, sweep_dir) if _still_to_run(spec, sweep_dir, entry, retry_failed)]
    if not entries:
        return []
    jobs = executor.map_array(ArrayTrial(spec, str(sweep_dir)), entries)
    array_id = jobs[0].job_id.split("_")[0]
    submitted = SubmittedJob(array_id, "array", time.time(), str(jobs[0].paths.folder.parent), tasks=len(entries))
    record_job(sweep_dir, submitted)
    return [submitted]


def _check_fits(spec: SweepSpec, settings: SlurmSettings, source: str) -> None:
    cpus = settings.cpus_per_task or default_cpus(settings, spec.resources)
    if spec.resources["cpu"] > cpus:
        raise ConfigError("resources.cpu", f"at most slurm.cpus_per_task ({cpus}): a trial runs inside one task", spec.resources["cpu"], source=source)
    if spec.resources["gpu"] > settings.gpus_per_node:
        raise ConfigError("resources.gpu", f"at most slurm.gpus_per_node ({settings.gpus_per_node})", spec.resources["gpu"], source=source)


def array_plan(spec: SweepSpec, sweep_dir: Path) -> list[dict[str, Any]]:
    """Every planned trial as {number, params}: grid points enqueued, searched values asked of Optuna.

    Drawn once, from the sweep's Optuna journal, and saved: a resubmission runs the same trials.
    Searched values are asked in one batch, so the sampler learns nothing within a submission.
    """
    path = slurm_dir(sweep_dir) / ARRAY_PLAN
    if path.is_file():
        return json.loads(path.read_text())["trials"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize" if mode == "max" else "minimize" for mode in spec.objectives.values()]
    study = optuna.create_study(study_name=spec.name, storage=journal_storage(sweep_dir), sampler=make_sampler(spec),
                                directions=directions, load_if_exists=True)
    for point in points_to_evaluate(spec):
        study.enqueue_trial(point)
    space = optuna_space(spec)
    entries = []
    for _ in range(spec.num_trials):
        trial = study.ask(space)
        entries.append({"number": trial.number, "params": trial.params})
    atomic_write_json(path, {"trials": entries})
    return entries


def _still_to_run(spec: SweepSpec, sweep_dir: Path, entry: dict[str, Any], retry_failed: bool) -> bool:
    row = read_trial(sweep_dir, trial_key(spec.trial_config(entry["params"])))
    if row is None:
        return True
    return row["status"] != TERMINATED and (retry_failed or row["status"] != ERROR)
