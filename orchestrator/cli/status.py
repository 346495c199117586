"""`orchestrator status <sweep dir or spec>`: counts by state, then one line per trial.

Reads only the sweep directory (Parquet rows and trial folders), never Ray: it works while the
sweep runs, after it was killed, and from a login node watching a Slurm job. `--format json`
prints the same as one JSON object on stdout (nothing else there), for scripts and dashboards.
The counts, the started trials and a trial's seconds come from store/counts.py; this prints them.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator.analysis.plain_json import dumps, json_value
from orchestrator.cli.options import add_format_option
from orchestrator.spec.queue import duration_text, sweep_queue, sweep_spec
from orchestrator.spec.target import sweep_dir_of
from orchestrator.store.counts import progress_of_started, sweep_counts, trial_seconds
from orchestrator.store.lock import driver_state, owner_text
from orchestrator.store.paths import SweepPaths
from orchestrator.store.query import load_trials
from trainables.schema.results import ACCURACY_NAMES, accuracy_column, count_column, interval_columns

COLUMN_TITLES = {
    "head.mode": "head",
    "foundation.mode": "foundation mode",
    "foundation.name": "foundation",
    "foundation.pretraining.method": "pre-training",
}
SHOWN_SETTINGS = (
    "dataset",
    "data_fraction",
    "seed",
    "foundation.name",
    "foundation.pretraining.method",
    "foundation.mode",
    "preprocessor.kind",
    "preprocessor.lambda",
    "preprocessor.temperature",
    "head.mode",
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("status", help="what a sweep has done so far")
    parser.add_argument("target", type=Path, help="a sweep directory, or the spec it was run from")
    add_format_option(
        parser, ("json",), "text (default), or json: one object with the counts, the driver, the jobs and every trial"
    )
    parser.set_defaults(run=run)


FORMATS = ("text", "json")
# The per-trial lines say what the counts say ("3 finished"), not Ray's state names; the JSON
# keeps the rows' own values (TERMINATED, ERROR, STOPPED), which --sql queries use.
STATUS_WORDS = {"TERMINATED": "finished", "ERROR": "failed", "STOPPED": "stopped"}


def run(args: argparse.Namespace) -> int:
    sweep_dir = sweep_dir_of(args.target)
    if args.format == "json":
        sys.stdout.write(dumps(status_data(sweep_dir)))
    else:
        print_status(sweep_dir)
    return 0


def print_status(sweep_dir: Path, console: Console | None = None, *, per_trial: bool = True) -> None:
    """Counts by state, the backend's jobs (Slurm's), then (`per_trial`) one line per trial; failures always."""
    # Off a terminal (CI logs, Slurm output) rich assumes 80 columns and folds the table.
    console = console or Console(width=None if Console().is_terminal else 160)
    sweep_dir = Path(sweep_dir)
    trials = load_trials(sweep_dir)  # read once: the counts, the progress lines and the table use it
    counts = sweep_counts(sweep_dir, trials)
    console.print(f"sweep {sweep_dir}: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    console.print(driver_line(sweep_dir), markup=False, highlight=False)
    print_jobs(sweep_dir, console)
    live = live_view(sweep_dir, trials)
    for running in live["started"]:
        who = running["config_hash"][:8] + (f" {running['settings_text']}:" if running.get("settings_text") else "")
        left = _left_text(running)
        console.print(
            f"{who} {running['stage']}: {running['text']} ({_ago(running['seconds_ago'])}){left}",
            markup=False,
            highlight=False,
        )
    _print_queue(live, console)
    if not len(trials):
        return
    if not per_trial:
        _print_failures(trials, console)
        return
    settings = shown_settings(trials)
    table = Table()
    table.add_column("trial")
    table.add_column("status")
    for column in settings:
        table.add_column(COLUMN_TITLES.get(column, column.rsplit(".", 1)[-1]))
    for column in (*ACCURACY_NAMES, "time (s)"):
        table.add_column(column, justify="right")
    for row in trials.to_dict("records"):
        cells = [row["config_hash"][:8], STATUS_WORDS.get(row["status"], row["status"])]
        cells += [_cell(row.get(c), "{:.4g}") for c in settings]
        cells += [_cell(row.get(accuracy_column(name))) for name in ACCURACY_NAMES]
        cells.append(f"{trial_seconds(row):.0f}")
        table.add_row(*cells)
    console.print(table)
    _print_failures(trials, console)


def status_data(sweep_dir: Path) -> dict[str, Any]:
    """What `status` prints, as plain JSON values: the counts by state (keys as printed, with `_`
    for spaces), the backend's jobs, and per trial its full hash, id, status, the settings the
    table shows, each headline accuracy with its interval and number of test points, the seconds
    of all stages together, and the error of a failed one. NaN (not measured) is null."""
    sweep_dir = Path(sweep_dir)
    from orchestrator.backends.registry import backend_of

    trials = load_trials(sweep_dir)
    settings = shown_settings(trials) if len(trials) else []
    records = []
    for row in trials.to_dict("records"):
        record: dict[str, Any] = {
            "config_hash": row["config_hash"],
            "trial_id": row.get("trial_id"),
            "status": row["status"],
            "settings": {column: row.get(column) for column in settings},
        }
        for name in ACCURACY_NAMES:
            lo, hi = interval_columns(name)
            record[accuracy_column(name)] = {
                "value": row.get(accuracy_column(name)),
                "lo": row.get(lo),
                "hi": row.get(hi),
                "points": row.get(count_column(name)),  # the test points behind the accuracy
            }
        record["time_s"] = trial_seconds(row)
        record["error"] = row.get("error") if isinstance(row.get("error"), str) and row["error"] else None
        record["error_kind"] = row.get("error_kind") if record["error"] else None
        records.append(record)
    jobs = [
        {"backend": job.backend, "job_id": job.job_id, "mode": job.mode, "state": job.state, "log": str(job.log)}
        for job in backend_of(sweep_dir).jobs(sweep_dir)
    ]
    counts = {state.replace(" ", "_"): n for state, n in sweep_counts(sweep_dir, trials).items()}
    live = live_view(sweep_dir, trials)
    return json_value(
        {
            "sweep": str(sweep_dir),
            "counts": counts,
            "driver": driver_state(sweep_dir) or {"alive": False},
            "jobs": jobs,
            "started": live["started"],
            "queued": live["queued"],
            "time_left": live["time_left"],
            "trials": records,
        }
    )


QUEUED_SHOWN = 8  # queued trials listed by the text view (the JSON lists every one)


def live_view(sweep_dir: Path, trials) -> dict[str, Any]:
    """The started trials (store/counts.py's progress) with their settings and time left, the queued
    ones with theirs, and the time left in all (spec/queue.py); settings and estimates are absent
    where the sweep folder holds no copy of its spec."""
    from orchestrator.backends.registry import backend_of
    from orchestrator.cli.plan import concurrency

    started = progress_of_started(sweep_dir, trials)
    finished = set(trials.loc[trials["status"] == "TERMINATED", "config_hash"]) if len(trials) else set()
    with_rows = set(trials["config_hash"]) if len(trials) else set()
    queue = sweep_queue(sweep_dir, finished, {entry["config_hash"] for entry in started})
    if queue is None:
        return {"started": started, "queued": [], "time_left": None}
    planned = {trial.config_hash: trial for trial in queue.trials}
    paths = SweepPaths(sweep_dir)
    for entry in started:
        trial = planned.get(entry["config_hash"])
        if trial is None:
            continue  # a search's sampled trial: its settings are Optuna's, in its config.json
        entry["settings"], entry["settings_text"] = trial.settings, trial.text
        try:
            elapsed = time.time() - paths.trial_config(trial.config_hash).stat().st_mtime
        except OSError:
            elapsed = 0.0
        entry["estimate_left_s"] = None if trial.estimate_s is None else max(0.0, trial.estimate_s - elapsed)
        # Running longer than estimated (AutoAttack on points that stay robust takes longer): said.
        entry["over_estimate_s"] = None if trial.estimate_s is None else max(0.0, elapsed - trial.estimate_s)
    running = {entry["config_hash"] for entry in started}
    queued = [
        {"config_hash": t.config_hash, "settings": t.settings, "settings_text": t.text, "estimate_s": t.estimate_s}
        for t in queue.trials
        if t.config_hash not in with_rows and t.config_hash not in running
    ]
    spec = sweep_spec(sweep_dir)
    at_once = (backend_of(sweep_dir).plan_concurrency(spec) or concurrency(spec))[0] if spec else 0
    return {
        "started": started,
        "queued": queued,
        "time_left": {
            "trial_s": queue.remaining_s,
            "wall_s": queue.remaining_s / at_once if queue.remaining_s is not None and at_once else None,
            "at_once": at_once,
            "stages_without_estimate": queue.unestimated,
            "from_finished_trials": queue.basis,
            "sampled_later": queue.sampled,
        },
    }


def _print_queue(live: dict[str, Any], console: Console) -> None:
    queued, left = live["queued"], live["time_left"]
    if queued:
        console.print(f"queued: {len(queued)}", markup=False, highlight=False)
        for entry in queued[:QUEUED_SHOWN]:
            console.print(
                f"  {entry['config_hash'][:8]} {entry['settings_text']} ({_about(entry['estimate_s'])})",
                markup=False,
                highlight=False,
            )
        if len(queued) > QUEUED_SHOWN:
            console.print(f"  ... and {len(queued) - QUEUED_SHOWN} more (--format json lists them all)", markup=False)
    if left is None or (not queued and not live["started"]):
        return
    bound = "at least " if left["stages_without_estimate"] else "about "
    if left["trial_s"] is None:
        text = "time left: unknown (no finished trial ran these stages yet)"
    else:
        text = f"time left: {bound}{duration_text(left['trial_s'])} of trial time"
        if left["wall_s"] is not None:
            text += f", {bound}{duration_text(left['wall_s'])} wall at {left['at_once']} at once"
        text += f" (from {left['from_finished_trials']} finished trials of this sweep and those beside it"
        if left["stages_without_estimate"]:
            text += f"; {left['stages_without_estimate']} stages not estimated yet"
        text += ")"
    if left["sampled_later"]:
        text += f"; a search draws {left['sampled_later']} more trials, not counted"
    console.print(text, markup=False, highlight=False)


def driver_line(sweep_dir: Path) -> str:
    """Whether a driver runs the sweep now (the kernel's lock says, not a guess from file ages)."""
    driver = driver_state(sweep_dir)
    if driver is None:
        return "driver: none running"
    return f"driver: running ({owner_text(driver)})"


def shown_settings(trials) -> list[str]:
    """The settings the per-trial lines show: those that vary across the sweep (else the kind)."""
    return [c for c in SHOWN_SETTINGS if c in trials.columns and trials[c].nunique(dropna=True) > 1] or [
        "preprocessor.kind"
    ]


def _print_failures(trials, console: Console) -> None:
    for row in trials.to_dict("records"):
        if isinstance(row.get("error"), str) and row["error"]:  # pandas reads a missing text as NaN
            console.print(f"{row['config_hash'][:8]} failed: {row['error']}", markup=False, highlight=False)


def print_jobs(sweep_dir: Path, console: Console) -> None:
    """One line per job (or array task) the sweep's backend submitted: id, mode, state, its log."""
    from orchestrator.backends.registry import backend_of

    for job in backend_of(sweep_dir).jobs(sweep_dir):
        console.print(
            f"{job.backend} job {job.job_id} ({job.mode}): {job.state}; log {job.log}", markup=False, highlight=False
        )


def _left_text(running: dict[str, Any]) -> str:
    if "estimate_left_s" not in running:
        return ""  # no planned point to estimate from (no spec copy, a search's sample)
    if running.get("over_estimate_s"):
        return f"; {duration_text(running['over_estimate_s'])} past its estimate"
    return f"; {duration_text(running['estimate_left_s'])} left"


def _about(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"about {duration_text(seconds)}"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago" if seconds < 7200 else f"{seconds / 3600:.1f} h ago"


def _cell(value, float_format: str = "{:.4f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return float_format.format(value) if isinstance(value, float) else str(value)
