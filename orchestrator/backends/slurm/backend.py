"""The slurm backend: check, then submit the sweep as one Ray job or one job array with submitit.

The login node only plans and submits; the trials, results and resume logic are the local
engine's, run inside the allocation (mode ray) or one trial per array task (mode array).
Everything a user can get wrong is asked of sbatch (`sbatch --test-only`) before the sweep
directory is touched; submitted jobs are recorded (backends/jobs.py) for status and cancel.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator.backends.base import Backend, JobStatus, Launched
from orchestrator.backends.jobs import SubmittedJob, recorded_jobs
from orchestrator.backends.slurm.records import active_jobs, cancel_jobs, job_states
from orchestrator.backends.slurm.settings import SlurmSettings, settings_with_options
from orchestrator.store.paths import SweepPaths, default_sweep_dir
from trainables.errors import ConfigError, UserError

if TYPE_CHECKING:  # status and cancel import this module: not the spec's imports
    from orchestrator.spec.sweep_spec import SweepSpec


class SlurmBackend(Backend):
    """Submits with `settings` (the spec's slurm: section, command-line values laid over)."""

    name: ClassVar[str] = "slurm"
    # A driver job takes the lock itself while it runs; the submit holds it only while submitting.
    lock_holder: ClassVar[str] = "submit"

    def __init__(self, settings: SlurmSettings | None = None):
        self.settings = settings or SlurmSettings()

    @classmethod
    def from_options(cls, spec: SweepSpec, options: Any) -> SlurmBackend:
        return cls(settings_with_options(spec.backend_settings["slurm"], options))

    def describe(self, job: SubmittedJob) -> str:
        what = "the sweep driver (Ray)" if job.mode == "ray" else f"{job.tasks} trials as a job array"
        return f"submitted Slurm job {job.job_id}: {what}; logs under {job.log_folder}"

    def plan_concurrency(self, spec: SweepSpec) -> tuple[int, str]:
        """Trials at once: array tasks at a time, or trials per node times nodes (ray mode)."""
        settings = self.settings
        cpu, gpu = spec.resources["cpu"], spec.resources["gpu"]
        limit = spec.max_concurrent or math.inf
        if settings.mode == "array":
            parallel = settings.array_parallelism or spec.num_trials
            return int(min(limit, parallel, spec.num_trials)), f"array tasks, {parallel} at a time"
        cpus, gpus = settings.cpus_per_task, settings.gpus_per_node
        per_node = math.inf if not cpus else math.floor(cpus / cpu) if cpu else math.inf
        if gpu:
            per_node = min(per_node, math.floor((gpus or 0) / gpu))
        count = min(limit, settings.nodes * per_node, spec.num_trials)
        return int(count if math.isfinite(count) else spec.num_trials), (
            f"{settings.nodes} node(s) x {per_node} trial(s) per node (cpu {cpu}, gpu {gpu} per trial)"
        )

    def plan_check(self, spec: SweepSpec, wall_s: float | None) -> dict:
        """The sbatch script the sweep would submit and sbatch's `--test-only` verdict on it."""
        from orchestrator.backends.slurm.executor import make_executor, sbatch_script, sbatch_verdict

        settings = self.settings
        here = shutil.which("sbatch") is not None and shutil.which("srun") is not None
        with tempfile.TemporaryDirectory(prefix="cropd-plan-") as folder:
            executor = make_executor(
                settings, name=spec.name, resources=spec.resources, log_root=Path(folder), script_only=not here
            )
            script = sbatch_script(executor, spec.num_trials if settings.mode == "array" else None)
            if here:
                accepted, line = sbatch_verdict(script)
                verdict = ("accepted: " if accepted else "REFUSED: ") + line
            # Shown with the logs where the sweep would write them (runs/<name>/slurm/logs), not in
            # this scratch folder (submitit creates its folder; plan writes nothing of the sweep's).
            script = script.replace(folder, str(SweepPaths(default_sweep_dir(spec.name)).slurm_logs.resolve()))
        if not here:  # the script as a login node would submit it; only sbatch can say whether it would take it
            verdict = "not asked: no Slurm here (sbatch and srun not on PATH); run plan on a login node for its verdict"
        allowed_s = settings.time_min * 60 * (settings.max_requeues + 1)
        warning = None
        if settings.mode != "array" and wall_s is not None and wall_s > allowed_s:
            warning = (
                f"the estimated wall time ({wall_s / 3600:,.1f} h) is more than the time limit times the "
                f"requeues allowed ({settings.time_min} min x {settings.max_requeues + 1} = "
                f"{allowed_s / 3600:,.1f} h): "
                "raise --time or slurm.max_requeues"
            )
        return {"mode": settings.mode, "script": script, "test_only": verdict, "warning": warning}

    def plan_lines(self, check: dict) -> list[str]:
        lines = [f"slurm ({check['mode']} mode): sbatch --test-only: {check['test_only']}"]
        if check["warning"]:
            lines.append(f"warning: {check['warning']}")
        if check["script"] is not None:
            lines += ["the script that would be submitted:", check["script"].rstrip()]
        return lines

    @classmethod
    def owns(cls, paths: SweepPaths) -> bool:
        return paths.jobs.is_file()

    def _check(self, spec: SweepSpec, sweep_dir: Path):
        """sbatch on PATH, a trial that fits one task, and sbatch's yes to the job; returns the executor."""
        from orchestrator.backends.slurm.executor import (
            make_executor,
            preflight,
            require_sbatch,
            warn_about_paths,
        )

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
            from orchestrator.backends.slurm.job import SweepDriver

            job = executor.submit(SweepDriver(spec, str(sweep_dir), retry_failed=retry_failed))
            return Launched(jobs=[SubmittedJob(job.job_id, "ray", time.time(), str(job.paths.folder))])

        from orchestrator.backends.slurm.array_plan import array_plan, still_to_run
        from orchestrator.backends.slurm.job import ArrayTrial

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
    from orchestrator.backends.slurm.executor import default_cpus

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
