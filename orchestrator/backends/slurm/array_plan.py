"""Array mode's plan: every trial of the sweep drawn once, saved, and the ones still to run.

A resubmission runs the same trials (the plan is read back, not drawn again); a trial whose row
says it finished (or failed for good, without --retry-failed) is not submitted again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.engine.trial import trial_key
from orchestrator.spec.sweep_spec import SweepSpec
from orchestrator.store.parquet import read_trial
from orchestrator.store.paths import SweepPaths
from orchestrator.store.rows import ERROR, TERMINATED
from trainables.artifacts import atomic_write_json


def array_plan(spec: SweepSpec, sweep_dir: Path) -> list[dict[str, Any]]:
    """Every planned trial as {number, params}: grid points enqueued, searched values asked of Optuna.

    Drawn once, from the sweep's Optuna journal, and saved: a resubmission runs the same trials.
    Searched values are asked in one batch, so the sampler learns nothing within a submission.
    """
    import json

    import optuna

    from orchestrator.engine.search import journal_storage, make_sampler, optuna_space, points_to_evaluate

    path = SweepPaths(sweep_dir).array_plan
    if path.is_file():
        return json.loads(path.read_text())["trials"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize" if mode == "max" else "minimize" for mode in spec.objectives.values()]
    study = optuna.create_study(
        study_name=spec.name,
        storage=journal_storage(sweep_dir),
        sampler=make_sampler(spec),
        directions=directions,
        load_if_exists=True,
    )
    for point in points_to_evaluate(spec):
        study.enqueue_trial(point)
    space = optuna_space(spec)
    entries = []
    for _ in range(spec.num_trials):
        trial = study.ask(space)
        entries.append({"number": trial.number, "params": trial.params})
    atomic_write_json(path, {"trials": entries})
    return entries


def still_to_run(spec: SweepSpec, sweep_dir: Path, entry: dict[str, Any], retry_failed: bool) -> bool:
    row = read_trial(sweep_dir, trial_key(spec.trial_config(entry["params"])))
    if row is None:
        return True
    return row["status"] != TERMINATED and (retry_failed or row["status"] != ERROR)
