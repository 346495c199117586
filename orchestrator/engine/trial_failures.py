"""What the driver does when Ray says a trial failed: a row for a worker that died, a stop for a full disk.

A trial that raises writes its own ERROR row (engine/trial.py). A worker that is killed (the kernel's
OOM killer, a lost node, a stray `kill -9`) writes nothing: this Tune callback writes that row
from Ray's trial state, so a failure is never silent. A trial that found the disk full stops the
whole sweep the way Ctrl-C does (Tune saves its state, queued trials stay queued), instead of
letting every queued trial fail on the same full disk.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ray.tune import Callback

from orchestrator.engine.trial import INFRASTRUCTURE, OutOfStorage, trial_key
from orchestrator.store.parquet import read_trial, write_trial
from orchestrator.store.rows import ERROR, status_row

STORAGE_MARK = OutOfStorage.__name__


def last_error_line(text: str) -> str:
    """The line of a Ray error trace that says what happened (its last non-empty one)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "the trial failed without an error message"


def error_text(trial) -> str:
    """Ray's error trace of a trial: its local error file (written just before this callback runs)."""
    try:
        return Path(trial.error_file).read_text(errors="replace") if trial.error_file else ""
    except OSError:
        return trial.get_error() or ""


class TrialFailures(Callback):
    """Writes missing ERROR rows and stops the sweep on a full disk; `out_of_storage` says why it stopped."""

    def __init__(self, spec, sweep_dir: Path, run_id: str):
        self.spec = spec
        self.sweep_dir = Path(sweep_dir)
        self.run_id = run_id
        self.out_of_storage: str | None = None

    # Ray pickles the run config (callbacks included) into its experiment state: keep it small.
    def __getstate__(self) -> dict:
        return {**self.__dict__, "spec": None}

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        text = error_text(trial)
        if STORAGE_MARK in text:
            if self.out_of_storage is None:
                self.out_of_storage = last_error_line(text).split(f"{STORAGE_MARK}: ", 1)[-1]
                # Tune's own Ctrl-C path: it saves the experiment with every other trial as it is.
                os.kill(os.getpid(), signal.SIGINT)
            return
        record_dead_worker(self.spec, self.sweep_dir, trial.config, trial.trial_id, last_error_line(text), self.run_id)


def record_dead_worker(spec, sweep_dir: Path, params: dict, trial_id: str, reason: str, run_id: str) -> bool:
    """An ERROR row (error_kind infrastructure) for a trial that ended without writing one; True if written."""
    from trainables.schema import validate_trial_config

    config = validate_trial_config(spec.trial_config(params))
    key = trial_key(config)
    if read_trial(sweep_dir, key) is not None:
        return False  # the trial wrote its own row (its exception, or it finished before the worker died)
    write_trial(
        sweep_dir,
        status_row(
            sweep=spec.name,
            trial_id=trial_id,
            config_hash=key,
            config=config,
            status=ERROR,
            error=f"worker lost: {reason}",
            extra={"run_id": run_id, "error_kind": INFRASTRUCTURE},
        ),
    )
    return True
