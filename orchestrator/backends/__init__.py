"""Where a sweep runs, by name: `local` (Ray here, or at --address) or `slurm` (submitted with submitit).

Each backend is a `Backend` (base.py) registered here by name and imported only when asked for,
so the spec's validation and `sweep --help` never import submitit; an unknown name gets one line
listing the known ones. LocalBackend is also the engine's Ray starter (runner.run_sweep), and the
Slurm backend's driver job runs that same engine inside its allocation.
"""
from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.errors import UserError

from .local import LocalBackend

if TYPE_CHECKING:
    from .base import Backend

# name -> (module under orchestrator.backends, class): imported on first use.
BACKEND_IMPORT = {
    "local": ("local", "LocalBackend"),
    "slurm": ("slurm.backend", "SlurmBackend"),
}
BACKENDS = tuple(BACKEND_IMPORT)


def backend_class(name: str) -> type[Backend]:
    """The backend registered as `name`; one line listing the valid names for any other."""
    if name not in BACKEND_IMPORT:
        raise UserError(f"unknown backend {name!r}: one of {', '.join(BACKENDS)}")
    module, attribute = BACKEND_IMPORT[name]
    return getattr(import_module(f"{__name__}.{module}"), attribute)


def backend_of(sweep_dir: Path) -> Backend:
    """The backend whose job records the sweep folder holds (status, cancel); local when none."""
    from ..sweep_paths import SweepPaths

    paths = SweepPaths(sweep_dir)
    for name in BACKENDS:
        cls = backend_class(name)
        if cls.owns(paths):
            return cls.for_folder()
    return LocalBackend()


__all__ = ["BACKENDS", "LocalBackend", "backend_class", "backend_of"]
