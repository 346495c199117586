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
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestrator.store.paths import PARQUET, ResultsPaths, parquet_files
from trainables.artifacts import atomic_write_bytes

SOURCE = "_source"  # the stamp column: "<file name>:<inode>:<mtime ns>:<size>"
# The stamps are also listed in the file's metadata, so a reader learns what the cache covers from
# its footer alone (the column repeats a stamp on each of a trial's hundreds of example rows).
SOURCES_KEY = b"cropd.results_cache.sources"
# A reader that had to read at least this many files itself writes a fresh cache for the next one.
REFRESH_AT = 200
# Files read and merged at a time by a refresh: at 10,000 files, all at once held 1 GB in the driver
# at the end of a sweep (bench/bench_sweep_scale.py); the merged rows are a few MB.
READ_CHUNK = 256


@dataclass
class FolderSnapshot:
    """One results folder as a reader sees it: rows from the cache, files read beside it."""

    cache_path: Path
    current_sources: list[str]  # the stamps of the cached rows to use
    uncovered: list[Path]  # files new or replaced since the cache was written
    gone: int = 0  # stamps the cache holds whose files were replaced or removed since

    @property
    def current(self) -> bool:
        """Whether the cache holds exactly the folder's files as they are now."""
        return not self.uncovered and not self.gone

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
    """The stamps the cache holds rows of (from its footer), or None without a usable cache."""
    try:
        metadata = pq.read_schema(cache_path).metadata or {}
        return set(json.loads(metadata[SOURCES_KEY]))
    except (FileNotFoundError, pa.ArrowException, OSError, KeyError, ValueError):
        return None


def snapshot(folder: Path) -> FolderSnapshot:
    """What a reader of `folder` takes from the cache and what it must read itself."""
    folder = Path(folder)
    path = cache_file(folder)
    stamps = _stamps(folder)
    cached_sources = _cached_sources(path) or set()
    current = [stamp for stamp in stamps.values() if stamp in cached_sources]
    uncovered = sorted(folder / name for name, stamp in stamps.items() if stamp not in cached_sources)
    return FolderSnapshot(path, current, uncovered, gone=len(cached_sources) - len(current))


def uncached(folder: Path) -> FolderSnapshot:
    """`folder` read without its cache: every file (for a cache that turned out unreadable)."""
    return FolderSnapshot(cache_file(folder), [], parquet_files(folder))


def cached_rows(snap: FolderSnapshot) -> pa.Table | None:
    """The cache's rows of files that are still there unchanged, without the stamp column."""
    table = _read_cache(snap)
    if table is None or not table.num_rows:
        return None
    return table.drop_columns([SOURCE]).replace_schema_metadata(None)


def read_stamped(paths: list[Path]) -> dict[str, tuple[str, pa.Table]]:
    """File name -> (stamp, rows) of each readable file. Read by descriptor and stamped from it, so
    a file replaced meanwhile is stamped as the version read. Unreadable or vanished files are left
    out (the caller notes them)."""
    read = {}
    for path in paths:
        try:
            with open(path, "rb") as handle:
                stamp = _stamp(Path(path).name, os.fstat(handle.fileno()))
                read[Path(path).name] = (stamp, pq.ParquetFile(pa.BufferReader(handle.read())).read())
        except (FileNotFoundError, pa.ArrowException, OSError):
            continue
    return read


def refresh(folder: Path, already_read: dict[str, tuple[str, pa.Table]] | None = None) -> int:
    """Write `folder`'s cache again: unchanged files' rows kept, new and replaced files read.

    `already_read`: (stamp, rows) of files the caller read itself with read_stamped, not read
    again. Returns how many files were new or replaced. The cache is replaced atomically.
    """
    folder = Path(folder)
    snap = snapshot(folder)
    if snap.current:
        return 0  # nothing new, replaced or gone
    tables, sources = [], []
    kept = _read_cache(snap)
    if kept is None:  # no usable cache after all (replaced or damaged meanwhile): read every file
        snap = uncached(folder)
    elif kept.num_rows:
        tables.append(kept)
        sources += snap.current_sources
    known = already_read or {}
    for start in range(0, len(snap.uncovered), READ_CHUNK):
        chunk = snap.uncovered[start : start + READ_CHUNK]
        read = read_stamped([path for path in chunk if path.name not in known])
        stamped = [entry for path in chunk if (entry := known.get(path.name) or read.get(path.name))]
        if stamped:
            tables.append(_compact(stamped))
            sources += [stamp for stamp, _ in stamped]
    if not tables:
        snap.cache_path.unlink(missing_ok=True)
        return len(snap.uncovered)
    merged = pa.concat_tables(tables, promote_options="permissive")
    merged = merged.replace_schema_metadata({**(merged.schema.metadata or {}), SOURCES_KEY: json.dumps(sources)})
    buffer = io.BytesIO()
    pq.write_table(merged, buffer)
    atomic_write_bytes(snap.cache_path, buffer.getvalue())
    return len(snap.uncovered)


def _compact(stamped: list[tuple[str, pa.Table]]) -> pa.Table:
    """Many files' rows as one table in contiguous buffers, each row stamped with its file.

    A one-row table read from a file costs about 70 KB outside Arrow's memory pool (its schema and
    column objects), so a refresh holds only READ_CHUNK of them at a time.
    """
    rows = pa.concat_tables([table for _, table in stamped], promote_options="permissive").combine_chunks()
    stamps = pa.array([stamp for stamp, table in stamped for _ in range(table.num_rows)], pa.string())
    return rows.append_column(SOURCE, stamps)


def _read_cache(snap: FolderSnapshot) -> pa.Table | None:
    """The cache's rows of the still-current stamps, stamp column kept; an empty table without any."""
    if not snap.current_sources:
        return pa.table({})
    try:
        table = pq.ParquetFile(snap.cache_path).read()
    except (FileNotFoundError, pa.ArrowException, OSError):
        return None
    return table.filter(pc.is_in(table[SOURCE], value_set=pa.array(snap.current_sources, pa.string())))


def refresh_all(results_dir: Path) -> dict[str, int]:
    """Refresh the caches of trials/, epochs/ and examples/; returns the files read per folder."""
    results = ResultsPaths(results_dir)
    return {folder.name: refresh(folder) for folder in (results.trials, results.epochs, results.examples)}
