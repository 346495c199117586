"""Schedulers that stop bad trials early (orchestrator/spec/schedulers.py, stopped_trials.py), in real sweeps.

A real sweep (Ray Tune's ASHA, the CLI, Parquet): two trials one after the other, the second
attacked at eps 1 (the whole pixel range) by its validation probe, so its robust estimate is far
below the first's (measured with no attack) by construction, and ASHA stops it at its first rung.
The scheduler settings' checks and their mapping onto Ray Tune's schedulers are
tests/orchestrator/spec/test_scheduler_settings.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import optuna
import pytest
import yaml
from sweep_helpers import write_spec

from orchestrator.engine.search import journal_storage
from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.query import connect, frame, load_trials
from orchestrator.store.rows import STOPPED, TERMINATED

pytestmark = pytest.mark.integration

VALIDATION = {"every": 1, "points": 20, "fit_images": 40}


def _orchestrator(*args, cwd, env=None):
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def _two_trial_sweep(tmp_path, foundation, arch, monkeypatch, *, name: str, scheduler: dict, **top):
    """The sweep of the module docstring, run through the CLI; returns its spec file and folder."""
    spec_path = write_spec(
        tmp_path,
        foundation,
        arch,
        name=name,
        # The first trial's robust estimate is its natural accuracy (eps 0); the second's is under
        # an attack that may set every pixel to anything (eps 1).
        grid=[{"preprocessor.validation.eps": [0.0, 1.0]}],
        objectives={"val_acc_pgd10": "max"},
        max_concurrent=1,
        scheduler=scheduler,
        **top,
    )
    raw = yaml.safe_load(spec_path.read_text())
    raw["trial"]["preprocessor"]["validation"] = VALIDATION
    raw["trial"]["evaluation"]["attacks"] = ["pgd10"]
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("RAY_TMPDIR", tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    first = _orchestrator("sweep", str(spec_path), "--plain", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    return spec_path, tmp_path / "runs" / name


def test_asha_stops_the_weaker_trial_which_gets_a_stopped_row_and_stays_stopped(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch, monkeypatch
):
    spec_path, sweep_dir = _two_trial_sweep(
        tmp_path,
        tiny_foundation_config,
        tiny_arch,
        monkeypatch,
        name="sched",
        scheduler={"kind": "asha", "metric": "val_acc_pgd5", "grace_period": 1, "reduction_factor": 2},
        trackers=["mlflow"],
    )

    trials = load_trials(sweep_dir).set_index("preprocessor.validation.eps")
    assert trials.loc[0.0, "status"] == TERMINATED and trials.loc[1.0, "status"] == STOPPED
    stopped = trials.loc[1.0]
    assert stopped["stopped_epoch"] == 1 and stopped["error"] is None
    assert stopped["stop_reason"].startswith("stopped by asha on val_acc_pgd5 (max): val_acc_pgd5 = ")
    # Stopped while its pre-processor trained: no head, no evaluation; the epochs it did train are on record.
    epochs = frame(connect(sweep_dir), "SELECT * FROM epochs")
    mine = epochs[epochs["config_hash"] == stopped["config_hash"]]
    assert set(mine["stage"]) == {"preprocessor"} and 1 in set(mine["epoch"]) and len(mine) < 3
    measured = mine[mine["epoch"] == 1].iloc[0]
    kept = trials.loc[0.0, "config_hash"]
    best = epochs[(epochs["config_hash"] == kept) & (epochs["epoch"] == 1) & (epochs["stage"] == "preprocessor")]
    assert measured["val_acc_pgd5"] < best.iloc[0]["val_acc_pgd5"]

    # The tracker saw every epoch of both trials, the losses and the measurements, and the settings.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(sweep_dir / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("sched").experiment_id])
    by_eps = {float(run.data.params["preprocessor.validation.eps"]): run for run in runs}
    assert sorted(by_eps) == [0.0, 1.0]
    history = client.get_metric_history(by_eps[0.0].info.run_id, "val_acc_pgd5")
    kept_epochs = epochs[(epochs["config_hash"] == kept) & (epochs["stage"] == "preprocessor")]
    assert sorted(m.value for m in history) == sorted(kept_epochs["val_acc_pgd5"].tolist())
    assert len(client.get_metric_history(by_eps[0.0].info.run_id, "loss")) >= 3  # each pre-processor epoch
    assert by_eps[0.0].data.metrics["acc_pgd10"] == trials.loc[0.0, "acc_pgd10"]

    # Optuna's study has the stopped trial as pruned, not failed.
    study = optuna.load_study(study_name="sched", storage=journal_storage(sweep_dir))
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "PRUNED"]

    status = _orchestrator("status", str(sweep_dir), "--format", "json", cwd=tmp_path)
    counts = json.loads(status.stdout)["counts"]
    assert (counts["finished"], counts["stopped"], counts["not_started"]) == (1, 1, 0), status.stdout
    report = _orchestrator("report", str(sweep_dir), "--format", "json", cwd=tmp_path)
    assert [row["config_hashes"] for row in json.loads(report.stdout)["rows"]] == [[kept]], report.stdout

    # The same command again: nothing runs again, the STOPPED row stays as it was.
    again = _orchestrator("sweep", str(spec_path), "--plain", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    after = load_trials(sweep_dir).set_index("preprocessor.validation.eps")
    assert after.loc[1.0, "status"] == STOPPED and after.loc[1.0, "finished_at"] == stopped["finished_at"]
    assert load_spec(spec_path).scheduler.kind == "asha"


def test_in_a_search_optunas_pruner_stops_the_weaker_trial_on_the_same_measurements(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch, monkeypatch
):
    _, sweep_dir = _two_trial_sweep(
        tmp_path,
        tiny_foundation_config,
        tiny_arch,
        monkeypatch,
        name="pruned",
        scheduler={"kind": "median", "metric": "val_acc_pgd5", "grace_period": 1, "min_samples_required": 1},
        # Optuna samples the temperature for each grid point: a search, so its pruner decides.
        search={
            "trials": 0,
            "parameters": {"preprocessor.temperature": {"distribution": "uniform", "low": 0.4, "high": 0.6}},
        },
    )
    trials = load_trials(sweep_dir).set_index("preprocessor.validation.eps")
    assert trials.loc[0.0, "status"] == TERMINATED and trials.loc[1.0, "status"] == STOPPED
    assert trials.loc[1.0, "stop_reason"].startswith("stopped by median on val_acc_pgd5 (max) (Optuna's pruner): ")
    study = optuna.load_study(study_name="pruned", storage=journal_storage(sweep_dir))
    by_state = {t.state.name: t for t in study.trials}
    assert sorted(by_state) == ["COMPLETE", "PRUNED"]
    # The study holds the measurements as intermediate values, per pre-processor epoch.
    epochs = frame(connect(sweep_dir), "SELECT * FROM epochs WHERE stage = 'preprocessor'")
    kept = epochs[epochs["config_hash"] == trials.loc[0.0, "config_hash"]].set_index("epoch")["val_acc_pgd5"]
    assert by_state["COMPLETE"].intermediate_values == kept.to_dict()
    assert list(by_state["PRUNED"].intermediate_values) == [1]
