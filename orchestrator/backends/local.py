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

# How long `cancel` waits for a local driver to stop its trials and save its state.
STOP_WAIT_S = 120


@dataclass
class LocalBackend(RayCluster, Backend):
    """The sweep run here, on the Ray cluster it describes (`address=None`: Ray started in-process)."""

    name: ClassVar[str] = "local"

    @classmethod
    def from_options(cls, spec, options: Any) -> LocalBackend:
        return cls(address=getattr(options, "address", None))

    def cancel(self, sweep_dir: Path) -> list[str]:
        """Stop the driver running the sweep on this machine as Ctrl-C would (SIGINT: Ray Tune
        stops the trials and saves its state; the same sweep command resumes). Waits for it to let
        go of the sweep, at most STOP_WAIT_S; returns what it stopped ([] when no driver runs)."""
        import os
        import signal
        import socket
        import time

        from orchestrator.store.lock import driver_state, owner_text
        from trainables.errors import UserError

        driver = driver_state(sweep_dir)
        if driver is None:
            return []
        if driver.get("host") != socket.gethostname() or not driver.get("pid"):
            raise UserError(f"{sweep_dir}: its driver runs elsewhere ({owner_text(driver)}); stop it there")
        os.kill(int(driver["pid"]), signal.SIGINT)
        deadline = time.monotonic() + STOP_WAIT_S
        while driver_state(sweep_dir) is not None:
            if time.monotonic() > deadline:
                raise UserError(
                    f"{sweep_dir}: the driver (pid {driver['pid']}) was sent SIGINT but still runs after "
                    f"{STOP_WAIT_S} s; it may be saving its state: run cancel again, or kill it"
                )
            time.sleep(0.5)
        return [f"local driver pid {driver['pid']}"]

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
