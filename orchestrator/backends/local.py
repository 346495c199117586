"""The local backend: Ray for a sweep on this machine, started in-process (the embedded default)
or joined by address, and the sweep run right here by the engine (runner.run_sweep).

Its Ray cluster (and the check that some node can hold one trial) is a RayCluster (ray_cluster.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from orchestrator.backends.base import Backend, Launched
from orchestrator.engine.ray_cluster import RayCluster


@dataclass
class LocalBackend(RayCluster, Backend):
    """The sweep run here, on the Ray cluster it describes (`address=None`: Ray started in-process)."""

    name: ClassVar[str] = "local"

    @classmethod
    def from_options(cls, spec, options: Any) -> LocalBackend:
        return cls(address=getattr(options, "address", None))

    def _check(self, spec, sweep_dir: Path) -> None:
        self.check_resources(spec.resources, str(spec.path))  # refused before anything is written

    def _launch(
        self, spec, sweep_dir: Path, prepared: None, *, restart: bool, retry_failed: bool, live: bool | None
    ) -> Launched:
        # The lock is taken before Ray is imported (seconds): a second driver is refused at once.
        from orchestrator.engine.runner import run_sweep

        return Launched(
            outcome=run_sweep(spec, sweep_dir, backend=self, restart=restart, retry_failed=retry_failed, live=live)
        )
