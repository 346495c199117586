"""The results record: real Parquet files written through orchestrator.store.results, read back by
DuckDB and pandas, and the `results` / `status` commands on them."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from datetime import datetime, timedelta, timezone
from importlib import metadata

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.cli.app import main
from orchestrator.store import parquet, query
from orchestrator.store.parquet import EpochLog, write_trial
from orchestrator.store.rows import ERROR, TERMINATED, trial_row
from trainables.artifacts import atomic_write_json, config_hash
from trainables.schema import validate_trial_config
from trainables.schema.results import ACCURACY_NAMES

CROPD = {
    "data": {"dataset": "digits2"},
    "foundation": {"name": "embedded"},
    "preprocessor": {"kind": "cropd", "lambda": 10},
}
CROPD_1 = {
    "data": {"dataset": "digits2"},
    "foundation": {"name": "embedded"},
    "preprocessor": {"kind": "cropd", "lambda": 1},
}
IDENTITY = {"data": {"dataset": "digits2"}, "foundation": {"name": "embedded"}, "preprocessor": {"kind": "identity"}}
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
STAGES = ("data", "foundation", "preprocessor", "head", "evaluation")


def trial_metrics(acc: float, *, autoattack: bool = True, flags: tuple[str, ...] = ()) -> dict:
    """Shaped like trainables.trial.run_trial's result (after its JSON round trip)."""
    out: dict = {"eps": 8 / 255, "attacks": ["pgd10", "pgd20"] + (["autoattack"] if autoattack else [])}
    for i, name in enumerate(("natural", "pgd10", "pgd20", "autoattack")):
        value = acc - 0.1 * i
        if name == "autoattack" and not autoattack:  # not run: NaN, never 0
            out.update(
                {
                    "acc_autoattack": float("nan"),
                    "acc_autoattack_lo": float("nan"),
                    "acc_autoattack_hi": float("nan"),
                    "n_autoattack": 0,
                }
            )
            continue
        out.update(
            {f"acc_{name}": value, f"acc_{name}_lo": value - 0.03, f"acc_{name}_hi": value + 0.03, f"n_{name}": 200}
        )
    out.update(
        {
            "autoattack_version": "standard" if autoattack else None,
            "autoattack_list": ["apgd-ce", "apgd-t"] if autoattack else [],
            "autoattack_acc_natural": acc,
            "autoattack_outside_budget": False,
            "integrity_flags": list(flags),
            "integrity_checked": True,
            "sweep_eps": [0.0, 4 / 255, 8 / 255, 16 / 255],
            "sweep_steps": [10, 20, 50],
            "integrity_details": {"comparisons": {"pgd20_vs_pgd10": {"rises": False}}},
            "time_natural_s": 0.25,
            "time_pgd10_s": 1.5,
            "time_pgd20_s": 3.0,
            "time_integrity_s": 0.75,
        }
    )
    out.update({f"time_{stage}_s": float(i + 1) for i, stage in enumerate(STAGES)})
    out.update(
        {"params_preprocessor": 123_456, "params_foundation": 654_321, "params_head": 330, "preprocessor_reused": False}
    )
    return json.loads(json.dumps(out))  # exactly what a resumed run_trial reads back


def make_row(
    config: dict,
    *,
    status: str = TERMINATED,
    metrics: dict | None = None,
    error: str | None = None,
    minutes: int = 0,
    trial_id: str = "t0",
) -> dict:
    validated = validate_trial_config(config)
    started = T0 + timedelta(minutes=minutes)
    return trial_row(
        sweep="demo",
        trial_id=trial_id,
        config_hash=config_hash(validated),
        config=validated,
        status=status,
        metrics=metrics,
        error=error,
        started_at=started,
        finished_at=started + timedelta(seconds=42),
    )


def key(config: dict) -> str:
    return config_hash(validate_trial_config(config))


def trial_files(sweep_dir):
    return sorted((sweep_dir / "results" / "trials").iterdir())


def missing(value) -> bool:
    return value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and value != value)


def same(a, b) -> bool:
    if missing(a) or missing(b):
        return missing(a) and missing(b)
    if isinstance(a, datetime) or isinstance(b, datetime):
        return pd.Timestamp(a) == pd.Timestamp(b)
    return a == b


# --- (a) schema ------------------------------------------------------------------------------------


def test_schema_reads_back_equal_through_duckdb_and_pandas(tmp_path):
    cropd_metrics = trial_metrics(0.9, flags=("pgd20_above_pgd10", "sweep_not_monotone"))
    write_trial(tmp_path, make_row(CROPD, metrics=cropd_metrics, trial_id="a"))
    write_trial(tmp_path, make_row(IDENTITY, metrics=trial_metrics(0.8, autoattack=False), minutes=1, trial_id="b"))

    connection = query.connect(tmp_path)
    types = dict(connection.execute("SELECT column_name, column_type FROM (DESCRIBE trials)").fetchall())
    expected = [
        "sweep",
        "trial_id",
        "config_hash",
        "status",
        "error",
        "started_at",
        "finished_at",
        "dataset",
        "data_fraction",
        "seed",
        "preprocessor.kind",
        "preprocessor.lambda",
        "preprocessor.temperature",
        "head.mode",
        "integrity_flags",
        "version.torch",
        "git_revision",
    ]
    expected += [f"acc_{m}{s}" for m in ("natural", "pgd10", "pgd20", "autoattack") for s in ("", "_lo", "_hi")]
    expected += [f"time_{stage}_s" for stage in STAGES] + ["params_preprocessor", "params_foundation", "params_head"]
    assert [c for c in expected if c not in types] == []
    assert types["started_at"] == "TIMESTAMP WITH TIME ZONE"
    assert (types["acc_pgd10"], types["acc_autoattack_hi"], types["preprocessor.temperature"]) == ("DOUBLE",) * 3
    assert types["preprocessor.lambda"] in ("BIGINT", "DOUBLE")  # as given: `lambda: 10` stays an integer
    assert (types["params_head"], types["n_natural"]) == ("BIGINT", "BIGINT"), types
    assert types["integrity_flags"] == types["sweep_eps"] == "VARCHAR"

    duck = query.frame(connection, "SELECT * FROM trials ORDER BY config_hash")
    files = [pd.read_parquet(path) for path in trial_files(tmp_path)]
    assert len(files) == 2 and all(len(frame) == 1 for frame in files)
    panda = pd.concat(files, ignore_index=True).sort_values("config_hash").reset_index(drop=True)
    assert set(duck.columns) == set(panda.columns)
    for column in duck.columns:
        for a, b in zip(duck[column].tolist(), panda[column].tolist()):
            assert same(a, b), (column, a, b)

    row = duck.set_index("config_hash").loc[key(CROPD)]
    assert row["status"] == TERMINATED and missing(row["error"]) and row["trial_id"] == "a"
    assert row["dataset"] == "digits2" and row["data_fraction"] == 1.0 and row["seed"] == 0
    assert (
        row["preprocessor.kind"] == "cropd"
        and row["preprocessor.lambda"] == 10
        and row["preprocessor.temperature"] == 0.5
    )
    assert row["head.mode"] == "clean"
    for name in (
        "acc_natural",
        "acc_natural_lo",
        "acc_pgd10_hi",
        "acc_autoattack",
        "n_pgd20",
        "time_head_s",
        "params_foundation",
    ):
        assert row[name] == pytest.approx(cropd_metrics[name]), name
    assert row["integrity_flags"] == "pgd20_above_pgd10,sweep_not_monotone"
    assert json.loads(row["sweep_eps"]) == pytest.approx(cropd_metrics["sweep_eps"])  # lists are JSON text
    assert json.loads(row["preprocessor.arch"])["patch_size"] == 4
    assert pd.Timestamp(row["started_at"]) == pd.Timestamp(T0)
    assert pd.Timestamp(row["finished_at"]) - pd.Timestamp(row["started_at"]) == pd.Timedelta(seconds=42)
    assert row["version.torch"] == metadata.version("torch")
    if shutil.which("git"):
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", row["git_revision"]), row["git_revision"]

    identity = duck.set_index("config_hash").loc[key(IDENTITY)]
    assert missing(identity["acc_autoattack"]) and identity["n_autoattack"] == 0  # not run: NaN, not 0
    assert identity["integrity_flags"] == ""


# --- (b) irrelevant settings are null --------------------------------------------------------------


def test_identity_rows_have_null_lambda_so_a_filter_on_lambda_never_matches_them(tmp_path):
    identity_config = validate_trial_config(IDENTITY)
    assert identity_config["preprocessor"]["lambda"] == 1.0  # the default it carries, irrelevant to identity
    write_trial(tmp_path, make_row(IDENTITY, metrics=trial_metrics(0.8)))
    write_trial(tmp_path, make_row(CROPD_1, metrics=trial_metrics(0.85), minutes=1))

    on_disk = pd.read_parquet(parquet.trial_path(tmp_path, key(IDENTITY)))
    assert on_disk["preprocessor.lambda"].isna().all() and on_disk["preprocessor.temperature"].isna().all()
    assert on_disk["preprocessor.kind"].tolist() == ["identity"]

    connection = query.connect(tmp_path)

    def hashes(where):
        return [h for (h,) in connection.execute(f"SELECT config_hash FROM trials WHERE {where}").fetchall()]

    assert hashes('"preprocessor.lambda" = 1') == [key(CROPD_1)]
    assert hashes('"preprocessor.lambda" >= 0') == [key(CROPD_1)]
    assert hashes('"preprocessor.lambda" IS NULL') == [key(IDENTITY)]
    assert hashes('"preprocessor.temperature" = 0.5') == [key(CROPD_1)]


# --- (c) ERROR and TERMINATED together -------------------------------------------------------------


def test_error_row_and_terminated_row_read_together_with_null_metrics(tmp_path):
    write_trial(
        tmp_path, make_row(CROPD, status=ERROR, error="FloatingPointError: preprocessor: non-finite loss at epoch 3")
    )
    write_trial(tmp_path, make_row(IDENTITY, metrics=trial_metrics(0.7), minutes=1))
    error_schema = pq.read_schema(parquet.trial_path(tmp_path, key(CROPD)))
    assert (
        "n_natural" not in error_schema.names and "time_head_s" not in error_schema.names
    )  # only union_by_name joins them

    frame = query.load_trials(tmp_path)
    assert frame["status"].tolist() == [ERROR, TERMINATED]  # ordered by started_at
    failed, finished = frame.to_dict("records")
    assert failed["error"].startswith("FloatingPointError: preprocessor: non-finite loss")
    for name in (
        "acc_natural",
        "acc_pgd10_lo",
        "acc_autoattack_hi",
        "n_natural",
        "time_head_s",
        "params_head",
        "integrity_flags",
    ):
        assert missing(failed[name]), name
    assert missing(finished["error"]) and finished["acc_natural"] == pytest.approx(0.7) and finished["n_natural"] == 200
    connection = query.connect(tmp_path)
    assert connection.execute("SELECT count(*) FROM trials WHERE acc_natural IS NULL").fetchone() == (1,)
    assert connection.execute("SELECT status FROM trials WHERE error IS NOT NULL").fetchall() == [(ERROR,)]


# --- (d) one row per config hash -------------------------------------------------------------------


def test_writing_the_same_config_hash_twice_keeps_only_the_newer_row(tmp_path):
    write_trial(tmp_path, make_row(CROPD, status=ERROR, error="RuntimeError: out of memory", trial_id="first"))
    write_trial(tmp_path, make_row(CROPD, metrics=trial_metrics(0.66), minutes=5, trial_id="retry"))
    assert [p.name for p in trial_files(tmp_path)] == [f"{key(CROPD)}.parquet"]
    rows = query.connect(tmp_path).execute("SELECT trial_id, status, error, acc_natural FROM trials").fetchall()
    assert rows == [("retry", TERMINATED, None, pytest.approx(0.66))]


# --- (e) atomic writes ----------------------------------------------------------------------------


def test_writes_leave_no_temporary_files(tmp_path):
    for minutes, config in enumerate((CROPD, CROPD_1, IDENTITY, CROPD)):
        write_trial(tmp_path, make_row(config, metrics=trial_metrics(0.5 + minutes / 10), minutes=minutes))
    assert [p.name for p in trial_files(tmp_path)] == sorted(f"{key(c)}.parquet" for c in (CROPD, CROPD_1, IDENTITY))


def _assert_previous_intact(tmp_path, before: bytes):
    path = parquet.trial_path(tmp_path, key(CROPD))
    assert path.read_bytes() == before
    assert pq.read_table(path).to_pylist()[0]["acc_natural"] == pytest.approx(0.9)
    assert [p.name for p in trial_files(tmp_path)] == [path.name]  # and no temporary file beside it


def test_a_row_that_cannot_be_serialised_leaves_the_previous_file_intact(tmp_path):
    path = write_trial(tmp_path, make_row(CROPD, metrics=trial_metrics(0.9)))
    before = path.read_bytes()
    bad = make_row(CROPD, metrics=trial_metrics(0.1), minutes=1)
    bad["device"] = object()  # e.g. a torch.device slipped into `extra`
    with pytest.raises((pa.ArrowException, TypeError)):
        write_trial(tmp_path, bad)
    _assert_previous_intact(tmp_path, before)


def test_pyarrow_failing_mid_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = write_trial(tmp_path, make_row(CROPD, metrics=trial_metrics(0.9)))
    before = path.read_bytes()
    real_write_table = pq.write_table

    def write_half_then_fail(table, where, **kwargs):
        scratch = io.BytesIO()
        real_write_table(table, scratch, **kwargs)
        where.write(scratch.getvalue()[: len(scratch.getvalue()) // 2])
        raise OSError("disk quota exceeded")

    monkeypatch.setattr(parquet.pq, "write_table", write_half_then_fail)
    with pytest.raises(OSError, match="quota"):
        write_trial(tmp_path, make_row(CROPD, metrics=trial_metrics(0.1), minutes=1))
    _assert_previous_intact(tmp_path, before)


def test_a_crash_while_the_file_is_written_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    path = write_trial(tmp_path, make_row(CROPD, metrics=trial_metrics(0.9)))
    before = path.read_bytes()
    seen = []

    def fail_fsync(fd):
        seen.append([p.name for p in trial_files(tmp_path)])  # the temporary exists at this point
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", fail_fsync)
    with pytest.raises(OSError, match="I/O error"):
        write_trial(tmp_path, make_row(CROPD, metrics=trial_metrics(0.1), minutes=1))
    monkeypatch.undo()
    assert len(seen) == 1 and len(seen[0]) == 2 and any(name.endswith(".tmp") for name in seen[0])
    _assert_previous_intact(tmp_path, before)


# --- (f) per-epoch records -------------------------------------------------------------------------


def test_epoch_log_resumes_and_replaces_an_epoch_instead_of_duplicating_it(tmp_path):
    identity = {"sweep": "demo", "trial_id": "t0", "config_hash": key(CROPD)}
    log = EpochLog(tmp_path, key(CROPD), identity)
    log.add({"stage": "preprocessor", "epoch": 0, "loss": 2.0, "lr": 1e-4})
    log.add({"stage": "preprocessor", "epoch": 1, "loss": 1.5, "lr": 1e-4})

    resumed = EpochLog(tmp_path, key(CROPD), {**identity, "trial_id": "t1"})  # the trial restarted in a new worker
    assert sorted(resumed.records) == [("preprocessor", 0), ("preprocessor", 1)]
    resumed.add({"stage": "preprocessor", "epoch": 1, "loss": 1.25, "lr": 1e-4})  # epoch 1 run again
    resumed.add({"stage": "head", "epoch": 0, "loss": 0.5, "milestones": [30, 70]})

    frame = query.frame(query.connect(tmp_path), "SELECT * FROM epochs ORDER BY stage DESC, epoch")
    assert list(zip(frame["stage"], frame["epoch"])) == [("preprocessor", 0), ("preprocessor", 1), ("head", 0)]
    assert frame["loss"].tolist() == [2.0, 1.25, 0.5]
    assert frame["trial_id"].tolist() == ["t0", "t1", "t1"] and set(frame["config_hash"]) == {key(CROPD)}
    assert frame["recorded_at"].notna().all()
    assert json.loads(frame["milestones"].iloc[2]) == [30, 70]
    assert [p.name for p in (tmp_path / "results" / "epochs").iterdir()] == [f"{key(CROPD)}.parquet"]


# --- (g) the results and status commands -----------------------------------------------------------


def write_state(sweep_dir, num_trials: int) -> None:
    """sweep.json as runner.write_state writes it."""
    atomic_write_json(
        sweep_dir / "sweep.json",
        {
            "name": "demo",
            "plan_hash": "0123456789abcdef",
            "plan": {"mode": "grid", "points": num_trials},
            "num_trials": num_trials,
            "spec_path": str(sweep_dir / "demo.yaml"),
            "objectives": ["acc_pgd10"],
        },
    )


@pytest.fixture
def sweep_dir(tmp_path):
    sweep = tmp_path / "demo"
    write_state(sweep, num_trials=6)
    write_trial(sweep, make_row(CROPD, metrics=trial_metrics(0.9), minutes=0))
    write_trial(sweep, make_row(IDENTITY, metrics=trial_metrics(0.8, autoattack=False), minutes=1))
    write_trial(sweep, make_row(CROPD_1, status=ERROR, error="ValueError: boom", minutes=2))
    write_trial(
        sweep, make_row(dict(CROPD_1, data={"dataset": "digits2", "seed": 1}), metrics=trial_metrics(0.7), minutes=3)
    )
    started = sweep / "trials" / "feedfacefeedface"  # started, no row yet (running or interrupted)
    atomic_write_json(started / "config.json", {"config": {}, "overrides": {}, "trial_id": "t9"})
    return sweep


ORDER = [key(CROPD), key(IDENTITY), key(CROPD_1), key(dict(CROPD_1, data={"dataset": "digits2", "seed": 1}))]


def test_results_csv_default_view(sweep_dir, capsys):
    assert main(["results", str(sweep_dir), "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert frame["config_hash"].tolist() == ORDER  # ordered by started_at
    assert frame["status"].tolist() == [TERMINATED, TERMINATED, ERROR, TERMINATED]
    # settings that vary are shown, constant ones are not
    assert {"preprocessor.kind", "preprocessor.lambda", "seed"} <= set(frame.columns)
    assert not {"dataset", "head.mode", "data_fraction", "git_revision", "error"} & set(frame.columns)
    # every accuracy of the contract, in table order (null where a trial did not measure it)
    assert [c for c in frame.columns if c.startswith("acc_")] == [
        f"acc_{m}{s}" for m in ACCURACY_NAMES for s in ("", "_lo", "_hi")
    ]
    assert frame["acc_pgd10_lo"].tolist()[:2] == pytest.approx([0.77, 0.67])
    assert frame["preprocessor.lambda"].isna().tolist() == [False, True, False, False]


def test_results_json_nulls_and_iso_timestamps(sweep_dir, capsys):
    assert main(["results", str(sweep_dir), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["config_hash"] for r in records] == ORDER
    assert records[1]["acc_autoattack"] is None  # NaN (not run) -> null
    assert all(records[2][f"acc_{m}"] is None for m in ("natural", "pgd10", "pgd20", "autoattack"))  # the ERROR row
    assert records[0]["acc_natural"] == pytest.approx(0.9) and records[1]["preprocessor.lambda"] is None

    sql = "SELECT config_hash, started_at, finished_at, n_natural FROM trials ORDER BY started_at"
    assert main(["results", str(sweep_dir), "--sql", sql, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [datetime.fromisoformat(r["started_at"]) for r in records] == [T0 + timedelta(minutes=m) for m in range(4)]
    assert records[0]["finished_at"].startswith("2025-03-01T12:00:42.123456")
    assert [r["n_natural"] for r in records] == [200, 200, None, 200]


def test_results_sql_with_where(sweep_dir, capsys):
    sql = 'SELECT config_hash, "preprocessor.lambda" AS lam FROM trials WHERE "preprocessor.lambda" = 10'
    assert main(["results", str(sweep_dir), "--sql", sql, "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert frame.to_dict("records") == [{"config_hash": key(CROPD), "lam": 10.0}]

    sql = "SELECT status, count(*) AS n FROM trials GROUP BY status ORDER BY status"
    assert main(["results", str(sweep_dir), "--sql", sql, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"status": ERROR, "n": 1}, {"status": TERMINATED, "n": 3}]


def test_results_table_is_not_folded_off_a_terminal(sweep_dir, capsys):
    assert main(["results", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "config_hash" in line)
    assert "acc_autoattack_hi" in header and len(header) > 120  # one line, all columns, wider than 80
    for h in ORDER:
        assert h in out
    assert "ERROR" in out and "0.9000" in out and out.rstrip().endswith("4 rows")


@pytest.mark.parametrize(
    "sql", ["SELEC * FROM trials", "SELECT no_such_column FROM trials", "SELECT * FROM nowhere", "   "]
)
def test_results_bad_sql_is_one_line_and_exit_2(sweep_dir, capsys, sql):
    assert main(["results", str(sweep_dir), "--sql", sql]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("orchestrator: error: --sql:") and "\n" not in err and "Traceback" not in err, err
    assert captured.out == ""


def test_results_of_something_not_a_sweep_is_a_user_error(tmp_path, capsys):
    assert main(["results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"orchestrator: error: {tmp_path}: not a sweep directory (no sweep.json)"
    assert main(["results", str(tmp_path / "missing.yaml")]) == 2
    assert "no such sweep directory or spec file" in capsys.readouterr().err


def test_results_and_status_of_a_sweep_without_rows_yet(tmp_path, capsys):
    write_state(tmp_path, num_trials=3)
    assert main(["results", str(tmp_path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert (
        main(
            [
                "results",
                str(tmp_path),
                "--sql",
                "SELECT count(*) AS n FROM epochs WHERE stage = 'head'",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    assert pd.read_csv(io.StringIO(capsys.readouterr().out))["n"].tolist() == [0]
    assert main(["status", str(tmp_path)]) == 0
    assert "3 planned, 0 finished, 0 failed, 0 stopped, 0 started, 3 not started" in capsys.readouterr().out


def test_status_counts_on_the_same_sweep(sweep_dir, capsys):
    assert main(["status", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert f"sweep {sweep_dir}: 6 planned, 3 finished, 1 failed, 0 stopped, 1 started, 1 not started" in out
    assert "failed: ValueError: boom" in out
    for h in ORDER:
        assert h[:8] in out
