"""The rows of trials a scheduler stopped (schedulers.py): status STOPPED, with the epoch and the reason.

Tune ends a stopped trial as if it had finished, and its worker writes no row (it is stopped at
its next report), so the driver writes one. Reports leave STOPPED rows out by default, and a
resume never runs such a trial again (engine/trial.py).
"""

from __future__ import annotations

import math
from pathlib import Path

from ray.tune import Callback

from orchestrator.engine.trial import ended_early
from orchestrator.spec.schedulers import TIME_ATTR, SchedulerSpec
from orchestrator.store.parquet import read_trial, write_trial
from orchestrator.store.rows import STOPPED, TERMINATED, status_row
from trainables.artifacts import config_hash
from trainables.schema import validate_trial_config


class StoppedTrials(Callback):
    """Writes the STOPPED row of each trial the scheduler stopped (Tune reports it as complete).

    A trial that completes without its final report ("stage": "done") was stopped; its last
    measurement says where and why. The worker may still be finishing the epoch it was in when
    the stop came: a row it writes afterwards (TERMINATED, had it got that far) is the truer one,
    so a finished row already there is never replaced.
    """

    def __init__(self, scheduler: SchedulerSpec, write_row, how: str | None = None):
        """`write_row(trial, epoch, reason)`: writes the STOPPED row unless the trial has a row.
        `how`: what stopped it, for the reason (default the scheduler's own description)."""
        self.scheduler = scheduler
        self.how = how or scheduler.describe()
        self.write_row = write_row
        self.measured: dict[str, dict] = {}  # trial id -> its last result carrying the metric

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.scheduler.metric in result:
            self.measured[trial.trial_id] = {k: result.get(k) for k in (TIME_ATTR, "stage", self.scheduler.metric)}

    def on_trial_complete(self, iteration, trials, trial, **info):
        measured = self.measured.pop(trial.trial_id, None)
        if measured is None or not ended_early(trial.last_result):
            return
        value = measured[self.scheduler.metric]
        shown = f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else str(value)
        reason = f"stopped by {self.how}: {self.scheduler.metric} = {shown} at epoch {measured[TIME_ATTR]}"
        self.write_row(trial, int(measured[TIME_ATTR]), reason)


def stopped_row_writer(spec, sweep_dir: Path, run_id: str):
    """write_row for StoppedTrials: the trial's row, STOPPED, in the trial's own results file."""

    def write_row(trial, epoch: int, reason: str) -> None:
        config = validate_trial_config(spec.trial_config(trial.config))
        key = config_hash(config)  # the trial's key (engine/trial.py's trial_key), from the config validated once
        existing = read_trial(sweep_dir, key)
        if existing is not None and existing["status"] in (TERMINATED, STOPPED):
            return  # (an ERROR row of an earlier attempt is replaced: this attempt was stopped)
        write_trial(
            sweep_dir,
            status_row(
                sweep=spec.name,
                trial_id=trial.trial_id,
                config_hash=key,
                config=config,
                status=STOPPED,
                extra={"stopped_epoch": epoch, "stop_reason": reason, "run_id": run_id},
            ),
        )

    return write_row
