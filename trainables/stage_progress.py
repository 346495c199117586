"""Where a running trial is inside its current stage ("epoch 3/20, batch 5/14"), for the people watching.

The trial writes one small JSON file in its workdir (PROGRESS_FILE) while it runs, at most every
MIN_INTERVAL_S, by atomic rename; the sweep's live display and `orchestrator status` read it for
running trials (also from a login node while a Slurm job runs). It is removed when the trial's
stages end. Outside `recording` (tests, load_pipeline) `report` does nothing.

A module-level sink, not a callback through every training and attack function: progress is for
display only and never changes a result, so it needs no place in their signatures.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

PROGRESS_FILE = "progress.json"
MIN_INTERVAL_S = 1.0

_sink: Path | None = None
_written_at = 0.0


@contextmanager
def recording(workdir: Path) -> Iterator[None]:
    """Write this process's progress reports to workdir/PROGRESS_FILE until the block ends."""
    global _sink, _written_at
    _sink, _written_at = Path(workdir) / PROGRESS_FILE, 0.0
    try:
        yield
    finally:
        path, _sink = _sink, None
        path.unlink(missing_ok=True)


def report(stage: str, text: str, *, force: bool = False) -> None:
    """`stage` is at `text` now; written if MIN_INTERVAL_S passed since the last write, or `force`
    (a stage's first report, so a short stage is seen at all)."""
    global _written_at
    if _sink is None:
        return
    now = time.monotonic()
    if not force and now - _written_at < MIN_INTERVAL_S:
        return
    _written_at = now
    temporary = _sink.with_name(f".{_sink.name}.{os.getpid()}")
    try:
        # No fsync: a progress line lost to a crash costs nothing; this runs inside training loops.
        temporary.write_text(json.dumps({"stage": stage, "text": text, "at": time.time()}))
        os.replace(temporary, _sink)
    except OSError:  # a full disk or a removed workdir: the trial's own writes will say so
        pass


def read(workdir: Path) -> dict[str, Any] | None:
    """The last progress report of the trial in `workdir` ({"stage", "text", "at"}), None if none."""
    try:
        record = json.loads((Path(workdir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and {"stage", "text", "at"} <= set(record) else None
