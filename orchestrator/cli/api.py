"""Planning, running and reporting a sweep from Python: what the command line does, as functions.

For a notebook or a script that drives studies (`import orchestrator`; these load on first use):

    plan = orchestrator.plan("search_spaces/quickstart.yaml", ["seeds=[0]"])   # `orchestrator plan`
    trials = orchestrator.sweep("search_spaces/quickstart.yaml", ["seeds=[0]"]) # `orchestrator sweep`
    print(orchestrator.render_report("runs/quickstart"))                       # `orchestrator report`
    epochs = orchestrator.load_epochs("runs/quickstart")                        # per-epoch records

Each takes what its command takes and refuses what it refuses, with the same one-line errors
(raised as trainables.errors.UserError instead of printed). A sweep run here returns its finished
trials as a DataFrame; one submitted to Slurm returns the submitted jobs, and
`load_results` reads its rows as they arrive.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import pandas as pd


def plan(
    spec: str | Path,
    overrides: Sequence[str] = (),
    *,
    history: Sequence[str | Path] | None = None,
    backend: str | None = None,
    device: str | None = None,
    **backend_options: Any,
) -> dict:
    """`orchestrator plan SPEC --format json` as a dict: the planned trials, the shared stages with
    their estimates (None: unknown), trials at once and the wall time, and the backend's check
    (Slurm: the sbatch script); `device` as --device. `backend_options`: the command line's backend flags by their
    argument names (`partition="gpu"`, `mode="array"`). Nothing is written or submitted."""
    from orchestrator.backends.registry import backend_class
    from orchestrator.cli.plan import plan_data
    from orchestrator.spec.sweep_spec import load_spec

    loaded = load_spec(Path(spec), list(overrides))
    chosen = backend_class(backend or loaded.backend).from_options(loaded, SimpleNamespace(**backend_options))
    return plan_data(loaded, chosen, [Path(h) for h in history] if history else None, device)


def sweep(
    spec: str | Path,
    overrides: Sequence[str] = (),
    *,
    out: str | Path | None = None,
    backend: str | None = None,
    restart: bool = False,
    retry_failed: bool = False,
    **backend_options: Any,
) -> pd.DataFrame | list:
    """`orchestrator sweep SPEC [KEY=VALUE ...]`: run (or resume) the sweep here and return its
    finished trials (orchestrator.load_results of the sweep folder), or, with a backend that
    submits (Slurm), return the submitted jobs at once. `out`: the sweep folder (default
    runs/<name>). Trials that failed are in the folder's rows and in `orchestrator status`."""
    from orchestrator.analysis.frames import load
    from orchestrator.backends.registry import backend_class
    from orchestrator.spec.sweep_spec import load_spec
    from orchestrator.store.paths import default_sweep_dir

    loaded = load_spec(Path(spec), list(overrides))
    sweep_dir = Path(out) if out is not None else default_sweep_dir(loaded.name)
    chosen = backend_class(backend or loaded.backend).from_options(loaded, SimpleNamespace(**backend_options))
    launched = chosen.sweep(loaded, sweep_dir, restart=restart, retry_failed=retry_failed, live=False)
    if launched.outcome is None:
        return launched.jobs
    return load(launched.outcome.sweep_dir)


def load_epochs(target: str | Path, config_hashes: Sequence[str] | None = None) -> pd.DataFrame:
    """The per-epoch records (stage, epoch, loss, accuracy, seconds) of a sweep's trials, running
    ones included, oldest first; `config_hashes`: only these trials (None: all)."""
    from orchestrator.analysis.frames import frame_of, relation

    sql = "SELECT * FROM epochs"
    if config_hashes is not None:
        listed = ", ".join("'" + str(key).replace("'", "''") + "'" for key in config_hashes) or "NULL"
        sql += f" WHERE config_hash IN ({listed})"
    return frame_of(relation(Path(target), sql + " ORDER BY recorded_at"), "--sql")


def render_report(
    target: str | Path | Sequence[str | Path],
    format: str = "markdown",
    *,
    compare_to: Sequence[str] | None = None,
    where: str | None = None,
) -> str:
    """`orchestrator report`'s text: the paper-style table and its paired differences, in
    `format` (markdown, latex, csv or json); `compare_to` as the repeatable --compare-to.
    `target`: a sweep, or a list of sweeps for one table across them (as `report S1 S2`)."""
    from orchestrator.analysis.report import FORMATS
    from orchestrator.analysis.several_sweeps import finished_trials_of
    from orchestrator.cli.report import report_text
    from trainables.errors import UserError

    if format not in FORMATS:
        raise UserError(f"render_report: format {format!r}: expected one of {', '.join(FORMATS)}")
    targets = [Path(t) for t in target] if isinstance(target, (list, tuple)) else [Path(target)]
    trials = finished_trials_of(targets, where=where)
    return report_text(targets, trials, format, list(compare_to) if compare_to is not None else None)
