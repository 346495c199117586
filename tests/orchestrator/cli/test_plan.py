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
    assert plan["unestimated_stages"] == len(plan["stages"]) and plan["total_s"] == 0
    assert all(s["basis"] == "no earlier trial ran such a stage" for s in plan["stages"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-history"]  # nothing written


def test_a_bad_override_is_refused_by_plan_as_by_sweep(capsys):
    assert main(["plan", str(REPO / "search_spaces" / "quickstart.yaml"), "head.epochs=-3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "head.epochs" in err[0]
