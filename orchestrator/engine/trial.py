"""One trial of a sweep, run where it is scheduled (a Ray worker or a Slurm array task): results too.

Three layers, each adding one thing: `tune_trial` (the Ray Tune function: reports to Tune),
`run_recorded_trial` (the trial's lock, its Parquet rows, failure kinds) and
trainables.trial.run_trial (the science).

run_recorded_trial wraps trainables.trial.run_trial: per-epoch reports (tune.report with a checkpoint under Ray),
per-epoch Parquet, the per-example outcomes, and one Parquet row at the end (TERMINATED, or ERROR
with the reason) written by the worker itself, so a row survives a driver that dies right after
the trial.

Failures come in kinds (see `error_kind`): a user's error or a failure of the trial's own code
happens again on every run, so its ERROR row is final until --retry-failed; a dead worker
(recorded by the driver, trial_failures.py) is retried; a full disk stops the whole sweep.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import json
import math
import os
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

from orchestrator import logs
from orchestrator.errors import OutOfStorage, RecordedFailure
from orchestrator.spec.sweep_spec import apply_overrides
from orchestrator.store import damaged_files
from orchestrator.store.parquet import EpochLog, read_trial, trial_file_damaged, trial_path, write_examples, write_trial
from orchestrator.store.paths import SweepPaths
from orchestrator.store.rows import ERROR, STOPPED, TERMINATED, now_utc, trial_row
from trainables.artifacts import artifact_lock, atomic_write_json, config_hash
from trainables.errors import UserError
from trainables.schema import validate_trial_config

MANIFEST = "manifest.json"
# error_kind of an ERROR row. USER and TRIAL failures repeat on every run: recorded once, not
# retried. INFRASTRUCTURE (a worker killed: OOM, node lost) is retried. STORAGE stops the sweep.
USER, TRIAL, INFRASTRUCTURE, STORAGE = "user", "trial", "infrastructure", "storage"
FINAL_KINDS = (USER, TRIAL)
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def error_kind(err: BaseException) -> str:
    if isinstance(err, UserError):
        return USER
    if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
        return STORAGE
    return TRIAL


# report(record, manifest): per epoch with a manifest of where the trial is, at the end with None.
Report = Callable[[dict[str, Any], "dict[str, Any] | None"], None]


def trial_key(config: dict) -> str:
    """The identity of a trial across resumes and retries: the hash of its validated config."""
    return config_hash(validate_trial_config(config))


# The name Ray Tune registers the trial function under. Tuner.restore refuses a trainable of any
# other name, and every sweep folder so far was written with the function's old name: the runner
# registers whatever trial function it is given under this one (tests/chaos/inject.py relies on it).
TUNE_NAME = "sweep_trial"
# What a trial reports to Tune beside its objectives: the progress display's "where" and the key.
TUNE_KEYS = ("stage", "epoch", "config_hash", "integrity_flags")
# The stage of a trial's final report (its metrics); every earlier report names the stage it is in.
FINAL_STAGE = "done"


def ended_early(last_result: dict | None) -> bool:
    """Whether a trial Tune ended as complete did so without its final report: a scheduler
    stopped it (schedulers.py). No result, or one that names no stage, is an ordinary end."""
    return bool(last_result) and last_result.get("stage", FINAL_STAGE) != FINAL_STAGE


def tune_trial(
    params: dict[str, Any],
    *,
    sweep_dir: str,
    sweep_name: str,
    base_trial: dict,
    objectives: list[str],
    cpus: float,
    gpus: float,
    run_id: str = "",
    retry_failed: bool = False,
    report_all: bool = False,
) -> None:
    """One trial as a Ray Tune function: `params` are the dotted overrides OptunaSearch chose.

    `run_id` names this run of the driver; with `retry_failed` a trial that failed for good in an
    earlier run is run again (once per run: Tune's own retries of it see this run's row).
    `report_all`: tell Tune every number of every epoch (experiment trackers log what Tune sees).
    """
    from ray import tune

    # Optuna's single-objective searcher reads its metric from every report: NaN until evaluated.
    pending = {metric: math.nan for metric in objectives}
    # Tune is told the objectives and where the trial is, nothing more: the rows under results/ are
    # the record, and Tune keeps statistics of every reported number of every trial in its
    # experiment state, rewritten again and again (about 10 KB a trial with a handful of numbers).
    # The validation probe's numbers (val_*) too: a scheduler stops trials on them.
    told = {*objectives, *TUNE_KEYS}

    def report(record: dict[str, Any], manifest: dict[str, Any] | None) -> None:
        if not report_all:
            record = {key: value for key, value in record.items() if key in told or key.startswith("val_")}
        if manifest is None:  # the final report: the metrics themselves
            tune.report(record)
            return
        with tempfile.TemporaryDirectory() as folder:
            # The weights stay in the trial's workdir and the shared artifact store (a pre-processor
            # is shared by every trial that trains the same one), where run_trial resumes from;
            # Ray's checkpoint is a manifest of where the trial was, for Ray's own bookkeeping.
            (Path(folder) / MANIFEST).write_text(json.dumps(manifest))
            tune.report({**pending, **record}, checkpoint=tune.Checkpoint.from_directory(folder))

    try:
        run_recorded_trial(
            params,
            sweep_dir=sweep_dir,
            sweep_name=sweep_name,
            base_trial=base_trial,
            cpus=cpus,
            gpus=gpus,
            trial_id=tune.get_context().get_trial_id(),
            report=report,
            run_id=run_id,
            retry_failed=retry_failed,
        )
    finally:
        release_freed_memory()  # the worker runs the next trial (reuse_actors): start it lean


def release_freed_memory() -> None:
    """Give the memory a finished trial freed back to the system.

    glibc keeps freed heap pages in its arenas; a Ray worker that runs trial after trial
    (reuse_actors) grew that way to ~11 GB on cifar2_table1 and was killed for memory. Measured by
    bench/worker_memory.py (embedded_table1's trials back to back in one process): 2.24 GiB
    resident after 6 trials without this, 0.95 GiB with it, the same trial times. Not glibc
    (macOS, musl): nothing to trim.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def where_this_runs(gpus: float) -> dict[str, Any]:
    """The node this trial runs on, the GPUs it was given (as CUDA numbers them for it: Ray or
    Slurm set CUDA_VISIBLE_DEVICES to its devices alone) and the share of a GPU it asked for."""
    return {"node": socket.gethostname(), "gpu_ids": os.environ.get("CUDA_VISIBLE_DEVICES") or None, "gpus": gpus}


def run_recorded_trial(
    params: dict[str, Any],
    *,
    sweep_dir: str,
    sweep_name: str,
    base_trial: dict,
    cpus: float,
    gpus: float,
    trial_id: str,
    report: Report | None = None,
    run_id: str = "",
    retry_failed: bool = False,
) -> dict[str, Any]:
    """Run (or resume, or look up) one trial and write its Parquet rows; returns its metrics.

    `report(record, manifest)` is called per epoch (manifest says where the trial is) and once at
    the end (manifest None, record["stage"] == "done"); Ray Tune's wrapper reports to Tune,
    a Slurm array task passes nothing.
    """
    import torch

    report = report or (lambda record, manifest: None)
    logs.apply_from_environment()  # the driver's -q / -v, in this worker or Slurm task
    # The scheduler gives each trial its share of CPUs; torch would otherwise start one thread per core.
    torch.set_num_threads(max(1, int(cpus)))
    device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
    placement = where_this_runs(gpus)
    sweep_dir_path = Path(sweep_dir)
    paths = SweepPaths(sweep_dir_path)
    config = validate_trial_config(apply_overrides(base_trial, params))
    key = config_hash(config)
    workdir = paths.workdir(key)

    # Two trials with the same config (Optuna may sample a categorical point twice) share a
    # workdir: the second waits here and then returns the first one's saved result.
    with artifact_lock(workdir):
        # The Parquet row, not Tune's experiment state, says a trial is finished: a driver killed
        # before Tune saved its state restores this trial as unfinished; it must not run again.
        if trial_file_damaged(sweep_dir_path, key):  # truncated, junk: kept aside, the trial runs again
            damaged_files.move_aside(trial_path(sweep_dir_path, key), "trial row not readable; the trial runs again")
        previous = read_trial(sweep_dir_path, key)
        if previous is not None and previous["status"] == TERMINATED:
            report({**_numbers(previous), "stage": FINAL_STAGE, "config_hash": key}, None)
            return previous
        if previous is not None and previous["status"] == STOPPED:  # a scheduler's decision stands
            report({"stage": STOPPED.lower(), "config_hash": key}, None)
            return previous
        if (
            previous is not None
            and previous["status"] == ERROR
            and previous.get("error_kind", TRIAL) in FINAL_KINDS
            and not (retry_failed and previous.get("run_id") != run_id)
        ):
            raise RecordedFailure(
                f"{previous['error']} (recorded {previous['finished_at']}; not run again: "
                "fix the cause and resume with --retry-failed)"
            )
        started = now_utc()
        atomic_write_json(paths.trial_config(key), {"config": config, "overrides": params, "trial_id": trial_id})
        # Each epoch row says which node ran it: a trial moved to another node shows where it resumed.
        epochs = EpochLog(
            sweep_dir_path,
            key,
            {"sweep": sweep_name, "trial_id": trial_id, "config_hash": key, "node": placement["node"]},
        )
        # Where an earlier, interrupted run of this trial got to: its last epoch on disk, the same
        # record the weights were saved with (Ray's checkpoint can lag behind its experiment state).
        # A saved result means the work is done and only the rows are written again (runner.py).
        resumed = "saved result" if paths.trial_result(key).is_file() else epochs.last_position()

        def on_epoch(record: dict[str, Any]) -> None:
            for name, value in record.items():
                if "loss" in name and isinstance(value, float) and not math.isfinite(value):
                    raise FloatingPointError(f"{record.get('stage')}: non-finite {name} at epoch {record.get('epoch')}")
            if not epochs.add(record):
                return  # a resumed stage replaying an epoch already logged
            report(
                {**_numbers(record), "stage": record["stage"], "config_hash": key},
                {"config_hash": key, "stage": record["stage"], "epoch": record["epoch"]},
            )

        def row(status: str, metrics: dict | None, error: str | None, kind: str | None = None) -> dict[str, Any]:
            extra = {
                "resumed_from": resumed,
                "device": device,
                **placement,
                "run_id": run_id,
                "error_kind": kind,
            }
            return trial_row(
                sweep=sweep_name,
                trial_id=trial_id,
                config_hash=key,
                config=config,
                status=status,
                metrics=metrics,
                error=error,
                started_at=started,
                finished_at=now_utc(),
                extra=extra,
            )

        try:
            # Imported here, in the worker: the driver imports this module too and needs no torch.
            from trainables.trial import run_trial

            metrics = run_trial(config, workdir, artifacts=paths.artifacts, device=device, on_epoch=on_epoch)
            # The per-point outcomes go to their own table (a row per test point and attack), not the trial row.
            examples = metrics.pop("examples", None)
            if examples is not None:
                write_examples(
                    sweep_dir_path, key, examples, {"sweep": sweep_name, "trial_id": trial_id, "config_hash": key}
                )
            write_trial(sweep_dir_path, row(TERMINATED, metrics, None))
        except Exception as err:
            kind = error_kind(err)
            if kind == STORAGE:  # no row (there is no room for one): the trial is simply not done
                raise OutOfStorage(
                    f"{err.strerror or err} ({getattr(err, 'filename', None) or 'while writing'}); "
                    "free space, then run the same command again to resume"
                ) from err
            write_trial(sweep_dir_path, row(ERROR, None, f"{type(err).__name__}: {err}", kind))
            raise
    report(
        {
            **_numbers(metrics),
            "stage": FINAL_STAGE,
            "config_hash": key,
            "integrity_flags": ",".join(metrics.get("integrity_flags", [])),
        },
        None,
    )
    return metrics


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a record, the ones Tune and Optuna can use as metrics."""
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
