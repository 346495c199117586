"""The slurm backend: check, then submit the sweep as one Ray job or one job array with submitit.

The login node only plans and submits; the trials, results and resume logic are the local
engine's, run inside the allocation (mode ray) or one trial per array task (mode array).
Everything a user can get wrong is asked of sbatch (`sbatch --test-only`) before the sweep
directory is touched; submitted jobs are recorded (backends/jobs.py) for status and cancel.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trainables.errors import ConfigError, UserError

from ...slurm_settings import SlurmSettings
from ...sweep_paths import SweepPaths
from ..base import Backend, JobStatus, Launched
from ..jobs import SubmittedJob, recorded_jobs
from .records import active_jobs, cancel_jobs, job_states

if TYPE_CHECKING:  # status and cancel import this module: not the spec's imports
    from ...spec import SweepSpec

# Command-line flags that override the spec's slurm: section (flag name -> spec key).
SLURM_FLAGS = {
    "slurm_mode": "mode",
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "nodes": "nodes",
    "gpus_per_node": "gpus_per_node",
    "cpus_per_task": "cpus_per_task",
    "mem": "mem",
    "time": "time",
    "constraint": "constraint",
}


class SlurmBackend(Backend):
    """Submits with `settings` (the spec's slurm: section, command-line values laid over)."""

    name: ClassVar[str] = "slurm"
    # A driver job takes the lock itself while it runs; the submit holds it only while submitting.
    lock_holder: ClassVar[str] = "submit"

    def __init__(self, settings: SlurmSettings | None = None):
        self.settings = settings or SlurmSettings()

    @classmethod
    def from_options(cls, spec: SweepSpec, options: Any) -> SlurmBackend:
        overrides = {key: getattr(options, flag, None) for flag, key in SLURM_FLAGS.items()}
        return cls(spec.slurm.with_overrides(overrides))

    @classmethod
    def owns(cls, paths: SweepPaths) -> bool:
        return paths.jobs.is_file()

    def _check(self, spec: SweepSpec, sweep_dir: Path):
        """sbatch on PATH, a trial that fits one task, and sbatch's yes to the job; returns the executor."""
        from .executor import make_executor, preflight, require_sbatch, warn_about_paths

        require_sbatch()
        source = str(spec.path)
        _check_fits(spec, self.settings, source)
        warn_about_paths(sweep_dir, self.settings)
        executor = make_executor(
            self.settings, name=spec.name, resources=spec.resources, log_root=SweepPaths(sweep_dir).slurm_logs
        )
        # Before anything is written; an array as large as the plan (a resubmission runs fewer).
        preflight(executor, source=source, tasks=spec.num_trials if self.settings.mode == "array" else None)
        return executor

    def _launch(
        self, spec: SweepSpec, sweep_dir: Path, executor, *, restart: bool, retry_failed: bool, live: bool | None
    ) -> Launched:
        # A job still running would write into the folder a --restart starts afresh, and two
        # drivers would race for the same trials: no live job, asked of Slurm (not knowing counts as live).
        still_live = active_jobs(sweep_dir, fail_closed=True) if sweep_dir.is_dir() else {}
        if still_live:
            listed = ", ".join(f"{job_id} {state}" for job_id, state in sorted(still_live.items()))
            raise UserError(
                f"{sweep_dir}: this sweep already has Slurm jobs that may run ({listed}); "
                f"wait for them, or `orchestrator cancel {sweep_dir}` first"
            )
        self.prepare_folder(spec, sweep_dir, restart=restart)
        if self.settings.mode == "ray":
            from .job import SweepDriver

            job = executor.submit(SweepDriver(spec, str(sweep_dir), retry_failed=retry_failed))
            return Launched(jobs=[SubmittedJob(job.job_id, "ray", time.time(), str(job.paths.folder))])

        from .array_plan import array_plan, still_to_run
        from .job import ArrayTrial

        entries = [entry for entry in array_plan(spec, sweep_dir) if still_to_run(spec, sweep_dir, entry, retry_failed)]
        if not entries:
            return Launched()
        jobs = executor.map_array(ArrayTrial(spec, str(sweep_dir)), entries)
        array_id = jobs[0].job_id.split("_")[0]
        return Launched(
            jobs=[SubmittedJob(array_id, "array", time.time(), str(jobs[0].paths.folder.parent), tasks=len(entries))]
        )

    def jobs(self, sweep_dir: Path) -> list[JobStatus]:
        """Every recorded job (each array task on its own) with Slurm's state and its log file."""
        jobs = recorded_jobs(sweep_dir)
        if not jobs:
            return []
        states = job_states(jobs) or {}  # None: Slurm did not answer, every state UNKNOWN
        listed = []
        for job in jobs:
            ids = [job.job_id] if job.mode == "ray" else [f"{job.job_id}_{task}" for task in range(job.tasks)]
            for job_id in ids:
                # submitit's layout: <folder with %j as the id>/<id>_<task rank>_log.out
                folder = Path(job.log_folder) if job.mode == "ray" else Path(job.log_folder) / job_id
                listed.append(
                    JobStatus(
                        self.name, job_id, job.mode, states.get(job_id, "UNKNOWN"), folder / f"{job_id}_0_log.out"
                    )
                )
        return listed

    def live_jobs(self, sweep_dir: Path) -> dict[str, str]:
        return active_jobs(sweep_dir)

    def cancel(self, sweep_dir: Path) -> list[str]:
        return cancel_jobs(sweep_dir)


def _check_fits(spec: SweepSpec, settings: SlurmSettings, source: str) -> None:
    from .executor import default_cpus

    if settings.mode == "array":
        # Each array task runs one trial on its own, without Ray Tune: nothing to stop or log with.
        for key, given in (("scheduler", spec.scheduler), ("trackers", spec.trackers)):
            if given:
                raise ConfigError(
                    key,
                    "none in Slurm's array mode (each task runs one trial without Ray Tune); use mode ray",
                    key,
                    source=source,
                )
    cpus = settings.cpus_per_task or default_cpus(settings, spec.resources)
    if spec.resources["cpu"] > cpus:
        raise ConfigError(
            "resources.cpu",
            f"at most slurm.cpus_per_task ({cpus}): a trial runs inside one task",
            spec.resources["cpu"],
            source=source,
        )
    if spec.resources["gpu"] > settings.gpus_per_node:
        raise ConfigError(
            "resources.gpu",
            f"at most slurm.gpus_per_node ({settings.gpus_per_node})",
            spec.resources["gpu"],
            source=source,
        )
