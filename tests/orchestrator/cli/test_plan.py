"""`orchestrator plan`: the planned trials and shared stages of a spec, estimates from the stage
times earlier sweeps recorded (nearest settings, scaled by the work), and nothing written or run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sweep_helpers import write_spec

from orchestrator.backends.local import LocalBackend
from orchestrator.cli.app import main
from orchestrator.engine.runner import run_sweep
from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.query import load_trials

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "transformers", "torchvision")


def test_the_lambda_ablation_plan_counts_its_shared_stages_without_torch_and_writes_nothing(tmp_path):
    empty = tmp_path / "no-history"
    empty.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "orchestrator",
            "plan",
            str(REPO / "search_spaces" / "lambda_ablation.yaml"),
            "--history",
            str(empty),
            "--format",
            "json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "import time:" in line
    }
    assert not imported & set(HEAVY)
    plan = json.loads(result.stdout)
    kinds = [stage["kind"] for stage in plan["stages"]]
    # 18 trials; 5 pre-processors trained once each (Vanilla, ARAE, CRoPD x 3) for their 2 heads
    assert plan["trials"] == 18
    assert kinds.count("pre-processor") == 5 and kinds.count("head") == 18 and kinds.count("evaluation") == 18
    assert all(s["trials"] == 2 for s in plan["stages"] if s["kind"] == "pre-processor")
    assert plan["unestimated_stages"] == len(plan["stages"]) and plan["total_s"] == 0
    assert all(s["basis"] == "no earlier trial ran such a stage" for s in plan["stages"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-history"]  # nothing written


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
    if shutil.which("srun") is None or shutil.which("sbatch") is None:  # a machine without Slurm
        assert "sbatch --test-only: not asked: no Slurm here" in out and "#SBATCH" not in out
    else:  # the script and sbatch's own verdict (tests/test_slurm_cluster.py checks both on a real one)
        assert "#SBATCH --partition=gpu" in out and "#SBATCH --time=10" in out and "sbatch --test-only: " in out
    assert "warning: the estimated wall time" in out and "raise --time" in out


def test_a_bad_override_is_refused_by_plan_as_by_sweep(capsys):
    assert main(["plan", str(REPO / "search_spaces" / "quickstart.yaml"), "head.epochs=-3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "head.epochs" in err[0]


def test_a_fine_tuned_foundations_head_is_not_estimated_from_a_head_on_cached_features(history, capsys):
    spec_path, sweep_dir = history
    args = ["plan", str(spec_path), "foundation.mode=finetune", "--history", str(sweep_dir.parent), "--format", "json"]
    assert main(args) == 0
    head = {s["kind"]: s for s in json.loads(capsys.readouterr().out)["stages"]}["head"]
    assert head["estimate_s"] is None and "no earlier trial" in head["basis"]
