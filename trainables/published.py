"""Published artifact folders that prove they are whole: a manifest of sizes and hashes, checked on reuse.

A folder appears by atomic rename (artifacts.atomic_dir), so a reader never sees one half-built.
What the rename cannot cover is damage afterwards: a file truncated by a full quota during a copy,
a node that lost its page cache before the data reached the disk. Every folder published here
carries `published.json` (each file's size and sha256); a reuse checks it first and moves a folder
that does not match aside (never deletes it), so the caller builds it again instead of training a
trial on torn weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .artifacts import atomic_dir

MANIFEST = "published.json"


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


@contextmanager
def published_dir(final: Path) -> Iterator[Path]:
    """atomic_dir, with the manifest of what the block wrote added just before the rename."""
    with atomic_dir(final) as scratch:
        yield scratch
        manifest = {
            str(p.relative_to(scratch)): {"bytes": p.stat().st_size, "sha256": _digest(p)} for p in _files(scratch)
        }
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def damage(folder: Path) -> str | None:
    """What is wrong with a published folder, or None when every file matches its manifest.

    A folder published before manifests existed is taken as whole (its loader still refuses
    a file it cannot parse).
    """
    manifest_path = Path(folder) / MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError:
        return f"{MANIFEST} is not JSON"
    for name, expected in sorted(manifest.items()):
        path = Path(folder) / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, {expected['bytes']} were published"
        if _digest(path) != expected["sha256"]:
            return f"{name} does not match the sha256 it was published with"
    return None


def reusable(folder: Path, marker: str) -> bool:
    """Whether `folder` holds a whole published artifact (its `marker` file present, no damage).

    A damaged one is moved to `<name>.torn-<UTC stamp>` with a warning, and False says: build it.
    Call under the artifact's lock.
    """
    folder = Path(folder)
    if not (folder / marker).is_file():
        return False
    problem = damage(folder)
    if problem is None:
        return True
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = folder.with_name(f"{folder.name}.torn-{stamp}")
    os.replace(folder, aside)
    warnings.warn(
        f"{folder}: published artifact is damaged ({problem}); moved to {aside} and built again", stacklevel=2
    )
    return False
