"""`status`, `results` and `pareto` on a real finished sweep agree with its rows and its plan.

The sweep is the run's shared finished one (tests/integration/conftest.py), only read here. Each
command's formats and edge cases are tested on hand-built stores (tests/orchestrator/store/
test_results.py, tests/orchestrator/analysis/test_analysis.py); this checks them on what the real
writers leave behind.
"""

from __future__ import annotations

import json

import pytest
from sweep_helpers import planned_hashes

from orchestrator.analysis import frames
from orchestrator.cli.app import main
from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.query import load_trials

pytestmark = pytest.mark.integration


def test_status_counts_every_planned_trial_finished(finished_sweep, capsys):
    planned = planned_hashes(load_spec(finished_sweep.spec_path))
    assert main(["status", str(finished_sweep.sweep_dir), "--format", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {
        "planned": 6,
        "finished": 6,
        "failed": 0,
        "stopped": 0,
        "started": 0,
        "not_started": 0,
    }
    assert sorted(t["config_hash"] for t in status["trials"]) == sorted(planned)
    assert {t["status"] for t in status["trials"]} == {"TERMINATED"}
    assert all(t["acc_natural"]["points"] == 40 and t["error"] is None for t in status["trials"])


def test_results_hold_one_row_per_trial_with_the_metrics_the_rows_hold(finished_sweep, capsys):
    trials = load_trials(finished_sweep.sweep_dir).set_index("config_hash")
    assert main(["results", str(finished_sweep.sweep_dir), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert sorted(r["config_hash"] for r in records) == sorted(trials.index)
    for record in records:
        row = trials.loc[record["config_hash"]]
        assert record["status"] == "TERMINATED" and record["seed"] == row["seed"]
        assert [record[f"acc_{m}"] for m in ("natural", "pgd10", "pgd20")] == [
            row[f"acc_{m}"] for m in ("natural", "pgd10", "pgd20")
        ]
        assert record["acc_autoattack"] is None  # not asked for: null


def test_pareto_lists_exactly_the_non_dominated_trials(finished_sweep, capsys):
    trials = frames.finished_trials(finished_sweep.sweep_dir)
    # A selection: on the validation metrics, and never a trial with an integrity flag.
    trials = trials[trials["integrity_flags"].fillna("").str.len() == 0]
    front = trials[frames.pareto_mask(trials["val_acc_natural"], trials["val_acc_pgd20"])]
    assert main(["pareto", str(finished_sweep.sweep_dir), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and sorted(r["config_hash"] for r in rows) == sorted(front["config_hash"])
