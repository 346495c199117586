"""results/cache/: one file of every per-trial file's rows, out of date at times but never wrong.

Real Parquet files written by orchestrator.store.results, read back through DuckDB (connect) and Arrow.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.store import cache as results_cache
from orchestrator.store import parquet, rows
from orchestrator.store.parquet import write_examples, write_trial
from orchestrator.store.paths import SweepPaths
from orchestrator.store.query import connect
from orchestrator.store.rows import TERMINATED, trial_row
from trainables.artifacts import config_hash
from trainables.schema import validate_trial_config


def _config(lam: float) -> dict:
    return validate_trial_config(
        {
            "data": {"dataset": "digits2"},
            "foundation": {"name": "embedded"},
            "preprocessor": {"kind": "cropd", "lambda": lam},
        }
    )


def _write(sweep_dir, lam: float, acc: float) -> str:
    config = _config(lam)
    key = config_hash(config)
    now = rows.now_utc()
    identity = {"sweep": "s", "trial_id": f"t{lam}", "config_hash": key}
    examples = {"index": [0, 1, 2], "label": [1, 0, 1], "correct": {"natural": [True, True, False]}}
    write_examples(sweep_dir, key, examples, identity)
    write_trial(
        sweep_dir,
        trial_row(
            sweep="s",
            trial_id=f"t{lam}",
            config_hash=key,
            config=config,
            status=TERMINATED,
            metrics={"acc_natural": acc},
            error=None,
            started_at=now,
            finished_at=now,
        ),
    )
    return key


def _accuracies(sweep_dir) -> dict[str, float]:
    return dict(connect(sweep_dir).execute("SELECT config_hash, acc_natural FROM trials").fetchall())


def _examples(sweep_dir) -> int:
    return connect(sweep_dir).execute("SELECT count(*) FROM examples").fetchone()[0]


def test_rows_come_from_the_cache_until_a_file_changes_and_then_from_the_file(tmp_path):
    keys = {lam: _write(tmp_path, lam, acc=0.5) for lam in (1, 2, 3)}
    results_dir = SweepPaths(tmp_path).results
    read = results_cache.refresh_all(results_dir.root)
    assert read == {"trials": 3, "epochs": 0, "examples": 3}
    assert pq.read_metadata(results_dir.cache_of("trials")).num_rows == 3
    assert results_cache.snapshot(results_dir.trials).uncovered == []  # a reader reads one file
    assert results_cache.refresh(results_dir.trials) == 0  # and a second refresh has nothing to do

    # A trial that ran again replaced its file: the file, not the stale cache row, is read.
    write_trial(tmp_path, {**parquet.read_trial(tmp_path, keys[2]), "acc_natural": 0.9})
    # A new trial is read from its file; a trial whose file is gone is gone.
    keys[4] = _write(tmp_path, 4, acc=0.25)
    os.remove(results_dir.trial_row(keys[1]))
    os.remove(results_dir.examples_file(keys[1]))
    assert _accuracies(tmp_path) == {keys[2]: 0.9, keys[3]: 0.5, keys[4]: 0.25}
    assert _examples(tmp_path) == 9
    snap = results_cache.snapshot(results_dir.trials)
    assert [path.name for path in snap.uncovered] == sorted(
        results_dir.trial_row(key).name for key in (keys[2], keys[4])
    )

    # Refreshed: the same rows, now all from the cache.
    assert results_cache.refresh(results_dir.trials) == 2
    assert results_cache.snapshot(results_dir.trials).uncovered == []
    assert _accuracies(tmp_path) == {keys[2]: 0.9, keys[3]: 0.5, keys[4]: 0.25}


def test_a_damaged_or_lost_cache_costs_time_not_rows(tmp_path):
    keys = [_write(tmp_path, lam, acc=lam / 10) for lam in (1, 2)]
    results_dir = SweepPaths(tmp_path).results
    results_cache.refresh_all(results_dir.root)
    expected = _accuracies(tmp_path)
    assert set(expected) == set(keys)

    for cache in (results_dir.cache_of("trials"), results_dir.cache_of("examples")):
        cache.write_bytes(b"not parquet at all")
    assert _accuracies(tmp_path) == expected
    assert _examples(tmp_path) == 6
    assert results_cache.refresh(results_dir.trials) == 2  # written again from the files
    assert _accuracies(tmp_path) == expected

    # Rows damaged behind a readable footer: the footer says what is covered, the rows cannot be read.
    results_cache.refresh(results_dir.trials)
    cache = results_dir.cache_of("trials")
    data = bytearray(cache.read_bytes())
    data[4:200] = b"\0" * 196  # the first column chunk's pages, past the magic bytes
    cache.write_bytes(bytes(data))
    with pytest.raises((pa.ArrowException, OSError)):
        pq.read_table(cache)
    assert results_cache.snapshot(results_dir.trials).uncovered == []
    assert _accuracies(tmp_path) == expected

    for cache in results_dir.cache_of("trials").parent.iterdir():
        cache.unlink()
    assert _accuracies(tmp_path) == expected
    assert _examples(tmp_path) == 6


def test_a_reader_that_read_many_files_leaves_a_cache_for_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(results_cache, "REFRESH_AT", 3)
    keys = [_write(tmp_path, lam, acc=0.5) for lam in (1, 2, 3)]
    results_dir = SweepPaths(tmp_path).results
    assert not results_dir.cache_of("trials").exists()
    assert set(_accuracies(tmp_path)) == set(keys)
    assert pq.read_metadata(results_dir.cache_of("trials")).num_rows == 3
    assert pq.read_metadata(results_dir.cache_of("examples")).num_rows == 9
    assert results_cache.snapshot(results_dir.trials).uncovered == []


def test_a_refresh_in_chunks_stamps_every_row_with_its_own_file(tmp_path, monkeypatch):
    """Files are merged READ_CHUNK at a time; each row keeps its file's stamp across the chunks."""
    monkeypatch.setattr(results_cache, "READ_CHUNK", 2)
    keys = {lam: _write(tmp_path, lam, acc=lam / 10) for lam in (1, 2, 3, 4)}
    # A fifth trial with a metric the others lack: the chunks' columns differ and are merged anyway.
    config = _config(5)
    keys[5] = config_hash(config)
    now = rows.now_utc()
    write_trial(
        tmp_path,
        trial_row(
            sweep="s",
            trial_id="t5",
            config_hash=keys[5],
            config=config,
            status=TERMINATED,
            metrics={"acc_natural": 0.5, "acc_pgd20": 0.125},
            error=None,
            started_at=now,
            finished_at=now,
        ),
    )
    results_dir = SweepPaths(tmp_path).results
    assert results_cache.refresh_all(results_dir.root) == {"trials": 5, "epochs": 0, "examples": 4}
    cache = pq.read_table(results_dir.cache_of("trials"))
    assert cache.num_rows == 5 and cache.column("_source").to_pylist() == [
        results_cache._stamps(results_dir.trials)[name] for name in sorted(results_cache._stamps(results_dir.trials))
    ]
    assert dict(zip(cache.column("config_hash").to_pylist(), cache.column("acc_pgd20").to_pylist())) == {
        **{keys[lam]: None for lam in (1, 2, 3, 4)},
        keys[5]: 0.125,
    }
    examples = pq.read_table(results_dir.cache_of("examples"))
    stamps = results_cache._stamps(results_dir.examples)
    assert sorted(examples.column("_source").to_pylist()) == sorted(
        stamp for stamp in stamps.values() for _ in range(3)
    )
    # Every row comes from the cache, and one file replaced after the refresh is read from the file.
    assert results_cache.snapshot(results_dir.trials).uncovered == []
    write_trial(tmp_path, {**parquet.read_trial(tmp_path, keys[3]), "acc_natural": 0.75})
    assert _accuracies(tmp_path) == {**{keys[lam]: lam / 10 for lam in (1, 2, 4)}, keys[3]: 0.75, keys[5]: 0.5}
    assert _examples(tmp_path) == 12
