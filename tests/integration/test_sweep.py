"""The sweep engine end to end on real Ray Tune, Optuna and Parquet: results, failures, resume.

Trials are tiny (a 2-epoch embedded foundation, a 1-layer auto-encoder, 40 test points) so a
whole sweep is tens of seconds. Kills of the driver, of workers and of the whole process group,
and the resumes after them, are tests/chaos/test_kills.py's; the sweep folder's checks before Ray
starts (a changed plan, a request no node can hold) are tests/orchestrator/engine/test_sweep_folder.py.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile

import optuna
import pyarrow.parquet as pq
import pytest
from sweep_helpers import planned_hashes, write_spec

from orchestrator.backends.local import LocalBackend
from orchestrator.engine.runner import run_sweep
from orchestrator.engine.search import journal_storage
from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store import cache as results_cache
from orchestrator.store.paths import SweepPaths
from orchestrator.store.query import connect, load_trials

pytestmark = pytest.mark.integration


def _dashboard_get(app, path: str) -> dict:
    """GET `path` from optuna-dashboard's WSGI app, as its web page does, without a server."""
    from wsgiref.util import setup_testing_defaults

    environ: dict = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"], environ["QUERY_STRING"] = path, "after=0"
    status = []
    body = b"".join(app(environ, lambda code, headers, exc_info=None: status.append(code)))
    assert status == ["200 OK"], (status, body[:200])
    return json.loads(body)


@pytest.fixture
def ray_temp_dir():
    # Ray's unix sockets live here; the path must be short, and each run gets its own.
    folder = tempfile.mkdtemp(prefix="cr-", dir="/tmp")
    yield folder


def test_sweep_runs_each_planned_trial_once_and_writes_parquet(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch, ray_temp_dir
):
    spec = load_spec(write_spec(tmp_path, tiny_foundation_config, tiny_arch))
    sweep_dir = tmp_path / "runs" / "tiny"
    outcome = run_sweep(spec, sweep_dir, backend=LocalBackend(temp_dir=ray_temp_dir), live=False)
    assert (outcome.done, outcome.failed, outcome.unfinished, outcome.resumed) == (3, 0, 0, False)

    # The driver left every trial's row in one file for readers (results_cache.py), and readers use it.
    cache = SweepPaths(sweep_dir).results.cache_of("trials")
    assert pq.read_metadata(cache).num_rows == 3
    assert results_cache.snapshot(SweepPaths(sweep_dir).results.trials).uncovered == []
    trials = load_trials(sweep_dir)
    assert sorted(trials["config_hash"]) == sorted(planned_hashes(spec))
    assert set(trials["status"]) == {"TERMINATED"} and trials["error"].isna().all()
    assert set(trials["sweep"]) == {"tiny"} and trials["trial_id"].nunique() == 3
    for metric in ("acc_natural", "acc_pgd10", "acc_pgd20"):
        assert ((trials[f"{metric}_lo"] <= trials[metric]) & (trials[metric] <= trials[f"{metric}_hi"])).all()
    assert trials["acc_autoattack"].isna().all()  # not asked for: null, never 0
    assert (trials["finished_at"] > trials["started_at"]).all()
    # Where each ran: this machine, no GPU given or asked for.
    assert set(trials["node"]) == {socket.gethostname()} and trials["gpu_ids"].isna().all()
    assert set(trials["gpus"]) == {0}
    by_kind = trials.set_index("preprocessor.kind", drop=False)
    assert by_kind.loc["identity", "params_preprocessor"] == 0
    assert (trials.loc[trials["preprocessor.kind"] == "cropd", "params_preprocessor"] > 0).all()

    # Per-epoch rows: every epoch of each stage exactly once.
    epochs = (
        connect(sweep_dir)
        .execute(
            'SELECT t."preprocessor.kind" AS kind, e.stage, count(*) AS n, count(DISTINCT e.epoch) AS distinct_epochs '
            "FROM epochs e JOIN trials t USING (config_hash) GROUP BY ALL ORDER BY ALL"
        )
        .fetchall()
    )
    assert epochs == [("cropd", "head", 6, 3), ("cropd", "preprocessor", 6, 3), ("identity", "head", 3, 3)]
    assert connect(sweep_dir).execute("SELECT DISTINCT node FROM epochs").fetchall() == [(socket.gethostname(),)]

    # The Optuna study lives in the sweep's journal file with both objectives of every trial.
    study = optuna.load_study(study_name="tiny", storage=journal_storage(sweep_dir))
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(tuple(t.values) for t in completed) == sorted(zip(trials["val_acc_natural"], trials["val_acc_pgd20"]))
    # Named objectives, and each Optuna trial tagged with its config hash and folder (a link to its row).
    assert study.metric_names == ["val_acc_natural", "val_acc_pgd20"]
    assert sorted(t.user_attrs["config_hash"] for t in completed) == sorted(trials["config_hash"])
    assert all((sweep_dir / t.user_attrs["trial_folder"] / "config.json").is_file() for t in completed)
    # optuna-dashboard (the `dashboard` extra) reads the same journal through its own server code.
    dashboard = pytest.importorskip("optuna_dashboard", reason="the dashboard extra is not installed")
    shown = _dashboard_get(dashboard.wsgi(journal_storage(sweep_dir)), f"/api/studies/{study._study_id}")
    assert shown["objective_names"] == ["val_acc_natural", "val_acc_pgd20"]
    tags = [{a["key"]: a["value"] for a in t["user_attrs"]} for t in shown["trials"] if t["state"] == "Complete"]
    assert sorted(tag["config_hash"] for tag in tags) == sorted(trials["config_hash"])

    # Running the same command again resumes a finished sweep: nothing reruns, nothing is added.
    again = run_sweep(spec, sweep_dir, backend=LocalBackend(temp_dir=ray_temp_dir), live=False)
    assert again.resumed and again.done == 3
    after = load_trials(sweep_dir)
    assert len(after) == 3
    assert sorted(after["finished_at"]) == sorted(trials["finished_at"])

    # The Parquet rows, not Tune's state, say what is finished: a driver killed before Tune saved
    # its state restarts trials Tune thinks are unfinished, and they must find their rows and stop.
    shutil.rmtree(sweep_dir / "ray")
    fresh = run_sweep(spec, sweep_dir, backend=LocalBackend(temp_dir=ray_temp_dir), live=False)
    assert fresh.done == 3
    assert sorted(load_trials(sweep_dir)["finished_at"]) == sorted(trials["finished_at"])
    assert connect(sweep_dir).execute("SELECT count(*) FROM epochs").fetchone() == (15,)


def test_a_failing_trial_is_recorded_with_its_reason_and_the_sweep_goes_on(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch, ray_temp_dir
):
    empty_root = tmp_path / "no-data"
    empty_root.mkdir()
    path = write_spec(
        tmp_path,
        tiny_foundation_config,
        tiny_arch,
        name="fails",
        grid={"data.dataset": ["digits2", "cifar2"], "data.root": [str(empty_root)], "preprocessor.kind": ["identity"]},
        max_retries=0,
    )
    spec = load_spec(path)
    outcome = run_sweep(spec, tmp_path / "runs" / "fails", backend=LocalBackend(temp_dir=ray_temp_dir), live=False)
    assert (outcome.done, outcome.failed) == (1, 1)
    trials = load_trials(tmp_path / "runs" / "fails").set_index("dataset")
    assert trials.loc["digits2", "status"] == "TERMINATED" and 0 <= trials.loc["digits2", "acc_natural"] <= 1
    assert trials.loc["cifar2", "status"] == "ERROR"
    assert (
        trials.loc["cifar2", "error"].startswith("DataNotFoundError")
        and str(empty_root) in trials.loc["cifar2", "error"]
    )
    assert (
        trials.loc["cifar2", "acc_natural"] != trials.loc["cifar2", "acc_natural"]
    )  # NaN: no metric for a failed trial
