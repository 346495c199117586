"""Ray's processes of one local sweep driver: recorded by PID, stopped when the driver is done or was killed.

`ray.init()` starts Ray's GCS, raylet, agents and workers as children of the driver. A driver that
is SIGKILLed cannot shut them down, and some (the agents) survive their parent. Their PIDs and
start times are written to the sweep folder while the driver runs; the driver's own clean exit
stops whatever `ray.shutdown()` left, and the next driver of the same sweep stops what a killed
one left. Only processes recorded here are touched, matched by PID and start time, so a PID the
system has given to someone else since is never signalled.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil

from orchestrator.store.paths import SweepPaths
from trainables.artifacts import atomic_write_json

GRACE_S = 10.0


class RayProcesses:
    """Records the processes the driver starts from now on (Ray's), not those it had before."""

    def __init__(self, sweep_dir: Path):
        self.path = SweepPaths(sweep_dir).ray_processes
        self.before = {child.pid for child in psutil.Process().children(recursive=True)}

    def record(self) -> None:
        """Add every process started since construction (call after ray.init and as workers start)."""
        known = _recorded(self.path.parent)
        for child in psutil.Process().children(recursive=True):
            if child.pid in self.before:
                continue
            try:
                known[str(child.pid)] = child.create_time()
            except psutil.NoSuchProcess:
                continue
        atomic_write_json(self.path, known)


def stop_recorded(sweep_dir: Path) -> int:
    """Stop every recorded process still alive (SIGTERM, then SIGKILL after GRACE_S); returns how many."""
    alive = []
    for pid, started in _recorded(sweep_dir).items():
        try:
            process = psutil.Process(int(pid))
            if abs(process.create_time() - started) < 0.01 and process.pid != psutil.Process().pid:
                alive.append(process)
        except (psutil.NoSuchProcess, ValueError):
            continue
    for process in alive:
        _signal(process, "terminate")
    _, still = psutil.wait_procs(alive, timeout=GRACE_S)
    for process in still:  # Ray's agents ignore SIGTERM once their raylet is gone
        _signal(process, "kill")
    psutil.wait_procs(still, timeout=GRACE_S)
    SweepPaths(sweep_dir).ray_processes.unlink(missing_ok=True)
    return len(alive)


def _signal(process: psutil.Process, how: str) -> None:
    try:
        getattr(process, how)()
    except psutil.NoSuchProcess:
        pass


def _recorded(sweep_dir: Path) -> dict[str, float]:
    path = SweepPaths(sweep_dir).ray_processes
    try:
        return {str(pid): float(started) for pid, started in json.loads(path.read_text()).items()}
    except (FileNotFoundError, ValueError, AttributeError):
        return {}
