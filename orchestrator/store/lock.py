"""One driver per sweep folder: an exclusive lock beside the folder, its owner written inside.

Two `orchestrator sweep` commands on one folder would run the same trials twice and race on Ray's
experiment state. The lock is an flock(2) on `.<name>.driver.lock` next to the sweep folder (not
inside: `--restart` moves the folder aside while the lock is held). The kernel drops it when its
holder dies, however it dies, so a killed driver never blocks the next one; on Linux NFS clients
flock is carried by NFS byte-range locks, so it holds across the nodes of a cluster too.
The file holds who has it (pid, host, Slurm job, since when) for the refusal line.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from orchestrator.store.paths import SweepPaths
from trainables.errors import UserError


def lock_path(sweep_dir: Path) -> Path:
    return SweepPaths(sweep_dir).lock


def owner_text(owner: dict) -> str:
    job = f", Slurm job {owner['slurm_job_id']}" if owner.get("slurm_job_id") else ""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner["since"])) if owner.get("since") else "?"
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}{job}, since {since}"


_held: set[Path] = set()  # locks this process holds: taking one again is a no-op (flock would refuse it)

# A driver retries for this long before refusing: `status` and `cancel` probe the lock with a
# shared lock held for microseconds (driver_state), which must not refuse a driver starting then.
TAKE_ATTEMPTS, TAKE_PAUSE_S = 5, 0.05


def _take(fd: int) -> bool:
    for attempt in range(TAKE_ATTEMPTS):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < TAKE_ATTEMPTS:
                time.sleep(TAKE_PAUSE_S)
    return False


def driver_state(sweep_dir: Path) -> dict | None:
    """The driver running the sweep now (its pid, host, Slurm job, since when, and `alive: True`),
    or None when none holds the lock. Probed with a shared lock taken and dropped at once: the
    kernel's answer, true across NFS clients too, whatever process the driver runs in."""
    path = lock_path(sweep_dir)
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                owner = {}
            return {**owner, "alive": True}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextmanager
def sweep_lock(sweep_dir: Path, what: str = "driver") -> Iterator[None]:
    """Hold the sweep's lock for the block; a UserError naming the holder if another has it.

    Re-entrant within a process: the command takes it as soon as the spec is read (before the
    seconds of importing Ray), and the engine it calls takes it again.
    """
    path = lock_path(sweep_dir)
    if path in _held:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Opened without truncating (the holder's record must survive our attempt); Python makes the
    # descriptor non-inheritable, so Ray's processes never keep the lock after we die.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _take(fd):
            try:
                owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                owner = {}
            raise UserError(
                f"{Path(sweep_dir)}: another driver is running this sweep ({owner_text(owner)}); "
                "wait for it to end or stop it, then run the same command again"
            ) from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "since": time.time(),
            "what": what,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        _held.add(path)
        try:
            yield
        finally:
            _held.discard(path)
    finally:
        os.close(fd)  # releases the lock
