"""A read cache over a results folder: the rows of its many per-trial Parquet files in one file.

results/trials/, epochs/ and examples/ hold one file per trial, each written whole by a rename: a
trial's file is there complete or not at all, and a trial that runs again replaces it. Resume and
the trial function rely on that, so it stays. But reading 10,000 small files takes seconds, so
results/cache/<folder>.parquet holds all their rows in one file, each row stamped with the file it
came from (name, inode, modification time, size: a rename always brings a new inode).

A reader takes a file's rows from the cache where that file is still there with the same stamp,
and reads the file itself where it is new or was replaced since. So the cache can be out of date
but never wrong, and a cache that is lost or damaged costs time, not rows. The driver refreshes it
when a sweep ends; a reader that had to read many files itself refreshes it where it may write.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trainables.artifacts import atomic_write_bytes

from .sweep_paths import PARQUET, ResultsPaths

SOURCE = "_source"  # the stamp column: "<file name>:<inode>:<mtime ns>:<size>"
# A reader that had to read at least this many files itself writes a fresh cache for the next one.
REFRESH_AT = 200


@dataclass
class FolderSnapshot:
    """One results folder as a reader sees it: rows from the cache, files read beside it."""

    cache_path: Path
    current_sources: list[str]  # the stamps of the cached rows to use
    uncovered: list[Path]  # files new or replaced since the cache was written

    @property
    def stale(self) -> bool:
        return len(self.uncovered) >= REFRESH_AT


def cache_file(folder: Path) -> Path:
    """results/cache/<trials|epochs|examples>.parquet for results/<folder>/."""
    return ResultsPaths(Path(folder).parent).cache_of(Path(folder).name)


def _stamps(folder: Path) -> dict[str, str]:
    """Per-trial file name -> its stamp, for every Parquet file in `folder`."""
    stamps = {}
    try:
        entries = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    with entries:
        for entry in entries:
            if entry.name.endswith(PARQUET) and entry.is_file():
                stamps[entry.name] = _stamp(entry.name, entry.stat())
    return stamps


def _stamp(name: str, stat: os.stat_result) -> str:
    return f"{name}:{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}"


def _cached_sources(cache_path: Path) -> set[str] | None:
    """The stamps the cache holds rows of (its one stamp column only), or None without a usable cache."""
    try:
        column = pq.read_table(cache_path, columns=[SOURCE])[SOURCE]
    except (FileNotFoundError, pa.ArrowException, OSError, KeyError):
        return None
    return set(pc.unique(column).to_pylist())


def snapshot(folder: Path) -> FolderSnapshot:
    """What a reader of `folder` takes from the cache and what it must read itself."""
    folder = Path(folder)
    path = cache_file(folder)
    stamps = _stamps(folder)
    cached_sources = _cached_sources(path) or set()
    current = [stamp for stamp in stamps.values() if stamp in cached_sources]
    uncovered = sorted(folder / name for name, stamp in stamps.items() if stamp not in cached_sources)
    return FolderSnapshot(path, current, uncovered)


def cached_rows(snap: FolderSnapshot) -> pa.Table | None:
    """The cache's rows of files that are still there unchanged, without the stamp column."""
    if not snap.current_sources:
        return None
    try:
        table = pq.read_table(snap.cache_path)
    except (FileNotFoundError, pa.ArrowException, OSError):
        return None
    keep = pc.is_in(table[SOURCE], value_set=pa.array(snap.current_sources, pa.string()))
    return table.filter(keep).drop_columns([SOURCE])


def refresh(folder: Path) -> int:
    """Write `folder`'s cache again: unchanged files' rows kept, new and replaced files read.

    Returns how many files were read. Files are read by descriptor and stamped from it, so a file
    replaced while this runs is stamped as the version read (and read again by the next reader).
    Unreadable files are left out (readers note them). The cache is replaced atomically.
    """
    folder = Path(folder)
    snap = snapshot(folder)
    kept = None
    if snap.current_sources:
        try:
            table = pq.read_table(snap.cache_path)
            kept = table.filter(pc.is_in(table[SOURCE], value_set=pa.array(snap.current_sources, pa.string())))
        except (FileNotFoundError, pa.ArrowException, OSError):
            kept = None
            snap = FolderSnapshot(snap.cache_path, [], sorted(folder.glob(f"*{PARQUET}")))
    tables = [kept] if kept is not None and kept.num_rows else []
    for path in snap.uncovered:
        try:
            with open(path, "rb") as handle:
                stamp = _stamp(path.name, os.fstat(handle.fileno()))
                table = pq.read_table(pa.BufferReader(handle.read()))
        except (FileNotFoundError, pa.ArrowException, OSError):
            continue
        tables.append(table.append_column(SOURCE, pa.array([stamp] * table.num_rows, pa.string())))
    if not snap.uncovered and kept is not None and kept.num_rows == _cached_row_count(snap.cache_path):
        return 0  # nothing new and nothing gone: the cache is current
    if not tables:
        snap.cache_path.unlink(missing_ok=True)
        return len(snap.uncovered)
    buffer = io.BytesIO()
    pq.write_table(pa.concat_tables(tables, promote_options="permissive"), buffer)
    atomic_write_bytes(snap.cache_path, buffer.getvalue())
    return len(snap.uncovered)


def _cached_row_count(cache_path: Path) -> int:
    try:
        return pq.read_metadata(cache_path).num_rows
    except (FileNotFoundError, pa.ArrowException, OSError):
        return -1


def refresh_all(results_dir: Path) -> dict[str, int]:
    """Refresh the caches of trials/, epochs/ and examples/; returns the files read per folder."""
    results = ResultsPaths(results_dir)
    return {folder.name: refresh(folder) for folder in (results.trials, results.epochs, results.examples)}
