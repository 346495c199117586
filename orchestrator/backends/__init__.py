"""Where a sweep runs: a `Backend` (base.py) per kind, `local` (local.py) and `slurm` (slurm/).

The registry by name is orchestrator/backend_registry.py (re-exported here). LocalBackend is a
RayCluster (orchestrator/ray_cluster.py), the engine's Ray starter; the Slurm backend's driver job
runs that same engine inside its allocation.
"""

from __future__ import annotations

from ..backend_registry import BACKENDS, backend_class, backend_of
from .local import LocalBackend

__all__ = ["BACKENDS", "LocalBackend", "backend_class", "backend_of"]
