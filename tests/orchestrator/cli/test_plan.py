"""`orchestrator plan`: the planned trials and shared stages of a spec, and nothing written or run.

Estimates from the stage times an earlier sweep recorded (nearest settings, scaled by the work) need
a real sweep: tests/integration/test_plan_estimates.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.cli.app import main

REPO = Path(__file__).resolve().parents[3]
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
    # Unknown, not 0 s (as it once printed): no earlier sweep ran any of these stages.
    assert plan["unestimated_stages"] == len(plan["stages"]) and plan["total_s"] is None and plan["wall_s"] is None
    assert all(s["basis"] == "no earlier trial ran such a stage" for s in plan["stages"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-history"]  # nothing written


def test_a_bad_override_is_refused_by_plan_as_by_sweep(capsys):
    assert main(["plan", str(REPO / "search_spaces" / "quickstart.yaml"), "head.epochs=-3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "head.epochs" in err[0]


def test_without_any_estimate_the_text_says_unknown_not_zero_seconds(tmp_path, capsys):
    assert main(["plan", str(REPO / "search_spaces" / "quickstart.yaml"), "--history", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "estimated total: unknown" in out and "wall unknown" in out
    assert " 0 s" not in out


def test_a_history_folder_that_does_not_exist_is_refused(tmp_path, capsys):
    missing = tmp_path / "runs-typo"
    assert main(["plan", str(REPO / "search_spaces" / "quickstart.yaml"), "--history", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--history {missing}: no such folder" in err[0]


def test_gpus_this_machine_does_not_have_are_said_to_stop_the_sweep_here(monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU visible, whatever this machine has
    assert main(["plan", str(REPO / "search_spaces" / "quickstart.yaml"), "resources.gpu=8", "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    # Once: "at most 0 per GPU", and nothing said the sweep would refuse.
    assert plan["at_once"] == 0 and plan["wall_s"] is None
    assert (
        plan["at_once_why"].startswith("no trial fits here: ")
        and "0 GPUs here / gpu 8 per trial" in plan["at_once_why"]
    )
    assert "`sweep` would refuse to start on this machine" in plan["at_once_why"]


def test_gpus_bound_how_many_trials_run_at_once(monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    spec = str(REPO / "search_spaces" / "quickstart.yaml")
    assert main(["plan", spec, "resources.gpu=1", "resources.cpu=0.01", "max_concurrent=null", "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["at_once"] == 2 and "2 GPUs here / gpu 1 per trial" in plan["at_once_why"]
