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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
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
