"""`orchestrator status`: running trials with their settings and stage, queued ones, time left.

A sweep folder as the engine writes it (sweep.json and the spec's copy by write_state; a finished
trial's row; a started trial's folder with its config and progress file), for a grid of Identity
and Vanilla over seeds 0 to 2 (6 trials): one finished, one running, four queued. Estimates come
from the finished trial's recorded stage times (spec/queue.py).
"""

from __future__ import annotations

import json
import time

import pytest
from store_helpers import T0

from orchestrator.cli.app import main
from orchestrator.engine.folder import write_state
from orchestrator.spec.queue import settings_text, sweep_queue
from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.parquet import write_trial
from orchestrator.store.paths import SweepPaths
from orchestrator.store.rows import trial_row
from trainables.artifacts import config_hash
from trainables.schema import validate_trial_config
from trainables.stage_progress import PROGRESS_FILE

SPEC = """
name: live
trial:
  data: {dataset: digits2}
  preprocessor: {kind: identity}
grid:
  preprocessor.kind: [identity, vanilla]
  seed: [0, 1, 2]
objectives: {val_acc_natural: max}
resources: {cpu: 1}
max_concurrent: 2
"""


def _sweep(tmp_path, *, copy_spec: bool = True):
    spec_path = tmp_path / "live.yaml"
    spec_path.write_text(SPEC)
    spec = load_spec(spec_path)
    sweep_dir = tmp_path / "runs" / "live"
    write_state(spec, sweep_dir)
    if not copy_spec:
        SweepPaths(sweep_dir).spec_copy.unlink()
    configs = {
        (point["preprocessor.kind"], point["seed"]): validate_trial_config(spec.trial_config(point))
        for point in spec.grid_points
    }
    keys = {point: config_hash(config) for point, config in configs.items()}
    # Vanilla seed 0 finished: 60 s pre-processor, 5 s head, 15 s evaluation.
    write_trial(
        sweep_dir,
        trial_row(
            sweep="live",
            trial_id="t-done",
            config_hash=keys[("vanilla", 0)],
            config=configs[("vanilla", 0)],
            status="TERMINATED",
            metrics={
                "acc_natural": 0.9,
                "n_natural": 91,
                "time_preprocessor_s": 60.0,
                "time_head_s": 5.0,
                "time_evaluation_s": 15.0,
            },
            error=None,
            started_at=T0,
            finished_at=T0,
        ),
    )
    # Vanilla seed 1 running: its folder, config and where it is.
    paths = SweepPaths(sweep_dir)
    running = keys[("vanilla", 1)]
    paths.workdir(running).mkdir(parents=True)
    overrides = ["preprocessor.kind", "seed"]
    paths.trial_config(running).write_text(
        json.dumps({"config": configs[("vanilla", 1)], "overrides": overrides, "trial_id": "t-run"})
    )
    (paths.workdir(running) / PROGRESS_FILE).write_text(
        json.dumps({"stage": "preprocessor vanilla", "text": "epoch 3/20", "at": time.time()})
    )
    return sweep_dir, keys


def test_status_lists_running_and_queued_trials_by_their_settings_with_the_time_left(tmp_path, capsys):
    sweep_dir, keys = _sweep(tmp_path)
    assert main(["status", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    running = next(line for line in out.splitlines() if line.startswith(keys[("vanilla", 1)][:8]))
    # The running Vanilla needs its own pre-processor, head and evaluation: about 80 s in all.
    assert running.startswith(f"{keys[('vanilla', 1)][:8]} vanilla, seed 1: preprocessor vanilla: epoch 3/20")
    assert running.endswith("left") and "unknown" not in running
    assert "queued: 4" in out
    queued = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert [line.split(" (")[0] for line in queued] == [
        f"{keys[('identity', 0)][:8]} identity, seed 0",
        f"{keys[('identity', 1)][:8]} identity, seed 1",
        f"{keys[('identity', 2)][:8]} identity, seed 2",
        f"{keys[('vanilla', 2)][:8]} vanilla, seed 2",
    ]
    # Vanilla seed 2 needs all three stages of its own: 60 + 5 + 15 s, from the finished Vanilla.
    assert queued[3].endswith("(about 80 s)")
    time_left = next(line for line in out.splitlines() if line.startswith("time left:"))
    assert "wall at 2 at once" in time_left and "from 1 finished trials of this sweep and those beside it" in time_left

    assert main(["status", str(sweep_dir), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [entry["config_hash"] for entry in document["queued"]] == [
        keys[point] for point in (("identity", 0), ("identity", 1), ("identity", 2), ("vanilla", 2))
    ]
    assert document["queued"][3]["estimate_s"] == pytest.approx(80.0)
    (started,) = document["started"]
    assert (
        started["settings"] == {"preprocessor.kind": "vanilla", "seed": 1}
        and started["stage"] == "preprocessor vanilla"
    )
    assert 0 < started["estimate_left_s"] <= 80.0 and started["over_estimate_s"] == 0
    left = document["time_left"]
    assert left["at_once"] == 2 and left["from_finished_trials"] == 1 and left["sampled_later"] == 0
    assert left["trial_s"] >= 2 * 80.0  # Vanilla seeds 1 and 2 at least, each with its own stages


def test_without_the_spec_copy_status_still_answers_without_a_queue(tmp_path, capsys):
    sweep_dir, keys = _sweep(tmp_path, copy_spec=False)
    assert main(["status", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "queued" not in out and "time left" not in out and keys[("vanilla", 1)][:8] in out
    assert sweep_queue(sweep_dir, set(), set()) is None


def test_settings_read_as_a_person_writes_them():
    assert settings_text(
        {"preprocessor.kind": "cropd", "head.mode": "clean", "preprocessor.lambda": 10.0, "seed": 0}
    ) == ("cropd, λ=10, clean head, seed 0")
    assert settings_text({"evaluation.autoattack_examples": 450}) == "the base trial"


def test_a_trial_running_past_its_estimate_says_so_instead_of_zero_left(tmp_path, capsys):
    import os

    sweep_dir, keys = _sweep(tmp_path)
    running = keys[("vanilla", 1)]
    started = time.time() - 600  # ten minutes ago, for a trial estimated at 80 s
    os.utime(SweepPaths(sweep_dir).trial_config(running), (started, started))
    assert main(["status", str(sweep_dir)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(running[:8]))
    assert line.endswith("past its estimate") and "0 s left" not in line
