"""Where a sweep stands, from its folder alone: trials by status, the started ones, their seconds.

Reads the sweep's record (sweep.json, the Parquet rows, the trial folders), never Ray: it answers
while the sweep runs, after it was killed, and from a login node watching a Slurm job.
`orchestrator status` prints it, `orchestrator sweep --wait` decides its exit code by it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from orchestrator.store.parquet import read_state
from orchestrator.store.paths import SweepPaths
from orchestrator.store.query import load_trials
from trainables.schema.results import WALL_STAGES, TrialStatus, time_column
from trainables.stage_progress import read as read_progress


def sweep_counts(sweep_dir: Path, trials=None) -> dict[str, int]:
    """Planned, finished, failed, stopped early by a scheduler, started-without-result (running or
    interrupted), not started;
    `trials`: the sweep's rows when the caller has read them already."""
    state = read_state(sweep_dir)
    trials = load_trials(sweep_dir) if trials is None else trials

    def rows_with(status: TrialStatus) -> int:
        return int((trials["status"] == status).sum()) if len(trials) else 0

    finished, failed, stopped = (rows_with(s) for s in (TrialStatus.TERMINATED, TrialStatus.ERROR, TrialStatus.STOPPED))
    started = started_trials(sweep_dir, trials)
    planned = state["num_trials"]
    return {
        "planned": planned,
        "finished": finished,
        "failed": failed,
        "stopped": stopped,
        "started": len(started),
        "not started": max(0, planned - finished - failed - stopped - len(started)),
    }


def started_trials(sweep_dir: Path, trials=None) -> list[str]:
    """Keys of the trials that started (a workdir with its config) but have no row: running, or interrupted."""
    trials = load_trials(sweep_dir) if trials is None else trials
    with_rows = set(trials["config_hash"]) if len(trials) else set()
    paths = SweepPaths(sweep_dir)
    return sorted(
        p.name for p in paths.trials.glob("*") if paths.trial_config(p.name).is_file() and p.name not in with_rows
    )


def progress_of_started(sweep_dir: Path, trials=None) -> list[dict[str, Any]]:
    """Per started trial that reported where it is (trainables/stage_progress.py): its key, stage,
    where inside it, and how many seconds ago it said so (a large age: interrupted, not running)."""
    paths, now, found = SweepPaths(sweep_dir), time.time(), []
    for key in started_trials(sweep_dir, trials):
        record = read_progress(paths.workdir(key))
        if record is not None:
            found.append(
                {
                    "config_hash": key,
                    "stage": record["stage"],
                    "text": record["text"],
                    "seconds_ago": now - record["at"],
                }
            )
    return found


def trial_seconds(row: dict) -> float:
    """A trial's own running time from its row: its wall stages' seconds (those it recorded) added up."""
    return sum(row[column] for column in map(time_column, WALL_STAGES) if _finite(row.get(column)))


def _finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)
