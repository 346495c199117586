"""Live progress of a sweep: trials done, running, failed; best so far; elapsed and ETA.

A Ray Tune callback. On a terminal it redraws a rich table; elsewhere (CI logs, Slurm output
files) it prints one plain line per trial that starts, finishes or fails.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from ray.tune import Callback

DONE, ERROR, RUNNING = "TERMINATED", "ERROR", "RUNNING"


def describe(config: dict[str, Any]) -> str:
    """A trial's chosen settings, short: `kind=cropd lambda=1 seed=0`; a name two settings end
    in is written whole (`foundation.mode=adversarial_finetune head.mode=robust`)."""
    last = [key.rsplit(".", 1)[-1] for key in config]
    parts = []
    for (key, value), short in zip(config.items(), last):
        if value is None:
            continue
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{short if last.count(short) == 1 else key}={shown}")
    return " ".join(parts) or "(base config)"


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class SweepProgress(Callback):
    """Counts trial states as Ray Tune reports them and renders them."""

    def __init__(self, total: int, objectives: dict[str, str], *, live: bool | None = None, stream=None, on_start=None):
        self.total = total
        self.on_start = on_start  # called as each trial starts (the driver records Ray's new workers)
        self.objectives = objectives
        self.stream = stream or sys.stderr
        self.live_wanted = self.stream.isatty() if live is None else live
        self.started = time.monotonic()
        self.finished_here = 0  # trials finished in this run (restored ones do not tell us speed)
        self.states: dict[str, str] = {}
        self._live = None
        self._last_trials: list = []

    # Ray pickles the run config (callbacks included) into its experiment state.
    def __getstate__(self) -> dict:
        return {**self.__dict__, "_live": None, "stream": None, "_last_trials": [], "on_start": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.stream = sys.stderr

    def status(self, trial) -> str:
        # Tune calls the completion hooks before it updates trial.status; the hooks record it first.
        return self.states.get(trial.trial_id, trial.status)

    def counts(self, trials: list) -> dict[str, int]:
        states = [self.status(t) for t in trials]
        done, failed, running = states.count(DONE), states.count(ERROR), states.count(RUNNING)
        return {"done": done, "running": running, "failed": failed, "pending": self.total - done - failed - running}

    def best(self, trials: list) -> str:
        metric, mode = next(iter(self.objectives.items()))
        values = [t.last_result.get(metric) for t in trials if self.status(t) == DONE and t.last_result]
        values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        if not values:
            return f"best {metric}: -"
        return f"best {metric}: {(max if mode == 'max' else min)(values):.4f}"

    def eta(self, trials: list) -> float:
        counts = self.counts(trials)
        remaining = counts["pending"] + counts["running"]
        if not self.finished_here:
            return math.nan
        return (time.monotonic() - self.started) / self.finished_here * remaining

    def summary(self, trials: list) -> str:
        c = self.counts(trials)
        return (
            f"{c['done']}/{self.total} done, {c['running']} running, {c['failed']} failed; {self.best(trials)}; "
            f"elapsed {format_seconds(time.monotonic() - self.started)}, eta {format_seconds(self.eta(trials))}"
        )

    # --- Ray Tune hooks -------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        if self.on_start is not None:
            self.on_start()
        self.states[trial.trial_id] = RUNNING
        self._event(trials, trial, "started")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.finished_here += 1
        self.states[trial.trial_id] = DONE
        self._event(trials, trial, "done")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.finished_here += 1
        self.states[trial.trial_id] = ERROR
        self._event(trials, trial, "FAILED")

    def on_step_end(self, iteration, trials, **info):
        self._last_trials = trials
        if self._live is not None:
            self._live.update(self._table(trials))

    def on_experiment_end(self, trials, **info):
        if self._live is not None:
            self._live.update(self._table(trials))
            self._live.stop()
            self._live = None

    # --- rendering ------------------------------------------------------------------------
    def _event(self, trials, trial, what: str) -> None:
        if self.live_wanted:
            if self._live is None:
                from rich.console import Console
                from rich.live import Live

                self._live = Live(self._table(trials), console=Console(file=self.stream), refresh_per_second=2)
                self._live.start()
            self._live.update(self._table(trials))
            return
        metrics = ""
        if what == "done" and trial.last_result:
            metrics = " " + " ".join(f"{m}={trial.last_result.get(m, math.nan):.4f}" for m in self.objectives)
        print(
            f"[{time.strftime('%H:%M:%S')}] {what} {describe(trial.config)}{metrics} | {self.summary(trials)}",
            file=self.stream,
            flush=True,
        )

    def _table(self, trials):
        from rich.table import Table

        table = Table(title=self.summary(trials), title_justify="left")
        table.add_column("trial")
        table.add_column("state")
        table.add_column("settings")
        table.add_column("where")
        for metric in self.objectives:
            table.add_column(metric, justify="right")
        for trial in trials:
            result = trial.last_result or {}
            where = (
                f"{result.get('stage', '')} {result.get('epoch', '')}".strip() if self.status(trial) == RUNNING else ""
            )
            values = [
                f"{result[m]:.4f}" if isinstance(result.get(m), float) and math.isfinite(result[m]) else "-"
                for m in self.objectives
            ]
            table.add_row(trial.trial_id, self.status(trial), describe(trial.config), where, *values)
        return table
