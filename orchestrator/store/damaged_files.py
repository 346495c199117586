"""Files a command could not read: skipped with a note, reported as one warning line, moved aside.

A sweep runs for days on shared disks: a node dies mid-write, a quota fills, someone copies half a
folder. Readers of results, epochs, job records and journals skip what they cannot parse and note
it here instead of raising; the command line prints every note in one line at the end, and the
sweep moves a damaged record aside (never deletes it) so the trial it belonged to runs again.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

ASIDE_FOLDER = "unreadable"  # beside the damaged file; readers glob only the folder's own files

_noted: dict[str, str] = {}


def note(path: Path, reason: object) -> None:
    """Record that `path` (or a line of it) could not be read, and why (first line only)."""
    text = str(reason).strip().splitlines()
    _noted[str(path)] = text[0] if text else type(reason).__name__


def noted() -> dict[str, str]:
    return dict(_noted)


def forget() -> None:
    _noted.clear()


def warning_line() -> str | None:
    """Every noted file in one line, or None when all was readable."""
    if not _noted:
        return None
    listed = "; ".join(f"{path} ({reason})" for path, reason in sorted(_noted.items()))
    return f"orchestrator: warning: skipped {len(_noted)} unreadable file(s): {listed}"


def move_aside(path: Path, reason: object) -> Path:
    """Move a damaged file or folder to `unreadable/<name>.<UTC stamp>` beside it; returns the new path.

    Kept for a post-mortem, out of every reader's glob. Two processes racing to move the same file:
    the loser finds it gone, which is fine.
    """
    path = Path(path)
    note(path, reason)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = path.parent / ASIDE_FOLDER / f"{path.name}.{stamp}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, target)
    except FileNotFoundError:
        pass
    return target
