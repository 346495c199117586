"""Stable config hashes, atomic publication of files and folders, safe checkpoint I/O.

Every artifact a later trial could reuse lives under a path derived from the hash of the
config that determines it, and appears there only complete (write aside, then rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import filelock

from .errors import CheckpointError

# A finished trial's outcome in its workdir (trainables.trial writes it; a resume reads it back).
RESULT_FILE = "result.json"

if TYPE_CHECKING:
    import torch

# torch is imported inside the checkpoint functions only: the hashing and atomic-write helpers
# serve the command line and the results readers too, which should not pay seconds for torch.


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any, length: int = 16) -> str:
    """A short sha256 over the canonical JSON of `obj`; stable across processes and runs."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a scratch folder beside `final`; rename it to `final` only if the block succeeds.

    If another process published `final` first, ours is discarded and theirs kept (both were
    built from the same config, so either is correct).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        os.chmod(scratch, 0o777 & ~_umask())  # mkdtemp makes it 0700; published, it is an ordinary folder
        yield scratch
        _fsync_tree(scratch)  # the contents reach the disk before the rename makes them visible
        try:
            os.rename(scratch, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(scratch, ignore_errors=True)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so a reader sees the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; results, reports and figures get the permissions an
        # ordinary file would (0666 less the umask) so a lab's group can read them.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """fsync a folder, so a rename or a new entry in it survives a crash (a file's own fsync does not)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            if os.path.islink(os.path.join(root, name)):
                continue
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def _umask() -> int:
    """The process umask, read without changing it where Linux (>= 4.7) shows it in /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    # Elsewhere the only way is to set it and put it back: process-wide, racy with other threads.
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, then rename: a crash mid-save leaves the last good one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    import torch

    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600, as in atomic_write_bytes
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True; a missing or unreadable file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})".splitlines()[0]
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint holds {type(state).__name__}, expected a dict")
    return state


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def artifact_lock(folder: Path) -> filelock.FileLock:
    """An inter-process lock beside `folder`, held while one process builds what goes in it.

    A lock file next to the folder (not inside: the folder appears only by atomic rename).
    Works on local disks and on NFS with working fcntl locks, as Slurm clusters have.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(folder.with_name(folder.name + ".lock")))
