"""The record of truth on disk: one Parquet file per finished trial, per trial's epochs, per trial's
per-example outcomes, and the sweep's plan (sweep.json).

Files are written atomically and named by the trial's config hash, so a trial that reruns
replaces its row instead of adding a second one; reading skips (and notes) a damaged file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.store import cache, damaged_files
from orchestrator.store.paths import SweepPaths
from orchestrator.store.rows import _scalar, now_utc
from trainables.artifacts import atomic_write_bytes


def read_state(sweep_dir: Path) -> dict[str, Any]:
    """The sweep's plan (sweep.json); one line (a UserError) when it is damaged or not a plan."""
    from trainables.errors import UserError

    path = SweepPaths(sweep_dir).state
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict) or not {"plan_hash", "num_trials"} <= set(state):
            raise ValueError("not a sweep plan (no plan_hash and num_trials)")
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(
            f"{path}: damaged ({err}); it records the sweep's plan: restore it from a backup, "
            "or start again with --restart (which moves this sweep aside)"
        ) from None
    return state


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rows to one Parquet file, atomically (a reader sees the old file or the new one)."""
    rows = list(rows)
    # from_pylist alone takes its columns from the first row and silently drops keys only later
    # rows have (a head epoch's train_acc after the pre-processor's epochs): use every row's keys.
    names = list(dict.fromkeys(name for row in rows for name in row))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{name: row.get(name) for name in names} for row in rows]), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def trial_path(sweep_dir: Path, config_hash: str) -> Path:
    return SweepPaths(sweep_dir).results.trial_row(config_hash)


def epochs_path(sweep_dir: Path, config_hash: str) -> Path:
    return SweepPaths(sweep_dir).results.epochs_file(config_hash)


def examples_path(sweep_dir: Path, config_hash: str) -> Path:
    return SweepPaths(sweep_dir).results.examples_file(config_hash)


def write_examples(sweep_dir: Path, config_hash: str, examples: dict[str, Any], identity: dict[str, Any]) -> Path:
    """One trial's per-example outcomes (trainables.evaluation.per_example_outcomes), long form.

    Columns: the `identity` values (sweep, trial_id, config_hash), `attack` ('natural', 'pgd10',
    ...), `index` (the point's index in the test set), `label`, `correct`. Written before the
    trial's row, so a finished trial's outcomes are on disk whenever its row is.
    """
    index, label = examples["index"], examples["label"]
    attacks, points, labels, correct = [], [], [], []
    for attack, outcomes in examples["correct"].items():
        count = len(outcomes)  # AutoAttack ran on the first points only
        attacks += [attack] * count
        points += index[:count]
        labels += label[:count]
        correct += outcomes
    columns = {name: pa.array([value] * len(attacks), pa.string()) for name, value in identity.items()}
    columns.update(
        {
            "attack": pa.array(attacks, pa.string()),
            "index": pa.array(points, pa.int64()),
            "label": pa.array(labels, pa.int64()),
            "correct": pa.array(correct, pa.bool_()),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    path = examples_path(sweep_dir, config_hash)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def read_parquet_file(path: Path) -> pa.Table | None:
    """One Parquet file, or None when it is gone or unreadable (noted: see orchestrator.store.damaged_files).

    The bytes are read in one go: a running sweep replaces files while we read, and pyarrow would
    take the size first and read later (it can see a new file with the old size).
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        return pq.ParquetFile(pa.BufferReader(data)).read()
    except (pa.ArrowException, OSError) as err:  # truncated, junk, not Parquet at all
        damaged_files.note(path, f"not a readable Parquet file: {err}")
        return None


def read_trial(sweep_dir: Path, config_hash: str) -> dict[str, Any] | None:
    """The results row of one trial, or None when it has not finished (or its file is unreadable)."""
    table = read_parquet_file(trial_path(sweep_dir, config_hash))
    rows = table.to_pylist() if table is not None else []
    return rows[0] if rows else None


def trial_file_damaged(sweep_dir: Path, config_hash: str) -> bool:
    """Whether the trial's row file exists but cannot be read (read_trial then says None)."""
    path = trial_path(sweep_dir, config_hash)
    return path.is_file() and read_trial(sweep_dir, config_hash) is None


def write_trial(sweep_dir: Path, row: dict[str, Any]) -> Path:
    path = trial_path(sweep_dir, row["config_hash"])
    write_rows(path, [row])
    return path


class EpochLog:
    """Per-epoch records of one trial, rewritten atomically after each epoch.

    A resumed trial starts from the records already on disk; a record for a (stage, epoch) it
    reaches again replaces the old one, so the file never holds an epoch twice.
    """

    def __init__(self, sweep_dir: Path, config_hash: str, identity: dict[str, Any]):
        self.path = epochs_path(sweep_dir, config_hash)
        self.identity = identity
        self.records: dict[tuple[str, int], dict[str, Any]] = {}
        table = read_parquet_file(self.path)
        if table is None and self.path.is_file():
            # Junk where the log was: keep it for a post-mortem and start the log again (the
            # stages replay their last checkpointed epoch, and a finished stage's are gone).
            damaged_files.move_aside(self.path, "epochs file not readable")
        for record in table.to_pylist() if table is not None else []:
            self.records[(record["stage"], record["epoch"])] = record

    def last_position(self) -> str | None:
        """'<stage> epoch <n>' of the latest record on disk, or None for a trial starting afresh."""
        if not self.records:
            return None
        last = max(self.records.values(), key=lambda record: record["recorded_at"])
        return f"{last['stage']} epoch {last['epoch']}"

    def add(self, record: dict[str, Any]) -> bool:
        """Record an epoch; False (and nothing written) when the same record is already there.

        A resumed stage replays its last checkpointed epoch (the process may have died between
        the checkpoint and this log); a replay of a logged epoch is not a new one.
        """
        values = {k: _scalar(v) for k, v in record.items()}
        known = self.records.get((values["stage"], values["epoch"]))
        if known is not None and all(known.get(k) == v for k, v in values.items()):
            return False
        row = {**self.identity, "recorded_at": now_utc(), **values}
        self.records[(row["stage"], row["epoch"])] = row
        write_rows(self.path, self.records.values())
        return True


def _refresh_if_stale(snap: cache.FolderSnapshot, folder: Path, already_read=None) -> None:
    """A reader that read many files itself leaves a fresh cache for the next (where it may write)."""
    if snap.stale:
        try:
            cache.refresh(folder, already_read)
        except OSError:
            pass  # a read-only copy, a full disk: the next reader reads the files, as this one did


def footer_readable(path: Path) -> bool:
    """Whether `path` ends in a readable Parquet footer (a torn or junk file does not): reads the
    footer alone, so checking a whole folder costs little however long its files are."""
    try:
        pq.read_metadata(path)
        return True
    except FileNotFoundError:
        return False
    except (pa.ArrowException, OSError) as err:
        damaged_files.note(path, f"not a readable Parquet file: {err}")
        return False


def read_folder(folder: Path) -> pa.Table | None:
    """Every Parquet file in `folder` as one Arrow table (None when there is none), race-free.

    Rows of files unchanged since the folder's cache was written come from the cache
    (cache.py), the others from their files. A file gone in between (a running sweep
    replaces files while we read) or unreadable (noted for the one warning line) is skipped.
    Columns unify by name: an ERROR row lacks the metric columns, and a column null in one file
    and a number in another becomes the number.
    """
    snap = cache.snapshot(folder)
    cached = cache.cached_rows(snap)
    if cached is None and snap.current_sources:  # a readable footer over unreadable rows: the files
        snap = cache.uncached(folder)
    tables = [cached] if cached is not None else []
    stamped = cache.read_stamped(snap.uncovered)
    tables += [table for _, table in stamped.values()]
    for path in snap.uncovered:
        if path.name not in stamped:
            read_parquet_file(path)  # gone (skipped) or unreadable: noted for the one warning line
    _refresh_if_stale(snap, folder, stamped)
    return pa.concat_tables(tables, promote_options="permissive") if tables else None
