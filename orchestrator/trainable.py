"""One trial of a sweep, run where it is scheduled (a Ray worker or a Slurm array task): results too.

It wraps trainables.trial.run_trial: per-epoch reports (tune.report with a checkpoint under Ray),
per-epoch Parquet, the per-example outcomes, and one Parquet row at the end (TERMINATED, or ERROR
with the reason) written by the worker itself, so a row survives a driver that dies right after
the trial.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Callable

from trainables.artifacts import artifact_lock, atomic_write_json, config_hash
from trainables.trial import run_trial, validate_trial_config

from .results import ERROR, TERMINATED, EpochLog, now_utc, read_trial, trial_row, write_examples, write_trial
from .spec import apply_overrides

MANIFEST = "manifest.json"
# report(record, manifest): per epoch with a manifest of where the trial is, at the end with None.
Report = Callable[[dict[str, Any], "dict[str, Any] | None"], None]


def trial_key(config: dict) -> str:
    """The identity of a trial across resumes and retries: the hash of its validated config."""
    return config_hash(validate_trial_config(config))


def trial_workdir(sweep_dir: Path, key: str) -> Path:
    return Path(sweep_dir) / "trials" / key


def sweep_trial(params: dict[str, Any], *, sweep_dir: str, sweep_name: str, base_trial: dict,
                objectives: list[str], cpus: float, gpus: float) -> None:
    """One trial as a Ray Tune function: `params` are the dotted overrides OptunaSearch chose."""
    from ray import tune

    # Optuna's single-objective searcher reads its metric from every report: NaN until evaluated.
    pending = {metric: math.nan for metric in objectives}

    def report(record: dict[str, Any], manifest: dict[str, Any] | None) -> None:
        if manifest is None:  # the final report: the metrics themselves
            tune.report(record)
            return
        with tempfile.TemporaryDirectory() as folder:
            # The weights stay in the trial's workdir and the shared artifact store (a pre-processor
            # is shared by every trial that trains the same one), where run_trial resumes from;
            # Ray's checkpoint is a manifest of where the trial was, for Ray's own bookkeeping.
            (Path(folder) / MANIFEST).write_text(json.dumps(manifest))
            tune.report({**pending, **record}, checkpoint=tune.Checkpoint.from_directory(folder))

    run_one_trial(params, sweep_dir=sweep_dir, sweep_name=sweep_name, base_trial=base_trial, cpus=cpus, gpus=gpus,
                  trial_id=tune.get_context().get_trial_id(), report=report)


def run_one_trial(params: dict[str, Any], *, sweep_dir: str, sweep_name: str, base_trial: dict, cpus: float,
                  gpus: float, trial_id: str, report: Report | None = None) -> dict[str, Any]:
    """Run (or resume, or look up) one trial and write its Parquet rows; returns its metrics.

    `report(record, manifest)` is called per epoch (manifest says where the trial is) and once at
    the end (manifest None, record["stage"] == "done"); Ray Tune's wrapper reports to Tune,
    a Slurm array task passes nothing.
    """
    import torch

    report = report or (lambda record, manifest: None)
    # The scheduler gives each trial its share of CPUs; torch would otherwise start one thread per core.
    torch.set_num_threads(max(1, int(cpus)))
    device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
    sweep_dir_path = Path(sweep_dir)
    config = validate_trial_config(apply_overrides(base_trial, params))
    key = config_hash(config)
    workdir = trial_workdir(sweep_dir_path, key)

    # Two trials with the same config (Optuna may sample a categorical point twice) share a
    # workdir: the second waits here and then returns the first one's saved result.
    with artifact_lock(workdir):
        # The Parquet row, not Tune's experiment state, says a trial is finished: a driver killed
        # before Tune saved its state restores this trial as unfinished; it must not run again.
        finished = read_trial(sweep_dir_path, key)
        if finished is not None and finished["status"] == TERMINATED:
            report({**_numbers(finished), "stage": "done", "config_hash": key}, None)
            return finished
        started = now_utc()
        atomic_write_json(workdir / "config.json", {"config": config, "overrides": params, "trial_id": trial_id})
        epochs = EpochLog(sweep_dir_path, key, {"sweep": sweep_name, "trial_id": trial_id, "config_hash": key})
        # Where an earlier, interrupted run of this trial got to: its last epoch on disk, the same
        # record the weights were saved with (Ray's checkpoint can lag behind its experiment state).
        resumed = epochs.last_position()

        def on_epoch(record: dict[str, Any]) -> None:
            for name, value in record.items():
                if "loss" in name and isinstance(value, float) and not math.isfinite(value):
                    raise FloatingPointError(f"{record.get('stage')}: non-finite {name} at epoch {record.get('epoch')}")
            epochs.add(record)
            report({**_numbers(record), "stage": record["stage"], "config_hash": key},
                   {"config_hash": key, "stage": record["stage"], "epoch": record["epoch"]})

        def row(status: str, metrics: dict | None, error: str | None) -> dict[str, Any]:
            extra = {"resumed_from": resumed, "device": device}
            return trial_row(sweep=sweep_name, trial_id=trial_id, config_hash=key, config=config, status=status,
                             metrics=metrics, error=error, started_at=started, finished_at=now_utc(), extra=extra)

        try:
            metrics = run_trial(config, workdir, artifacts=sweep_dir_path / "artifacts", device=device, on_epoch=on_epoch)
        except Exception as err:
            write_trial(sweep_dir_path, row(ERROR, None, f"{type(err).__name__}: {err}"))
            raise
        # The per-point outcomes go to their own table (a row per test point and attack), not the trial row.
        examples = metrics.pop("examples", None)
        if examples is not None:
            write_examples(sweep_dir_path, key, examples, {"sweep": sweep_name, "trial_id": trial_id, "config_hash": key})
        write_trial(sweep_dir_path, row(TERMINATED, metrics, None))
    report({**_numbers(metrics), "stage": "done", "config_hash": key,
            "integrity_flags": ",".join(metrics.get("integrity_flags", []))}, None)
    return metrics


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a record, the ones Tune and Optuna can use as metrics."""
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
