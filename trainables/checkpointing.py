"""Per-epoch checkpoints in one folder: save, find the latest, keep the last few, clear.

Shared by every stage that trains for epochs, so resume behaves the same everywhere.
"""
from __future__ import annotations

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
        """The newest checkpoint's state, or None; a corrupt or foreign one is a CheckpointError."""
        found = sorted(self.folder.glob("epoch-*.pt"))
        if not found:
            return None
        state = load_checkpoint(found[-1])
        if state.get("key") != self.key:
            raise CheckpointError(f"{found[-1]}: belongs to {state.get('key')!r}, not {self.key!r}")
        return state

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        save_checkpoint(self.folder / f"epoch-{epoch:04d}.pt", {**state, "key": self.key, "epoch": epoch})
        for old in sorted(self.folder.glob("epoch-*.pt"))[: -self.keep]:
            old.unlink()

    def clear(self) -> None:
        for stale in self.folder.glob("epoch-*.pt"):
            stale.unlink()
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()
