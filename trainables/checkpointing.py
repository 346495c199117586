"""Per-epoch checkpoints in one folder: save, find the latest, keep the last few, clear.

Shared by every stage that trains for epochs, so resume behaves the same everywhere.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from .artifacts import load_checkpoint, save_checkpoint
from .errors import CheckpointError


class EpochCheckpoints:
    """`folder/epoch-0007.pt` files tagged with the key of the run they belong to."""

    def __init__(self, folder: Path, key: str, keep: int = 2):
        self.folder = Path(folder)
        self.key = key
        self.keep = keep

    def latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that loads, or None; a foreign one is a CheckpointError.

        One that does not load (emptied by a full disk, torn by a crash the rename did not cover)
        is moved to `unreadable/` with a warning and the one before it is used: the stage redoes
        one epoch instead of all of them.
        """
        for path in sorted(self.folder.glob("epoch-*.pt"), reverse=True):
            try:
                state = load_checkpoint(path)
            except CheckpointError as err:
                aside = self.folder / "unreadable" / path.name
                aside.parent.mkdir(exist_ok=True)
                os.replace(path, aside)
                warnings.warn(f"{err}; moved to {aside}, resuming from the checkpoint before it", stacklevel=2)
                continue
            if state.get("key") != self.key:
                raise CheckpointError(f"{path}: belongs to {state.get('key')!r}, not {self.key!r}")
            return state
        return None

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        save_checkpoint(self.folder / f"epoch-{epoch:04d}.pt", {**state, "key": self.key, "epoch": epoch})
        for old in sorted(self.folder.glob("epoch-*.pt"))[: -self.keep]:
            old.unlink()

    def clear(self) -> None:
        for stale in self.folder.glob("epoch-*.pt"):
            stale.unlink()
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()
