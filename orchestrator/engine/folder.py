"""The sweep folder's lifecycle around a run: checked against the spec, its state written, repaired.

Before any run (here or submitted), under the sweep's lock: `prepare_folder` checks the folder
against the spec (a different plan is refused unless --restart, which moves the old folder
aside), repairs Optuna's journal on a resume, and writes sweep.json and the spec's copy. The
backends call it (backends/base.py) as the engine does; the engine reports a run as a SweepOutcome.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from orchestrator.spec.sweep_spec import SweepSpec
from orchestrator.store import damaged_files
from orchestrator.store.parquet import read_state
from orchestrator.store.paths import SweepPaths
from trainables.artifacts import atomic_write_bytes, atomic_write_json
from trainables.errors import UserError


def prepare_folder(spec: SweepSpec, sweep_dir: Path, *, restart: bool) -> bool:
    """The sweep folder checked against the spec (a resume repairs Optuna's journal) and its state
    written; returns True when an earlier run is resumed. Call with the sweep's lock held."""
    resumed = prepare_sweep_dir(spec, sweep_dir, restart=restart)
    if resumed:
        repair_journal(sweep_dir)
    write_state(spec, sweep_dir)
    return resumed


@dataclass
class SweepOutcome:
    sweep_dir: Path
    resumed: bool
    done: int
    failed: int
    unfinished: int


def prepare_sweep_dir(spec: SweepSpec, sweep_dir: Path, *, restart: bool) -> bool:
    """Check the folder against the spec; returns True when an earlier run is resumed.

    Raises before writing anything when the folder holds a different plan (unless `restart`,
    which moves the old folder aside: nothing is ever deleted).
    """
    paths = SweepPaths(sweep_dir)
    if paths.state.is_file():
        saved = read_state(sweep_dir)
        if saved.get("plan_hash") == spec.plan_hash and not restart:
            return True
        if not restart:
            changed = sorted(
                k
                for k in set(saved.get("plan", {})) | set(spec.plan)
                if saved.get("plan", {}).get(k) != spec.plan.get(k)
            )
            given = saved.get("overrides", [])
            overrides = (
                f"; it was started with the overrides {' '.join(given) or '(none)'}, this run has "
                f"{' '.join(spec.overrides) or '(none)'}"
                if given or spec.overrides
                else ""
            )
            raise UserError(
                f"{spec.path}: the planned trials differ from the sweep in {sweep_dir} (changed: "
                f"{', '.join(changed)}{overrides}); "
                "run with --restart to move that sweep aside and start again, or pick another --out"
            )
    elif sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise UserError(f"{sweep_dir}: exists and is not a sweep directory (no {paths.state.name}); pick another --out")
    if restart and sweep_dir.exists():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = paths.replaced(stamp)
        shutil.move(str(sweep_dir), str(aside))
        print(f"orchestrator: moved the previous sweep to {aside}")
    return False


def write_state(spec: SweepSpec, sweep_dir: Path) -> None:
    paths = SweepPaths(sweep_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        paths.state,
        {
            "name": spec.name,
            "plan_hash": spec.plan_hash,
            "plan": spec.plan,
            "num_trials": spec.num_trials,
            "spec_path": str(spec.path),
            "overrides": list(spec.overrides),
            "objectives": spec.objectives,
        },
    )
    if Path(spec.path).is_file():
        paths.spec_copy.write_text(Path(spec.path).read_text())


def repair_journal(sweep_dir: Path) -> int:
    """Drop the journal lines Optuna cannot parse; returns how many (the original is kept aside).

    Optuna skips a torn LAST line (a writer killed mid-append), but the next append lands after it
    and from then on every read of the study raises. Before a driver opens the study, the lines
    that are not whole JSON are removed; the damaged journal moves to unreadable/.
    """
    path = SweepPaths(sweep_dir).optuna_journal
    if not path.is_file():
        return 0
    lines = path.read_bytes().splitlines(keepends=True)
    good = [line for line in lines if line.endswith(b"\n") and _is_json(line)]
    if len(good) == len(lines):
        return 0
    dropped = len(lines) - len(good)
    damaged_files.move_aside(
        path, f"{dropped} damaged line(s) dropped; the original is in {damaged_files.ASIDE_FOLDER}/"
    )
    atomic_write_bytes(path, b"".join(good))
    return dropped


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False
