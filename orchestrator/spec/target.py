"""What a user typed (a sweep folder, the spec it was run from, or a copied results folder) -> a sweep.

One function per question, used by every command that takes such an argument (status, results,
cancel, and the analysis commands through analysis.py).
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.paths import STATE_FILE, ResultsPaths, SweepPaths, default_sweep_dir
from trainables.errors import UserError


def sweep_dir_of(target: Path) -> Path:
    """A sweep directory as given, or the default one (runs/<name>) of a spec file."""
    target = Path(target)
    if target.is_dir():
        if not SweepPaths(target).state.is_file():
            raise UserError(f"{target}: not a sweep directory (no {STATE_FILE})")
        return target
    if target.is_file():
        sweep_dir = default_sweep_dir(load_spec(target).name)
        if not SweepPaths(sweep_dir).state.is_file():
            raise UserError(
                f"{target}: its sweep directory {sweep_dir} does not exist yet; run `orchestrator sweep {target}`"
            )
        return sweep_dir
    raise UserError(f"{target}: no such sweep directory or spec file")


def results_dir_of(target: Path) -> Path:
    """The results folder of a sweep directory, of a spec's sweep, or a results folder itself."""
    target = Path(target)
    if target.is_dir():
        paths = SweepPaths(target)
        if ResultsPaths(target).trials.is_dir() and not paths.state.is_file():
            return target  # a results/ folder, perhaps copied away from its sweep
        if paths.results.root.is_dir() or paths.state.is_file():
            return paths.results.root
        raise UserError(f"{target}: not a sweep directory (no {STATE_FILE}) nor a results folder (no trials/)")
    return SweepPaths(sweep_dir_of(target)).results.root  # a spec file: its default sweep directory
