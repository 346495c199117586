"""Run or resume a sweep: the sweep directory, the plan check, and Ray Tune's Tuner around the trials.

A sweep directory is resumable by running the same command again; Ray's experiment folder is only a
resume cache, the Parquet files under results/ are the record of truth. One driver at a time holds
the sweep's lock (sweep_lock.py); a resume first repairs what a crash can leave behind: a torn
Optuna journal line, a finished trial whose row is unreadable, Ray processes of a killed driver.
"""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

from orchestrator.engine.folder import SweepOutcome, prepare_sweep_dir, repair_journal, write_state
from orchestrator.engine.private_apis import set_restored_callbacks, skip_callback_usage_tags
from orchestrator.engine.progress import SweepProgress
from orchestrator.engine.ray_cluster import RayCluster
from orchestrator.engine.search import build_searcher
from orchestrator.engine.trial import TUNE_NAME, run_recorded_trial, trial_key, tune_trial
from orchestrator.logs import third_party_level
from orchestrator.spec.sweep_spec import SweepSpec
from orchestrator.store import cache, damaged_files
from orchestrator.store.counts import sweep_counts
from orchestrator.store.lock import sweep_lock
from orchestrator.store.parquet import footer_readable, read_trial, trial_file_damaged, trial_path
from orchestrator.store.paths import SweepPaths, parquet_files
from trainables.errors import UserError

# Keep every per-epoch manifest checkpoint (a few bytes each): with num_to_keep set, Tune saves the
# whole experiment state every num_to_keep trial checkpoints, which grows with the sweep and slowed
# a 300-trial run from 8 to 4 trial starts per second (bench/bench_sweep_scale.py --checkpoints 4).
CHECKPOINTS_KEPT = None


def quiet_ray_tune() -> None:
    """Our progress display replaces Tune's, our Parquet files its loggers; keep its warnings about real problems."""
    import logging

    logging.getLogger("ray.tune").setLevel(third_party_level(logging.WARNING))
    # Tune's newer console output prints its own header and tables whatever `verbose` says.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's default CSV, JSON and TensorBoard loggers write 3 files per trial and run a
    # TensorBoard writer thread in the driver: about a fifth of the driver's time per no-op trial
    # (bench/bench_sweep_scale.py). Our record is results/; resume reads Tune's experiment state,
    # not these files.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Without those files Tune's ResultGrid finds no metrics files and warns once per trial (10,000
    # lines for 10,000 trials); the sweep never reads them.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def run_sweep(
    spec: SweepSpec,
    sweep_dir: Path,
    *,
    backend: RayCluster | None = None,
    restart: bool = False,
    retry_failed: bool = False,
    live: bool | None = None,
    trial_function=tune_trial,
) -> SweepOutcome:
    """Run every planned trial not yet finished; returns the counts from Ray's results.

    `trial_function` is the Ray function per trial (signature of engine/trial.py's tune_trial); benches
    pass a no-op one to measure the engine alone, tests one that injects faults. Tune sees it
    under the name TUNE_NAME whatever it is called, so a sweep folder resumes with any of them.
    """
    backend = backend or RayCluster()
    sweep_dir = Path(sweep_dir).resolve()
    backend.check_resources(spec.resources, str(spec.path))
    with sweep_lock(sweep_dir):
        return _run_locked(spec, sweep_dir, backend, restart, retry_failed, live, trial_function)


def _run_locked(
    spec: SweepSpec,
    sweep_dir: Path,
    backend: RayCluster,
    restart: bool,
    retry_failed: bool,
    live: bool | None,
    trial_function,
) -> SweepOutcome:
    from ray import tune

    from orchestrator.engine.ray_processes import RayProcesses, stop_recorded
    from orchestrator.engine.search import prunes
    from orchestrator.engine.stopped_trials import StoppedTrials, stopped_row_writer
    from orchestrator.engine.trackers import tracker_callbacks
    from orchestrator.engine.trial_failures import (
        STORAGE_MARK,
        TrialFailures,
        last_error_line,
        record_dead_worker,
    )

    resumed = prepare_sweep_dir(spec, sweep_dir, restart=restart)
    if resumed:
        stopped = stop_recorded(sweep_dir)  # what a killed driver of this sweep left running
        if stopped:
            print(f"orchestrator: stopped {stopped} Ray process(es) an earlier driver of this sweep left behind")
        repair_journal(sweep_dir)
        repair_results(spec, sweep_dir)
    local_ray = backend.address is None
    processes = RayProcesses(sweep_dir) if local_ray else None
    backend.start(spec.resources, str(spec.path))
    quiet_ray_tune()
    skip_callback_usage_tags()
    run_id = uuid.uuid4().hex[:12]
    try:
        if processes is not None:
            processes.record()
        write_state(spec, sweep_dir)
        with_parameters = tune.with_parameters(
            trial_function,
            sweep_dir=str(sweep_dir),
            sweep_name=spec.name,
            base_trial=spec.trial,
            objectives=list(spec.objectives),
            cpus=spec.resources["cpu"],
            gpus=spec.resources["gpu"],
            run_id=run_id,
            retry_failed=retry_failed,
            report_all=bool(spec.trackers),
        )
        # Tuner.restore accepts only a trainable of the name the sweep folder was written with.
        with_parameters.__name__ = TUNE_NAME
        trainable = tune.with_resources(with_parameters, {"cpu": spec.resources["cpu"], "gpu": spec.resources["gpu"]})
        progress = SweepProgress(
            spec.num_trials,
            spec.objectives,
            live=live,
            on_start=processes and processes.record,
            where_of=progress_reader(spec, sweep_dir),
        )
        failures = TrialFailures(spec, sweep_dir, run_id)
        # This run's callbacks, also for a restored run (Tune would bring back the first run's).
        callbacks = [progress, failures, *tracker_callbacks(spec.trackers, sweep_dir, spec.name)]
        if spec.scheduler is not None:
            how = spec.scheduler.describe() + (" (Optuna's pruner)" if prunes(spec) else "")
            callbacks.append(StoppedTrials(spec.scheduler, stopped_row_writer(spec, sweep_dir, run_id), how))
        ray_dir = SweepPaths(sweep_dir).ray
        if tune.Tuner.can_restore(str(ray_dir)):
            # Errored trials always come back: the trial function itself decides whether a failure
            # was final (a user's error, a bug: it re-raises its recorded error) or worth a retry
            # (a killed worker, a full disk), and --retry-failed lets final ones run once more.
            tuner = tune.Tuner.restore(str(ray_dir), trainable, resume_unfinished=True, restart_errored=True)
            # The restored run config holds the callbacks pickled by the first run; use this run's.
            set_restored_callbacks(tuner, callbacks)
            # A trial Ray has as failed but with no row (the driver died before it wrote one): the row
            # first, so the failure is on record even if the retry below never happens.
            for result in tuner.get_results():
                # (A trial that never started has no config; a full disk is no one's failure.)
                if result.error is not None and result.config and STORAGE_MARK not in str(result.error):
                    record_dead_worker(
                        spec,
                        sweep_dir,
                        result.config,
                        str(result.metrics.get("trial_id", "")),
                        last_error_line(str(result.error)),
                        run_id,
                    )
        else:
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=build_searcher(spec, sweep_dir),
                    num_samples=spec.num_trials,
                    max_concurrent_trials=spec.max_concurrent,
                    scheduler=_scheduler(spec),
                    # One worker process runs trial after trial: no torch import per trial.
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=ray_dir.name,
                    storage_path=str(ray_dir.parent),
                    verbose=0,
                    callbacks=callbacks,
                    failure_config=tune.FailureConfig(max_failures=spec.max_retries),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
                ),
            )
        with _actor_starts_at_once(spec), _scheduler_metric_check(spec):
            tuner.fit()
        _refresh_results_cache(sweep_dir)
        if failures.out_of_storage is not None:
            raise UserError(f"{sweep_dir}: stopped: {failures.out_of_storage}")
        # Counted from the rows, the record of truth: Tune reports a trial it stopped on Ctrl-C (or
        # `orchestrator cancel`) without an error, which once counted an interrupted sweep as done.
        counts = sweep_counts(sweep_dir)
        done = counts["finished"] + counts["stopped"]
        return SweepOutcome(sweep_dir, resumed, done, counts["failed"], counts["planned"] - done - counts["failed"])
    finally:
        backend.stop()
        if processes is not None:
            stop_recorded(sweep_dir)  # anything ray.shutdown() left (its agents can outlive it)


def _scheduler(spec: SweepSpec):
    """Tune's scheduler for the spec's `scheduler:`; in a searched sweep, Optuna's pruner through one."""
    from orchestrator.engine.optuna_pruning import OptunaPruning
    from orchestrator.engine.schedulers import build_scheduler
    from orchestrator.engine.search import prunes

    if spec.scheduler is None:
        return None
    if prunes(spec):
        return OptunaPruning(spec.scheduler)
    return build_scheduler(spec.scheduler, spec.max_preprocessor_epochs)


def progress_reader(spec: SweepSpec, sweep_dir: Path):
    """where_of for SweepProgress: a running trial's last progress report, from its workdir."""
    from trainables.stage_progress import read

    paths, keys = SweepPaths(sweep_dir), {}

    def where_of(trial) -> str | None:
        if trial.trial_id not in keys:
            keys[trial.trial_id] = trial_key(spec.trial_config(trial.config))
        record = read(paths.workdir(keys[trial.trial_id]))
        return f"{record['stage']}: {record['text']}" if record else None

    return where_of


def _refresh_results_cache(sweep_dir: Path) -> None:
    """One file of every trial's rows for the readers (cache.py); a sweep never fails for it."""
    try:
        cache.refresh_all(SweepPaths(sweep_dir).results.root)
    except OSError as err:
        print(f"orchestrator: results cache not refreshed ({err}); readers read the per-trial files")


PENDING_TRIALS_VARIABLE = "TUNE_MAX_PENDING_TRIALS_PG"


@contextmanager
def _actor_starts_at_once(spec: SweepSpec):
    """At most as many trial actors starting together as the cluster has CPUs (unless the user set
    TUNE_MAX_PENDING_TRIALS_PG). Tune otherwise starts max_concurrent at once, each a process that
    imports Ray Tune: 8 on 2 cores put the first trial 9.8 s after ray.init instead of 2.2 s
    (bench/bench_sweep_scale.py --trials 300), with the same trials per second after."""
    if PENDING_TRIALS_VARIABLE in os.environ:
        yield
        return
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    with _environment_variable(PENDING_TRIALS_VARIABLE, str(max(1, min(spec.max_concurrent or cpus, cpus)))):
        yield


STRICT_METRICS_VARIABLE = "TUNE_DISABLE_STRICT_METRIC_CHECKING"


@contextmanager
def _scheduler_metric_check(spec: SweepSpec):
    """Tune's check that every report carries the scheduler's metric, off while a scheduler runs.

    The metric is in the reports of measured epochs only (preprocessor.validation.every); Tune
    would fail a trial at its first report without it. A NaN in the other reports instead would
    be taken for a measurement at whatever rung that epoch reaches.
    """
    if spec.scheduler is None:
        yield
        return
    with _environment_variable(STRICT_METRICS_VARIABLE, "1"):
        yield


@contextmanager
def _environment_variable(name: str, value: str):
    """os.environ[name] = value while the block runs (Tune reads its settings from there), then as it was."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def repair_results(spec: SweepSpec, sweep_dir: Path) -> list[str]:
    """Put a resumed sweep's results right after damage; returns the keys whose rows were rebuilt.

    A damaged file is moved aside (damaged_files.py), never deleted. A finished trial whose row or
    per-example file is gone or unreadable: Ray's state says it is done and would never run it
    again, but its workdir still holds its result (SweepPaths.trial_result), so running the trial here
    only writes its rows again, from that result: no training, no evaluation. A finished trial's
    damaged epochs file cannot be rebuilt (its epochs are not trained again): moved aside, noted.
    """
    paths = SweepPaths(sweep_dir)
    for folder in (paths.results.epochs, paths.results.examples):
        for path in parquet_files(folder):
            if not footer_readable(path) and path.is_file():
                aside = f"{folder.name}/{damaged_files.ASIDE_FOLDER}/"
                damaged_files.move_aside(path, f"not readable; moved to {aside}")
                if folder == paths.results.examples and trial_path(sweep_dir, path.stem).is_file():
                    # Outcomes and row are written together: both again, from the saved result.
                    damaged_files.move_aside(
                        trial_path(sweep_dir, path.stem), "its per-example outcomes are unreadable"
                    )
    rebuilt = []
    for workdir in sorted(p for p in paths.trials.glob("*") if p.is_dir()):
        key = workdir.name
        if trial_file_damaged(sweep_dir, key):
            damaged_files.move_aside(
                trial_path(sweep_dir, key), "trial row not readable; written again from its result"
            )
        if read_trial(sweep_dir, key) is not None or not paths.trial_result(key).is_file():
            continue
        try:
            saved = json.loads(paths.trial_config(key).read_text())
            if trial_key(spec.trial_config(saved["overrides"])) != key:
                continue  # not a trial of this plan
            run_recorded_trial(
                saved["overrides"],
                sweep_dir=str(sweep_dir),
                sweep_name=spec.name,
                base_trial=spec.trial,
                cpus=spec.resources["cpu"],
                gpus=0,
                trial_id=saved["trial_id"],
                run_id="rebuilt",
            )
        except (OSError, ValueError, KeyError) as err:
            damaged_files.note(paths.trial_config(key), f"cannot rebuild the trial's row: {err}")
            continue
        rebuilt.append(key)
    return rebuilt
