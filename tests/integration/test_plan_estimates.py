"""`orchestrator plan`'s estimates from the stage times an earlier sweep recorded: the nearest
settings, scaled by the work (the plan itself, without history, is tests/orchestrator/cli/test_plan.py).

The history is a real one-trial sweep of its own: the estimates are checked against that one
trial's recorded times, which a sweep of several trials would leave ambiguous."""

from __future__ import annotations

import json
import shutil
import tempfile

import pytest
from sweep_helpers import write_spec

from orchestrator.backends.local import LocalBackend
from orchestrator.cli.app import main
from orchestrator.engine.runner import run_sweep
from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.query import load_trials

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def history(tmp_path_factory, cache_root, tiny_foundation_config, tiny_arch):
    folder = tmp_path_factory.mktemp("plan")
    spec_path = write_spec(folder, tiny_foundation_config, tiny_arch, grid={"preprocessor.kind": ["cropd"]})
    sweep_dir = folder / "runs" / "tiny"
    backend = LocalBackend(temp_dir=tempfile.mkdtemp(prefix="cr-", dir="/tmp"))
    assert run_sweep(load_spec(spec_path), sweep_dir, backend=backend, live=False).done == 1
    return spec_path, sweep_dir


def test_estimates_scale_the_nearest_earlier_stage_by_its_work(history, capsys):
    spec_path, sweep_dir = history
    row = load_trials(sweep_dir).iloc[0]
    # the same trial with 4x the pre-processor epochs and half the test points
    args = ["plan", str(spec_path), "preprocessor.epochs=12", "evaluation.n_examples=20"]
    assert main([*args, "--history", str(sweep_dir.parent), "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    stages = {stage["kind"]: stage for stage in plan["stages"]}
    assert stages["pre-processor"]["estimate_s"] == pytest.approx(row["time_preprocessor_s"] * 4)
    assert stages["evaluation"]["estimate_s"] == pytest.approx(row["time_evaluation_s"] * 20 / 40)
    assert stages["head"]["estimate_s"] == pytest.approx(row["time_head_s"])
    assert f"tiny/{row['config_hash'][:8]}" in stages["pre-processor"]["basis"]
    assert "same settings" in stages["head"]["basis"]
    assert plan["total_s"] == pytest.approx(sum(s["estimate_s"] for s in plan["stages"]))
    # another kind has no earlier trial: said, and left out of the total
    assert main([*args, "grid.0.preprocessor.kind=[arae]", "--history", str(sweep_dir.parent), "--format", "json"]) == 0
    arae = {s["kind"]: s for s in json.loads(capsys.readouterr().out)["stages"]}
    assert arae["pre-processor"]["estimate_s"] is None and "no earlier trial" in arae["pre-processor"]["basis"]


def test_a_slurm_plan_shows_the_script_and_warns_when_the_time_limit_cannot_cover_it(history, capsys):
    spec_path, sweep_dir = history
    args = ["plan", str(spec_path), "preprocessor.epochs=30000", "--history", str(sweep_dir.parent)]
    assert main([*args, "--backend", "slurm", "--time", "10", "--partition", "gpu"]) == 0
    out = capsys.readouterr().out
    # The script, with or without Slurm here (it once needed Slurm installed to be shown at all).
    assert "#SBATCH --partition=gpu" in out and "#SBATCH --time=10" in out
    if shutil.which("srun") is None or shutil.which("sbatch") is None:  # a machine without Slurm
        assert "sbatch --test-only: not asked: no Slurm here" in out
    else:  # and sbatch's own verdict (tests/slurm/test_slurm_cluster.py checks both on a real one)
        assert "sbatch --test-only: accepted" in out or "sbatch --test-only: REFUSED" in out
    assert "warning: the estimated wall time" in out and "raise --time" in out


def test_a_fine_tuned_foundations_head_is_not_estimated_from_a_head_on_cached_features(history, capsys):
    spec_path, sweep_dir = history
    args = ["plan", str(spec_path), "foundation.mode=finetune", "--history", str(sweep_dir.parent), "--format", "json"]
    assert main(args) == 0
    head = {s["kind"]: s for s in json.loads(capsys.readouterr().out)["stages"]}["head"]
    assert head["estimate_s"] is None and "no earlier trial" in head["basis"]
