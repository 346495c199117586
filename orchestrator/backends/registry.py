"""The backend classes by name, from the registry of entries (spec/backends.py).

Imported only when asked for, so the spec's validation and `sweep --help` never import submitit;
an unknown name gets one line listing the known ones.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.backends.base import Backend
from orchestrator.spec.backends import backend_entry, backend_names
from orchestrator.store.paths import SweepPaths
from trainables.schema.references import imported


def backend_class(name: str) -> type[Backend]:
    """The backend registered as `name`; one line listing the valid names for any other."""
    return imported(backend_entry(name).backend)


def backend_of(sweep_dir: Path) -> Backend:
    """The backend whose job records the sweep folder holds (status, cancel); local when none."""
    paths = SweepPaths(sweep_dir)
    for name in backend_names():
        cls = backend_class(name)
        if cls.owns(paths):
            return cls.for_folder()
    return backend_class("local")()
