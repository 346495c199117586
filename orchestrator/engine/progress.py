"""Live progress of a sweep: trials done, running, failed; best so far; elapsed and ETA.

A Ray Tune callback. On a terminal it redraws a rich table; elsewhere (CI logs, Slurm output
files) it prints one plain line per trial that starts, finishes or fails, and every
PLAIN_PROGRESS_S one line per running trial saying where it is inside its stage ("preprocessor
cropd: epoch 3/20, batch 5/14"), from the progress file the trial writes (trainables/stage_progress.py).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from ray.tune import Callback

from orchestrator.engine.trial import ended_early
from trainables.schema.results import TrialStatus

# STOPPED: by a scheduler (schedulers.py); Tune ends such a trial as TERMINATED, without its final report.
DONE, ERROR, RUNNING, STOPPED = TrialStatus.TERMINATED, TrialStatus.ERROR, TrialStatus.RUNNING, TrialStatus.STOPPED
# The live table shows the running trials and this many of the latest ended ones, redrawn at most
# every LIVE_REDRAW_S: a 10,000-row table rebuilt at every event would be the driver's main work.
LIVE_ENDED_ROWS = 20
LIVE_REDRAW_S = 0.5
# Without a terminal: how often the running trials' progress is printed (a line each).
PLAIN_PROGRESS_S = 60.0


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

    def __init__(
        self,
        total: int,
        objectives: dict[str, str],
        *,
        live: bool | None = None,
        stream=None,
        on_start=None,
        where_of=None,
    ):
        self.total = total
        # where_of(trial) -> "stage: where inside it" or None: a running trial's own progress report.
        self.where_of = where_of
        self._progress_printed = time.monotonic()
        # Called when a trial starts in a worker process not seen before (the driver records Ray's
        # new processes); a reused worker (reuse_actors) has nothing new to record.
        self.on_start = on_start
        self._workers_seen: set[int] = set()
        self.objectives = objectives
        self.stream = stream or sys.stderr
        self.live_wanted = self.stream.isatty() if live is None else live
        self.started = time.monotonic()
        self.finished_here = 0  # trials finished in this run (restored ones do not tell us speed)
        self.states: dict[str, str] = {}  # trial id -> state, as the hooks last saw it
        self._tally: dict[str, int] = {}  # state -> how many trials are in it
        self._seen = 0  # how many of Tune's trials (an append-only list) have been taken in
        self._best: float | None = None
        self._live = None
        self._drawn = 0.0  # when the live table was last rebuilt
        self._last_trials: list = []

    # Ray pickles the run config (callbacks included) into its experiment state.
    def __getstate__(self) -> dict:
        return {
            **self.__dict__,
            "_live": None,
            "stream": None,
            "_last_trials": [],
            "on_start": None,
            "where_of": None,
            "_workers_seen": set(),
        }

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.stream = sys.stderr

    def status(self, trial) -> str:
        # Tune calls the completion hooks before it updates trial.status; the hooks record it first.
        return self.states.get(trial.trial_id, trial.status)

    # Counts and the best value are kept as trials change state, not recounted over every trial
    # at each event: that recount made a 10,000-trial sweep's driver quadratic in its trials.
    def _set_state(self, trial, state: str) -> None:
        # Kept as plain strings (TrialStatus values, or Tune's own PENDING, PAUSED ... of a restored
        # trial): Ray pickles this callback with the experiment's state.
        state = str(state)
        previous = self.states.get(trial.trial_id)
        if previous is not None:
            self._tally[previous] -= 1
        self.states[trial.trial_id] = state
        self._tally[state] = self._tally.get(state, 0) + 1
        if state == DONE:
            self._consider_best(trial)

    def _catch_up(self, trials: list) -> None:
        """Take in the trials Tune added since the last event (restored ones arrive already ended)."""
        for trial in trials[self._seen :]:
            if trial.trial_id not in self.states:
                self._set_state(trial, trial.status)
        self._seen = max(self._seen, len(trials))

    def _consider_best(self, trial) -> None:
        metric, mode = next(iter(self.objectives.items()))
        value = (trial.last_result or {}).get(metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        if self._best is None or (value > self._best if mode == "max" else value < self._best):
            self._best = value

    def counts(self, trials: list) -> dict[str, int]:
        self._catch_up(trials)
        done, failed, running, stopped = (self._tally.get(state, 0) for state in (DONE, ERROR, RUNNING, STOPPED))
        return {
            "done": done,
            "running": running,
            "failed": failed,
            "stopped": stopped,
            "pending": self.total - done - failed - running - stopped,
        }

    def best(self, trials: list) -> str:
        self._catch_up(trials)
        metric = next(iter(self.objectives))
        return f"best {metric}: -" if self._best is None else f"best {metric}: {self._best:.4f}"

    def eta(self, trials: list) -> float:
        counts = self.counts(trials)
        remaining = counts["pending"] + counts["running"]
        if not self.finished_here:
            return math.nan
        return (time.monotonic() - self.started) / self.finished_here * remaining

    def summary(self, trials: list) -> str:
        c = self.counts(trials)
        return (
            f"{c['done']}/{self.total} done, {c['running']} running, {c['failed']} failed"
            f"{f', {c[STOPPED.lower()]} stopped' if c[STOPPED.lower()] else ''}; {self.best(trials)}; "
            f"elapsed {format_seconds(time.monotonic() - self.started)}, eta {format_seconds(self.eta(trials))}"
        )

    def _new_worker(self, trial) -> bool:
        """Whether `trial` runs on an actor no earlier trial of this run ran on (unknown: True).

        Keyed by the handle's hash (its actor id), not the handle: holding an actor handle would
        keep that actor alive. Scanning the process tree at every start cost ~20 ms a trial.
        """
        actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
        if actor is None:
            return True
        key = hash(actor)
        if key in self._workers_seen:
            return False
        self._workers_seen.add(key)
        return True

    # --- Ray Tune hooks -------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        if self.on_start is not None and self._new_worker(trial):
            self.on_start()
        self._set_state(trial, RUNNING)
        self._event(trials, trial, "started")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.finished_here += 1
        if ended_early(trial.last_result):
            self._set_state(trial, STOPPED)
            last = trial.last_result
            self._event(trials, trial, f"stopped at {last.get('stage')} epoch {last.get('epoch')}:")
        else:
            self._set_state(trial, DONE)
            self._event(trials, trial, "done")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.finished_here += 1
        self._set_state(trial, ERROR)
        self._event(trials, trial, "FAILED")

    def on_step_end(self, iteration, trials, **info):
        self._last_trials = trials
        if self._live is not None:
            self._redraw(trials)
        elif not self.live_wanted and time.monotonic() - self._progress_printed >= PLAIN_PROGRESS_S:
            self.print_running(trials)

    def print_running(self, trials) -> None:
        """One line per running trial that has said where it is."""
        self._progress_printed = time.monotonic()
        for trial in trials:
            if self.status(trial) == RUNNING and (where := self._where(trial)):
                print(
                    f"[{time.strftime('%H:%M:%S')}] running {describe(trial.config)}: {where}",
                    file=self.stream,
                    flush=True,
                )

    def _where(self, trial) -> str | None:
        if self.where_of is None:
            return None
        try:
            return self.where_of(trial)
        except Exception:  # noqa: BLE001 (a display detail must never stop the sweep)
            return None

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
            self._redraw(trials)
            return
        metrics = ""
        if what == "done" and trial.last_result:
            metrics = " " + " ".join(f"{m}={trial.last_result.get(m, math.nan):.4f}" for m in self.objectives)
        print(
            f"[{time.strftime('%H:%M:%S')}] {what} {describe(trial.config)}{metrics} | {self.summary(trials)}",
            file=self.stream,
            flush=True,
        )

    def _redraw(self, trials) -> None:
        if time.monotonic() - self._drawn >= LIVE_REDRAW_S:
            self._live.update(self._table(trials))
            self._drawn = time.monotonic()

    def _table(self, trials):
        from rich.table import Table

        table = Table(title=self.summary(trials), title_justify="left")
        table.add_column("trial")
        table.add_column("state")
        table.add_column("settings")
        table.add_column("where")
        for metric in self.objectives:
            table.add_column(metric, justify="right")
        running = [trial for trial in trials if self.status(trial) == RUNNING]
        ended = [trial for trial in trials if self.status(trial) in (DONE, ERROR)][-LIVE_ENDED_ROWS:]
        for trial in running + ended:
            result = trial.last_result or {}
            where = ""
            if self.status(trial) == RUNNING:
                where = self._where(trial) or f"{result.get('stage', '')} {result.get('epoch', '')}".strip()
            values = [
                f"{result[m]:.4f}" if isinstance(result.get(m), float) and math.isfinite(result[m]) else "-"
                for m in self.objectives
            ]
            table.add_row(trial.trial_id, self.status(trial), describe(trial.config), where, *values)
        return table
