"""Where each planned trial of a sweep stands, and how long the rest should take (`status`'s live view).

The sweep folder holds the spec it was started from (spec.yaml beside sweep.json, with the
command line's overrides in sweep.json): its grid points are the planned trials, each with the
settings its point sets and its key (the config hash a row and a trial folder carry). A point with
a row is done; with a trial folder, started; else queued. A search's sampled trials are not known
until Optuna draws them: they are counted, never listed.

The time left comes from the plan's estimator (estimate.py) with the finished trials of this sweep
and of the sweeps beside it (runs/, `plan`'s default history) as the history; this sweep's own
match best (same settings, same code, same machine). A stage is left when none of
the trials sharing it has finished (a pre-processor its clean-head trial trained is done for the
robust-head trial too). Per trial, the stages it still needs; in total, each stage left once;
unknown (None) where no finished trial ran such a stage, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.spec.estimate import Plan, estimate, history_rows, trial_stages
from orchestrator.spec.sections import SEED_KEY
from orchestrator.spec.sweep_spec import SweepSpec, load_spec
from orchestrator.store.parquet import read_state
from orchestrator.store.paths import SweepPaths
from trainables.artifacts import config_hash
from trainables.errors import UserError
from trainables.schema import validate_trial_config

SHORT_NAMES = {
    "preprocessor.lambda": "λ",
    "preprocessor.temperature": "τ",
    "data_fraction": "fraction",
    "head.epochs": "head epochs",
}


@dataclass
class PlannedTrial:
    config_hash: str
    settings: dict[str, Any]  # what its grid point sets (seed included)
    stage_keys: list[str] = field(default_factory=list)
    estimate_s: float | None = None  # its stages still to run, None when some has no estimate

    @property
    def text(self) -> str:
        return settings_text(self.settings)


@dataclass
class Queue:
    trials: list[PlannedTrial]  # every grid point, in the plan's order
    sampled: int  # trials a search draws later (not listed)
    remaining_s: float | None  # trial-slot seconds of every stage left, once each; None: unknown
    unestimated: int  # stages left without an estimate
    basis: int  # finished trials the estimates come from


def settings_text(settings: dict[str, Any]) -> str:
    """'cropd, λ=10, clean head, seed 0': a planned point's settings as a person reads them."""
    parts, tail = [], []
    for key, value in settings.items():
        if value is None or key.startswith("evaluation."):
            continue  # evaluation settings say how much is measured, not what
        if key == "preprocessor.kind":
            parts.insert(0, str(value))
        elif key == "head.mode":
            tail.insert(0, f"{value} head")
        elif key == SEED_KEY or key.endswith(".seed"):
            tail.append(f"seed {value}")
        else:
            text = f"{value:g}" if isinstance(value, float) else str(value)
            parts.append(f"{SHORT_NAMES.get(key, key)}={text}")
    return ", ".join(parts + tail) or "the base trial"


def sweep_spec(sweep_dir: Path) -> SweepSpec | None:
    """The spec the sweep was started from, as it was planned; None for a folder without its copy
    (written before copies were kept) or whose copy no longer gives the recorded plan."""
    paths = SweepPaths(sweep_dir)
    if not paths.spec_copy.is_file():
        return None
    try:
        state = read_state(sweep_dir)
        spec = load_spec(paths.spec_copy, state.get("overrides") or [])
    except UserError:
        return None
    return spec if spec.plan_hash == state.get("plan_hash") else None


def sweep_queue(sweep_dir: Path, finished: set[str], started: set[str]) -> Queue | None:
    """The planned trials of the sweep in `sweep_dir` with their estimates, given the config hashes
    of its `finished` trials (rows) and `started` ones (folders without a row); None without a spec."""
    spec = sweep_spec(sweep_dir)
    if spec is None:
        return None
    plan, stage_trials, planned = Plan(spec), {}, []
    for point in spec.grid_points:
        config = validate_trial_config(spec.trial_config(point))
        trial = PlannedTrial(config_hash(config), dict(point))
        for key, stage in trial_stages(config):
            if key not in stage_trials:
                stage_trials[key] = (stage, [])
                plan.stages.append(stage)
            stage_trials[key][1].append(trial.config_hash)
            trial.stage_keys.append(key)
        planned.append(trial)
    # As `plan` looks: this sweep's own finished trials and its siblings' (runs/); the nearest
    # match wins, and this sweep's own trials share every setting.
    rows = history_rows([Path(sweep_dir).parent])
    estimate(plan, rows)
    left = {key for key, (_, owners) in stage_trials.items() if not finished.intersection(owners)}
    for trial in planned:
        if trial.config_hash in finished:
            continue
        mine = [stage_trials[key][0].estimate_s for key in trial.stage_keys if key in left]
        trial.estimate_s = None if any(s is None for s in mine) else float(sum(mine))
    estimates = [stage_trials[key][0].estimate_s for key in left]
    known = [s for s in estimates if s is not None]
    return Queue(
        trials=planned,
        sampled=spec.search_trials,
        remaining_s=float(sum(known)) if known or not estimates else None,
        unestimated=sum(s is None for s in estimates),
        basis=len(rows),
    )


def duration_text(seconds: float | None) -> str:
    """'unknown', '40 s', '12 min', '1.5 h'."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
