"""The backends by name: `local` (Ray here, or at --address) or `slurm` (submitted with submitit).

Each backend is a `Backend` (backends/base.py) registered here by name and imported only when asked
for (importlib, no import of the backends package here), so the spec's validation and
`sweep --help` never import submitit, and the spec, which names a backend, sits below the
backends without an import cycle; an unknown name gets one line listing the known ones.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.errors import UserError

from .sweep_paths import SweepPaths

if TYPE_CHECKING:
    from .backends.base import Backend

# name -> (module, class): imported on first use.
BACKEND_IMPORT = {
    "local": ("orchestrator.backends.local", "LocalBackend"),
    "slurm": ("orchestrator.backends.slurm.backend", "SlurmBackend"),
}
BACKENDS = tuple(BACKEND_IMPORT)


def backend_class(name: str) -> type[Backend]:
    """The backend registered as `name`; one line listing the valid names for any other."""
    if name not in BACKEND_IMPORT:
        raise UserError(f"unknown backend {name!r}: one of {', '.join(BACKENDS)}")
    module, attribute = BACKEND_IMPORT[name]
    return getattr(import_module(module), attribute)


def backend_of(sweep_dir: Path) -> Backend:
    """The backend whose job records the sweep folder holds (status, cancel); local when none."""
    paths = SweepPaths(sweep_dir)
    for name in BACKENDS:
        cls = backend_class(name)
        if cls.owns(paths):
            return cls.for_folder()
    return backend_class("local")()
