"""The record of truth: one Parquet file per finished trial, one per trial's epochs, one per trial's
per-example outcomes, and queries.

Files are written atomically and named by the trial's config hash, so a trial that reruns
replaces its row instead of adding a second one. DuckDB reads them all as tables `trials`,
`epochs` and `examples`.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from trainables.artifacts import atomic_write_bytes
from trainables.schema.preprocessor import PREPROCESSOR_KINDS

from . import results_cache, unreadable
from .sweep_paths import ResultsPaths, SweepPaths

TERMINATED, ERROR = "TERMINATED", "ERROR"
# A trial a scheduler stopped early (stopped_trials.py): never finished, never run again.
STOPPED = "STOPPED"
HEADLINE_METRICS = ("acc_natural", "acc_pgd10", "acc_pgd20", "acc_autoattack")
# The data section's settings are columns without a prefix (dataset, data_fraction, seed ...).
UNPREFIXED_SECTION = "data"
SETTING_PREFIXES = ("foundation.", "preprocessor.", "head.", "evaluation.")
# Where a spec's `seeds` land in a trial config: every stage that draws random numbers while
# training. evaluation.seed stays fixed so every trial is attacked with the same test-time randomness.
SEED_FIELDS = ("data.seed", "preprocessor.seed", "head.seed")
VERSIONED_PACKAGES = ("torch", "torchvision", "transformers", "ray", "optuna", "pyautoattack", "cropd-orchestrator")


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


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def flat_name(section: str, key: str) -> str:
    """The Parquet column of a config value: `seed` for data.seed, `preprocessor.lambda` ..."""
    return key if section == UNPREFIXED_SECTION else f"{section}.{key}"


SEED_COLUMNS = tuple(flat_name(*field.split(".")) for field in SEED_FIELDS)


def is_setting(column: str) -> bool:
    """Whether a trials column holds a config value (as opposed to identity, metrics, versions)."""
    from trainables.schema.data import DATA_SCHEMA

    return column in DATA_SCHEMA or column.startswith(SETTING_PREFIXES)


# Mappings whose settings get a column each (`foundation.pretraining.method`), as a sweep varies
# them one by one; other mappings (an inline architecture) stay one JSON column.
NESTED_SETTINGS = ("foundation.pretraining", "foundation.resnet", "preprocessor.validation")


def flatten_config(config: dict) -> dict[str, Any]:
    """A validated nested trial config as flat columns: `dataset`, `preprocessor.lambda`, ...

    Lists and mappings (milestones, an architecture given inline) become JSON text so every
    column holds one scalar type and any Parquet reader can filter on it.
    """
    flat: dict[str, Any] = {}
    for section, values in config.items():
        for key, value in (values or {}).items():
            if f"{section}.{key}" in NESTED_SETTINGS:
                for inner, inner_value in value.items():
                    flat[f"{flat_name(section, key)}.{inner}"] = _scalar(inner_value)
            else:
                flat[flat_name(section, key)] = _scalar(value)
    # Settings a pre-processor kind ignores are null, so `WHERE "preprocessor.lambda" = 1` never
    # matches an identity trial that merely carried the default.
    kind = PREPROCESSOR_KINDS.get((config.get("preprocessor") or {}).get("kind"))
    if kind is not None:
        for key in config["preprocessor"]:
            if key not in kind.relevant and f"preprocessor.{key}" not in NESTED_SETTINGS:
                flat[f"preprocessor.{key}"] = None
    return flat


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def trial_row(
    *,
    sweep: str,
    trial_id: str,
    config_hash: str,
    config: dict,
    status: str,
    metrics: dict | None,
    error: str | None,
    started_at: datetime,
    finished_at: datetime,
    extra: dict | None = None,
) -> dict[str, Any]:
    """One results row: identity, status, flat config, metrics, timestamps, versions."""
    row: dict[str, Any] = {
        "sweep": sweep,
        "trial_id": trial_id,
        "config_hash": config_hash,
        "status": status,
        "error": error,
        "started_at": started_at,
        "finished_at": finished_at,
    }
    row.update(flatten_config(config))
    for name in HEADLINE_METRICS:  # always present, so a query never misses a column
        for suffix in ("", "_lo", "_hi"):
            row[name + suffix] = None
    for key, value in (metrics or {}).items():
        if key == "integrity_flags":
            row[key] = ",".join(value)
        else:
            row[key] = _scalar(value)
    row.setdefault("integrity_flags", None)
    row.update(extra or {})
    row.update(environment())
    # CPU float sums depend on the thread count: the same trial on 1 and 2 threads differs
    # (embedded foundation weights by ~5e-5 after 2 epochs), so it is part of the provenance.
    torch = sys.modules.get("torch")
    row["torch_threads"] = torch.get_num_threads() if torch is not None else None
    return row


@lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """Package versions and the project's git revision (None outside a checkout)."""
    info: dict[str, Any] = {}
    for package in VERSIONED_PACKAGES:
        try:
            info[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[f"version.{package}"] = None
    info["git_revision"] = _git_revision()
    return info


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


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
    """One Parquet file, or None when it is gone or unreadable (noted: see orchestrator.unreadable).

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
        unreadable.note(path, f"not a readable Parquet file: {err}")
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
            unreadable.move_aside(self.path, "epochs file not readable")
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

    Unchanged files' rows come from the folder's cache (results_cache.py), the others from the files.
    """
    examples = ResultsPaths(results_dir).examples
    snap = results_cache.snapshot(examples)
    parts = []
    if snap.current_sources:
        connection.register("_examples_sources", pa.table({"source": pa.array(snap.current_sources, pa.string())}))
        parts.append(
            f"SELECT * EXCLUDE ({results_cache.SOURCE}) FROM read_parquet({_quoted(snap.cache_path)}) "
            f"WHERE {results_cache.SOURCE} IN (SELECT source FROM _examples_sources)"
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


def _refresh_if_stale(snap: results_cache.FolderSnapshot, folder: Path, already_read=None) -> None:
    """A reader that read many files itself leaves a fresh cache for the next (where it may write)."""
    if snap.stale:
        try:
            results_cache.refresh(folder, already_read)
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
        unreadable.note(path, f"not a readable Parquet file: {err}")
        return False


def read_folder(folder: Path) -> pa.Table | None:
    """Every Parquet file in `folder` as one Arrow table (None when there is none), race-free.

    Rows of files unchanged since the folder's cache was written come from the cache
    (results_cache.py), the others from their files. A file gone in between (a running sweep
    replaces files while we read) or unreadable (noted for the one warning line) is skipped.
    Columns unify by name: an ERROR row lacks the metric columns, and a column null in one file
    and a number in another becomes the number.
    """
    snap = results_cache.snapshot(folder)
    cached = results_cache.cached_rows(snap)
    if cached is None and snap.current_sources:  # a readable footer over unreadable rows: the files
        snap = results_cache.uncached(folder)
    tables = [cached] if cached is not None else []
    stamped = results_cache.read_stamped(snap.uncovered)
    tables += [table for _, table in stamped.values()]
    for path in snap.uncovered:
        if path.name not in stamped:
            read_parquet_file(path)  # gone (skipped) or unreadable: noted for the one warning line
    _refresh_if_stale(snap, folder, stamped)
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


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
