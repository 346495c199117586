"""The record of a sweep's submitted jobs (<sweep>/slurm/jobs.jsonl), for `status` and `cancel`.

One JSON line per submission, appended durably; a torn line (a submit killed mid-write) is
skipped and noted, so the others stay readable.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.store import damaged_files
from orchestrator.store.paths import SweepPaths


@dataclass
class SubmittedJob:
    """One sbatch submission of a sweep: a Ray driver job, or a job array of trials."""

    job_id: str
    mode: str
    submitted_at: float
    log_folder: str
    tasks: int = 1


def record_job(sweep_dir: Path, job: SubmittedJob) -> None:
    append_line(SweepPaths(sweep_dir).jobs, json.dumps(asdict(job)))


def append_line(path: Path, line: str) -> None:
    """Append one line to a JSONL file, durably; after a torn last line (a writer killed mid-line)
    start on a new line, so the torn one stays alone and this one stays readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        handle.seek(0, os.SEEK_END)
        torn = False
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
        handle.write((("\n" if torn else "") + line + "\n").encode())
        handle.flush()
        os.fsync(handle.fileno())


def recorded_jobs(sweep_dir: Path) -> list[SubmittedJob]:
    """Every job recorded for the sweep; a torn or foreign line (a submit killed mid-write) is
    skipped and noted, so status and cancel still see the others."""
    path = SweepPaths(sweep_dir).jobs
    if not path.is_file():
        return []
    jobs, damaged = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            jobs.append(SubmittedJob(**json.loads(line)))
        except (ValueError, TypeError) as err:
            damaged.append(f"line {number}: {type(err).__name__}")
    if damaged:
        damaged_files.note(path, ", ".join(damaged))
    return jobs
