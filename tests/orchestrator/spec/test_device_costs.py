"""One cost estimator: `plan --device h200` costs each stage from trials that ran on the device, else
from its measured rates (orchestrator/spec/device_costs.py); unknown, never 0, where neither can.

The shipped specs are planned as a user would (nothing is written); the rate model's figures are
recomputed here from the measured file for one stage of each kind, so a change of model or file
that moves them fails.
"""

from __future__ import annotations

import json

import pytest
from store_helpers import add_trial

from orchestrator.cli.app import main
from orchestrator.spec.device_costs import DEVICES, Rates
from orchestrator.spec.sweep_spec import load_spec
from trainables.schema import validate_trial_config
from trainables.schema.data import SPLIT_SIZES


def _plan(capsys, *args) -> dict:
    assert main(["plan", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_stage_of_a_paper_spec_is_costed_from_the_h200_rates(tmp_path, capsys):
    assert "h200" in DEVICES
    plan = _plan(capsys, "search_spaces/lambda_ablation.yaml", "--device", "h200", "--history", str(tmp_path))
    assert plan["device"] == "h200" and plan["unestimated_stages"] == 0
    assert all("H200 rates" in stage["basis"] for stage in plan["stages"])
    assert plan["total_s"] == pytest.approx(sum(stage["estimate_s"] for stage in plan["stages"]))
    # CRoPD's pre-processor: epochs x training images / the measured CRoPD step rate at each batch
    # size of its schedule (lambda_ablation: 32 for 150 epochs, then 256).
    spec = load_spec("search_spaces/lambda_ablation.yaml")
    point = next(p for p in spec.grid_points if p.get("preprocessor.kind", "cropd") == "cropd")
    config = validate_trial_config(spec.trial_config(point))
    pre, data = config["preprocessor"], config["data"]
    rates = Rates.of_device("h200")
    images = SPLIT_SIZES[data["dataset"]][0] * data["data_fraction"]
    switch, later = next(iter(pre["batch_size_schedule"].items()))
    expected = images * (
        switch / rates.preprocessor("cropd", pre["arch"], pre["batch_size"])
        + (pre["epochs"] - switch) / rates.preprocessor("cropd", pre["arch"], later)
    )
    lam = point.get("preprocessor.lambda", pre["lambda"])
    stage = next(s for s in plan["stages"] if s["label"].startswith(f"cropd lambda {lam:g} "))
    assert stage["estimate_s"] == pytest.approx(expected, rel=1e-9)


def test_without_a_device_the_same_spec_is_unknown_not_zero(tmp_path, capsys):
    plan = _plan(capsys, "search_spaces/lambda_ablation.yaml", "--history", str(tmp_path))
    assert plan["device"] is None and plan["total_s"] is None and plan["wall_s"] is None
    assert plan["unestimated_stages"] == len(plan["stages"])


def test_the_embedded_studies_have_no_device_rate_and_say_unknown(tmp_path, capsys):
    plan = _plan(capsys, "search_spaces/quickstart.yaml", "--device", "h200", "--history", str(tmp_path))
    assert plan["total_s"] is None and all(stage["estimate_s"] is None for stage in plan["stages"])
    assert "its rates do not cost it" in plan["stages"][0]["basis"]


def test_earlier_trials_count_only_where_they_ran_on_the_device(tmp_path, capsys):
    """A CPU sweep's stage times are no estimate of an H200's: with --device they are set aside."""
    history = tmp_path / "runs" / "earlier"
    history.mkdir(parents=True)
    (history / "sweep.json").write_text("{}")
    for minute, device in enumerate(("cpu", "NVIDIA H200")):
        add_trial(
            history,
            kind="identity",
            seed=minute,
            natural=0.5,
            pgd20=0.1,
            minute=minute,
            dataset="digits",
            extra_metrics={
                "device_name": device,
                "n_natural": 450,
                "time_head_s": 10.0 * (minute + 1),
                "head.epochs": 150,  # what the stage's work is scaled by, and what it is matched on
                "foundation.mode": "frozen",
            },
        )
    base = ["search_spaces/quickstart.yaml", "--history", str(tmp_path / "runs")]
    heads = [s for s in _plan(capsys, *base, "--device", "h200")["stages"] if s["kind"] == "head"]
    identity = next(s for s in heads if "identity" in s["label"])
    assert "on NVIDIA H200" in identity["basis"] and identity["estimate_s"] is not None
    anywhere = next(s for s in _plan(capsys, *base)["stages"] if s["kind"] == "head" and "identity" in s["label"])
    assert anywhere["estimate_s"] is not None  # without --device every earlier trial counts
    with pytest.raises(SystemExit):
        main(["plan", *base, "--device", "tpu"])  # not a measured device: argparse's own refusal
    assert "invalid choice: 'tpu'" in capsys.readouterr().err
