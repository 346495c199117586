"""Progress inside long stages: the trial's progress file (trainables/stage_progress.py), what the
training loop and the evaluation write into it while they run, and where it is shown (the sweep's
plain progress lines, `orchestrator status`).

The models here read the progress file from inside their own forward pass, so the tests see what a
person watching would have seen at that moment, not only what was left at the end.
"""

from __future__ import annotations

import io
import json

import pytest
import torch
from ray.tune.experiment import Trial

from orchestrator.cli.app import main
from orchestrator.engine.progress import SweepProgress
from trainables import stage_progress
from trainables.artifacts import atomic_write_json
from trainables.checkpointing import EpochCheckpoints
from trainables.data import ImageDataset
from trainables.evaluation import evaluate
from trainables.training_loop import fit_epochs


class Watching(torch.nn.Module):
    """A linear classifier that notes the progress file's text at every forward pass."""

    def __init__(self, workdir, size: int = 4, num_classes: int = 2):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3 * size * size, num_classes)
        self.workdir, self.seen = workdir, []

    def forward(self, x):
        record = stage_progress.read(self.workdir)
        self.seen.append(None if record is None else f"{record['stage']}: {record['text']}")
        return self.linear(x.flatten(1))


@pytest.fixture
def every_report(monkeypatch):
    """Every report written (the throttle of MIN_INTERVAL_S off), so the sequence is exact."""
    monkeypatch.setattr(stage_progress, "MIN_INTERVAL_S", 0.0)


def test_evaluation_says_which_attack_and_batch_while_it_runs(tmp_path, every_report):
    model = Watching(tmp_path).eval()
    images = torch.rand(10, 3, 4, 4)
    labels = model(images).argmax(1)  # all naturally correct: every point is attacked
    model.seen.clear()
    config = {"eps": 0.01, "attacks": ["pgd20"], "batch_size": 4, "integrity": False}
    with stage_progress.recording(tmp_path):
        evaluate(model, images, labels, config, num_classes=2, default_eps=0.01)
        assert (tmp_path / stage_progress.PROGRESS_FILE).is_file()
    assert not (tmp_path / stage_progress.PROGRESS_FILE).exists()  # gone once the stages end
    seen = [text for text in model.seen if text is not None and "PGD-20" in text]
    assert seen[0] == "evaluation: PGD-20: batch 1/3" and seen[-1] == "evaluation: PGD-20: batch 3/3"
    assert {"evaluation: PGD-20: batch 2/3"} <= set(seen)


def test_training_says_epoch_and_batch_and_nothing_is_written_outside_recording(tmp_path, every_report):
    model = Watching(tmp_path)
    data = ImageDataset(
        "blobs", torch.randint(0, 255, (12, 3, 4, 4), dtype=torch.uint8), torch.arange(12) % 2, ["a", "b"]
    )
    targets = data.labels

    def step(x, y):
        return {"loss": torch.nn.functional.cross_entropy(model(x), y)}

    cfg = {"epochs": 2, "batch_size": 4, "lr": 0.01, "weight_decay": 0.0, "warmup_epochs": 0, "seed": 0}
    kwargs = dict(seed_parts=("t",), record={"stage": "preprocessor"}, what="preprocessor cropd")
    with stage_progress.recording(tmp_path):
        fit_epochs(model, data, targets, step, cfg, checkpoints=EpochCheckpoints(tmp_path / "a", "k"), **kwargs)
    assert model.seen[0] == "preprocessor cropd: epoch 1/2, batch 1/3"
    assert model.seen[-1] == "preprocessor cropd: epoch 2/2, batch 3/3" and len(model.seen) == 6
    model.seen.clear()
    cfg["epochs"] = 3  # one more epoch, not inside recording: no file
    fit_epochs(model, data, targets, step, cfg, checkpoints=EpochCheckpoints(tmp_path / "a", "k"), **kwargs)
    assert model.seen == [None] * 3 and not (tmp_path / stage_progress.PROGRESS_FILE).exists()


def test_reports_are_throttled_but_a_stage_start_is_always_written(tmp_path):
    with stage_progress.recording(tmp_path):
        stage_progress.report("head (clean)", "epoch 1/150, batch 1/7", force=True)
        stage_progress.report("head (clean)", "epoch 1/150, batch 2/7")  # within MIN_INTERVAL_S: skipped
        assert stage_progress.read(tmp_path)["text"] == "epoch 1/150, batch 1/7"
        stage_progress.report("evaluation", "PGD-10: batch 1/4", force=True)
        assert stage_progress.read(tmp_path)["stage"] == "evaluation"


def test_the_plain_progress_lines_say_where_each_running_trial_is(tmp_path):
    out = io.StringIO()
    where = {"1": "preprocessor cropd: epoch 3/20, batch 5/14"}
    progress = SweepProgress(
        2,
        {"acc_natural": "max"},
        live=False,
        stream=out,
        where_of=lambda trial: where.get(str(trial.config["preprocessor.lambda"])),
    )
    trials = [Trial("sweep_trial", config={"preprocessor.lambda": lam}, stub=True) for lam in (1, 10)]
    for trial in trials:
        progress.on_trial_start(0, trials, trial)
    out.truncate(0)
    progress.on_step_end(0, trials)  # less than PLAIN_PROGRESS_S since the start: nothing yet
    assert out.getvalue() == ""
    progress._progress_printed -= 61
    progress.on_step_end(0, trials)
    (line,) = out.getvalue().splitlines()  # the trial that said nothing gets no line
    assert line.endswith("running lambda=1: preprocessor cropd: epoch 3/20, batch 5/14")


def test_status_shows_a_started_trials_progress(tmp_path, capsys):
    sweep = tmp_path / "demo"
    atomic_write_json(sweep / "sweep.json", {"name": "demo", "plan_hash": "0" * 16, "plan": {}, "num_trials": 2})
    workdir = sweep / "trials" / "feedfacefeedface"
    atomic_write_json(workdir / "config.json", {"config": {}, "overrides": {}})
    (sweep / "trials" / "0123456789abcdef").mkdir()  # a folder without config.json is no started trial
    with stage_progress.recording(workdir):  # as the trial's process does while its stages run
        stage_progress.report("evaluation", "PGD-20: batch 2/8", force=True)
        assert main(["status", str(sweep)]) == 0
        out = capsys.readouterr().out
        assert main(["status", str(sweep), "--format", "json"]) == 0
        (started,) = json.loads(capsys.readouterr().out)["started"]
    assert "1 started" in out and "feedface evaluation: PGD-20: batch 2/8 (0 s ago)" in out
    assert started["config_hash"] == "feedfacefeedface" and started["text"] == "PGD-20: batch 2/8"
    assert 0 <= started["seconds_ago"] < 60
