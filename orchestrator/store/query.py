"""A sweep's Parquet files as DuckDB tables `trials`, `epochs` and `examples`, and pandas frames.

Read-only, and safe beside a running sweep: files that change while they are read are skipped
or read again (parquet.py), and unchanged files come from the folder's cache (cache.py).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from orchestrator.store import cache
from orchestrator.store.parquet import _refresh_if_stale, footer_readable, read_folder
from orchestrator.store.paths import ResultsPaths, SweepPaths


def connect(sweep_dir: Path):
    """A DuckDB connection with tables `trials` and `epochs` over the sweep's Parquet files."""
    return connect_results(SweepPaths(sweep_dir).results.root)


def connect_results(results_dir: Path):
    """`connect` for a results folder itself (say a copy of a sweep's results/ on a laptop).

    Tables `trials` and `epochs` (read whole), and `examples`: a view read only when a query
    uses it, since it holds a row per test point and attack of every trial.
    """
    import duckdb

    connection = duckdb.connect()
    results = ResultsPaths(results_dir)
    for table, folder in (("trials", results.trials), ("epochs", results.epochs)):
        snapshot = read_folder(folder)
        if snapshot is not None:
            connection.register(table, snapshot)
        else:
            # No file yet (a sweep just started): an empty table with the columns every row has,
            # so the usual queries (ORDER BY started_at, WHERE stage = ...) still bind.
            connection.execute(f"CREATE TABLE {table} ({EMPTY_COLUMNS[table]})")
    add_examples_view(connection, results_dir)
    return connection


def add_examples_view(connection, results_dir: Path) -> None:
    """Table `examples` on `connection`: a view over the per-example files, read only when queried.

    Unchanged files' rows come from the folder's cache (cache.py), the others from the files.
    """
    examples = ResultsPaths(results_dir).examples
    snap = cache.snapshot(examples)
    parts = []
    if snap.current_sources:
        connection.register("_examples_sources", pa.table({"source": pa.array(snap.current_sources, pa.string())}))
        parts.append(
            f"SELECT * EXCLUDE ({cache.SOURCE}) FROM read_parquet({_quoted(snap.cache_path)}) "
            f"WHERE {cache.SOURCE} IN (SELECT source FROM _examples_sources)"
        )
    # Each file is written once, whole, by rename: a reader sees a complete old or new file. Its
    # footer is checked now (cheap) so one damaged file is skipped, not the whole query failed.
    readable = [path for path in snap.uncovered if footer_readable(path)]
    if readable:
        parts.append(f"SELECT * FROM read_parquet([{', '.join(map(_quoted, readable))}], union_by_name=true)")
    if parts:
        connection.execute(f"CREATE VIEW examples AS {' UNION ALL BY NAME '.join(parts)}")
    else:
        connection.execute(f"CREATE TABLE examples ({EMPTY_COLUMNS['examples']})")
    _refresh_if_stale(snap, examples)


def _quoted(path: Path) -> str:
    return "'" + str(Path(path).absolute()).replace("'", "''") + "'"


EMPTY_COLUMNS = {
    "trials": "sweep VARCHAR, trial_id VARCHAR, config_hash VARCHAR, status VARCHAR, error VARCHAR, "
    "started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ",
    "epochs": "sweep VARCHAR, trial_id VARCHAR, config_hash VARCHAR, recorded_at TIMESTAMPTZ, stage VARCHAR, "
    "epoch BIGINT",
    "examples": "sweep VARCHAR, trial_id VARCHAR, config_hash VARCHAR, attack VARCHAR, index BIGINT, label BIGINT, "
    "correct BOOLEAN",
}


def frame(connection, sql: str):
    """A query's rows as a pandas DataFrame, through Arrow (DuckDB's .df() trips a pandas 3 warning)."""
    relation = connection.sql(sql)
    if relation is None:  # a statement that returns no rows (CREATE, SET ...)
        raise ValueError("expected a query that returns rows")
    return relation.to_arrow_table().to_pandas()


def first_line(err: Exception) -> str:
    """A DuckDB error as the one line a user needs (its message spans several, with a caret)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def load_trials(sweep_dir: Path):
    """Every trial row of a sweep as a pandas DataFrame (via DuckDB, which unifies the files)."""
    return frame(connect(sweep_dir), "SELECT * FROM trials ORDER BY started_at")
