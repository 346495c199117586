"""Trained models out of a sweep: orchestrator.load_pipeline and `orchestrator export`, on a real sweep
(the run's shared finished one, tests/integration/conftest.py, only read here).

The export is loaded in a fresh process with torch.export alone (no code of ours builds the model)
and must give back the trial's natural accuracy exactly, point for point.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import orchestrator
from orchestrator.analysis.frames import load_examples
from orchestrator.cli.app import main
from orchestrator.store.paths import SweepPaths
from orchestrator.store.query import load_trials
from trainables.data import load_dataset
from trainables.errors import UserError

pytestmark = pytest.mark.integration


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture
def sweep(finished_sweep):
    return finished_sweep.sweep_dir


def _natural(sweep_dir: Path, config_hash: str):
    examples = load_examples(sweep_dir, [config_hash])
    natural = examples[examples["attack"] == "natural"].sort_values("index")
    return natural["index"].to_list(), natural["correct"].to_list()


def test_load_pipeline_gives_the_trials_model_point_for_point(sweep):
    trials = load_trials(sweep)
    cropd = trials[trials["preprocessor.kind"] == "cropd"].iloc[0]
    model = orchestrator.load_pipeline(sweep, cropd["config_hash"][:8])  # the prefix `status` prints
    assert not model.training and type(model.preprocessor).__name__ == "MaskedAutoencoder"
    indices, correct = _natural(sweep, cropd["config_hash"])
    test = load_dataset("digits2", "test")
    with torch.no_grad():
        predicted = model(test.float_images(torch.tensor(indices))).argmax(1)
    assert (predicted == test.labels[indices]).tolist() == correct
    assert sum(correct) / len(correct) == cropd["acc_natural"]


def test_an_export_loads_in_a_fresh_process_with_torch_alone_and_reproduces_natural_accuracy(sweep, tmp_path):
    trials = load_trials(sweep)
    row = trials[trials["preprocessor.kind"] == "cropd"].iloc[0]
    out = tmp_path / "export"
    assert main(["export", str(sweep), row["config_hash"][:8], "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.pt2", "model_card.json"]
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []  # no scratch left
    assert out.stat().st_mode & 0o077 == (0o777 & ~_umask()) & 0o077  # readable as the umask allows

    card = json.loads((out / "model_card.json").read_text())
    assert card["config_hash"] == row["config_hash"] and card["dataset"]["name"] == "digits2"
    assert card["threat_model"] == {"norm": "Linf", "eps": row["eps"]}
    assert card["accuracy"]["natural"]["accuracy"] == row["acc_natural"]
    assert card["accuracy"]["natural"]["test_points"] == row["n_natural"] == 40
    # No AutoAttack was run: none reported; the worst case is natural AND PGD-10 AND PGD-20 per point.
    assert set(card["accuracy"]) == {"natural", "pgd10", "pgd20", "worst"}
    assert card["config"]["preprocessor"]["kind"] == "cropd"

    indices, correct = _natural(sweep, row["config_hash"])
    test = load_dataset("digits2", "test")
    images, labels = tmp_path / "images.pt", tmp_path / "labels.pt"
    torch.save(test.float_images(torch.tensor(indices)), images)
    torch.save(test.labels[indices], labels)
    # Only torch in the fresh process: no path to this repository, no import of ours.
    script = f"""
import json, sys, torch
assert not any(name.split('.')[0] in ('trainables', 'orchestrator') for name in sys.modules)
model = torch.export.load({str(out / "model.pt2")!r}).module()
images, labels = torch.load({str(images)!r}), torch.load({str(labels)!r})
with torch.no_grad():
    print(json.dumps((model(images).argmax(1) == labels).tolist()))
assert not any(name.split('.')[0] in ('trainables', 'orchestrator') for name in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == correct


def test_exports_and_loads_refuse_what_they_cannot_do_in_one_line(sweep, tmp_path, capsys):
    trials = load_trials(sweep)
    identity = trials[trials["preprocessor.kind"] == "identity"].iloc[0]["config_hash"]
    taken = tmp_path / "taken"
    taken.mkdir()
    for args, fragment in [
        (["export", str(sweep), "ffffffff", "-o", str(tmp_path / "a")], "no trial 'ffffffff'"),
        (["export", str(sweep), identity[:8], "-o", str(taken)], "exists"),
    ]:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0]
    assert not (tmp_path / "a").exists()

    # A trial that started but has no row yet (running, or its driver killed): "not finished",
    # not "no trial" as it once said.
    running = tmp_path / "running"
    shutil.copytree(sweep, running)
    row_file = running / "results" / "trials" / f"{identity}.parquet"
    assert row_file.is_file()
    row_file.unlink()
    assert main(["export", str(running), identity[:8], "--output", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"trial {identity[:8]} has not finished" in err[0]
    assert not (tmp_path / "b").exists()

    # A trial whose head checkpoints are gone cannot be rebuilt without training: refused, not retrained.
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    shutil.rmtree(SweepPaths(copy).workdir(identity) / "head.checkpoints")
    with pytest.raises(UserError, match="head stage would train again"):
        orchestrator.load_pipeline(copy, identity)
