"""`plan` and `sweep` count this machine's GPUs and cores one way (orchestrator/spec/machine.py).

Once `plan` counted GPUs from the driver's /proc entries and `sweep` from torch, and cores from
os.cpu_count() against the process's affinity: a plan could say trials run where the sweep then
refused. Here both are asked under the same CUDA_VISIBLE_DEVICES and must agree.
"""

from __future__ import annotations

import json

import pytest

from orchestrator.cli.app import main
from orchestrator.engine.ray_cluster import RayCluster
from trainables.errors import ConfigError

SPEC = """
name: gpus
trial: {data: {dataset: digits2}, preprocessor: {kind: identity}}
grid: {seed: [0, 1, 2, 3]}
objectives: {val_acc_natural: max}
resources: {cpu: 1, gpu: %s}
"""


@pytest.mark.parametrize(("visible", "per_trial", "fits"), [("0,1", 1, True), ("0,1", 3, False), ("", 1, False)])
def test_plan_and_the_sweeps_check_agree_on_this_machines_gpus(tmp_path, capsys, monkeypatch, visible, per_trial, fits):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    spec = tmp_path / "gpus.yaml"
    spec.write_text(SPEC % per_trial)
    assert main(["plan", str(spec), "--history", str(tmp_path), "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["at_once"] > 0) == fits
    assert ("no trial fits here" in plan["at_once_why"]) == (not fits)
    check = RayCluster()
    if fits:
        check.check_resources({"cpu": 1, "gpu": per_trial}, str(spec))
    else:
        with pytest.raises(ConfigError):
            check.check_resources({"cpu": 1, "gpu": per_trial}, str(spec))
