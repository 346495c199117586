"""`orchestrator status <sweep dir or spec>`: counts by state, then one line per trial.

Reads only the sweep directory (Parquet rows and trial folders), never Ray: it works while the
sweep runs, after it was killed, and from a login node watching a Slurm job.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .results import HEADLINE_METRICS, load_trials, read_state
from .sweep_paths import SweepPaths
from .sweep_target import sweep_dir_of

STAGES = ("data", "foundation", "preprocessor", "head", "evaluation")
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print_status(sweep_dir_of(args.target))
    return 0


def sweep_counts(sweep_dir: Path) -> dict[str, int]:
    """Planned, finished, failed, started-without-result (running or interrupted), not started."""
    state = read_state(sweep_dir)
    trials = load_trials(sweep_dir)
    finished = int((trials["status"] == "TERMINATED").sum()) if len(trials) else 0
    failed = int((trials["status"] == "ERROR").sum()) if len(trials) else 0
    with_rows = set(trials["config_hash"]) if len(trials) else set()
    paths = SweepPaths(sweep_dir)
    started = [
        p.name for p in paths.trials.glob("*") if paths.trial_config(p.name).is_file() and p.name not in with_rows
    ]
    planned = state["num_trials"]
    return {
        "planned": planned,
        "finished": finished,
        "failed": failed,
        "started": len(started),
        "not started": max(0, planned - finished - failed - len(started)),
    }


def print_status(sweep_dir: Path, console: Console | None = None, *, per_trial: bool = True) -> None:
    """Counts by state, the backend's jobs (Slurm's), then (`per_trial`) one line per trial; failures always."""
    # Off a terminal (CI logs, Slurm output) rich assumes 80 columns and folds the table.
    console = console or Console(width=None if Console().is_terminal else 160)
    sweep_dir = Path(sweep_dir)
    counts = sweep_counts(sweep_dir)
    console.print(f"sweep {sweep_dir}: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    print_jobs(sweep_dir, console)
    trials = load_trials(sweep_dir)
    if not len(trials):
        return
    if not per_trial:
        _print_failures(trials, console)
        return
    settings = [c for c in SHOWN_SETTINGS if c in trials.columns and trials[c].nunique(dropna=True) > 1] or [
        "preprocessor.kind"
    ]
    table = Table()
    table.add_column("trial")
    table.add_column("status")
    for column in settings:
        table.add_column(COLUMN_TITLES.get(column, column.rsplit(".", 1)[-1]))
    for column in (*(m.removeprefix("acc_") for m in HEADLINE_METRICS), "time (s)"):
        table.add_column(column, justify="right")
    for row in trials.to_dict("records"):
        total = sum(row.get(f"time_{stage}_s") or 0.0 for stage in STAGES if _finite(row.get(f"time_{stage}_s")))
        cells = [row["config_hash"][:8], row["status"]]
        cells += [_cell(row.get(c), "{:.4g}") for c in settings]
        cells += [_cell(row.get(m)) for m in HEADLINE_METRICS]
        cells.append(f"{total:.0f}")
        table.add_row(*cells)
    console.print(table)
    _print_failures(trials, console)


def _print_failures(trials, console: Console) -> None:
    for row in trials.to_dict("records"):
        if isinstance(row.get("error"), str) and row["error"]:  # pandas reads a missing text as NaN
            console.print(f"{row['config_hash'][:8]} failed: {row['error']}", markup=False, highlight=False)


def print_jobs(sweep_dir: Path, console: Console) -> None:
    """One line per job (or array task) the sweep's backend submitted: id, mode, state, its log."""
    from .backends import backend_of

    for job in backend_of(sweep_dir).jobs(sweep_dir):
        console.print(
            f"{job.backend} job {job.job_id} ({job.mode}): {job.state}; log {job.log}", markup=False, highlight=False
        )


def _finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _cell(value, float_format: str = "{:.4f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return float_format.format(value) if isinstance(value, float) else str(value)
