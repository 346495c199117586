"""Fractional GPUs on a machine without one: Ray started with declared GPUs packs the trials as asked.

The real engine (run_sweep, Ray Tune's resources, its scheduler) with a trial function that does no
training: each trial records the GPU ids Ray gave it and CUDA_VISIBLE_DEVICES, then waits at a
barrier for the number of trials that should fit at once (a test that Ray packs that many; a
packing of fewer never fills the barrier and fails). The overlaps of the recorded intervals show
that no more than that ever ran at once, nor more per GPU than its fractions allow.
"""

from __future__ import annotations

import json
import tempfile

import pytest
import yaml
from sweep_helpers import max_overlap

from orchestrator.backends.local import LocalBackend
from orchestrator.engine.runner import run_sweep
from orchestrator.spec.sweep_spec import load_spec

pytestmark = pytest.mark.integration

TRIALS = 8
BARRIER_S = 120  # how long a trial waits for the others that should run beside it


@pytest.mark.parametrize(("fraction", "declared_gpus"), [(0.5, 2), (0.25, 1)])
def test_trials_asking_for_a_gpu_fraction_are_packed_as_asked_and_see_only_their_device(
    tmp_path, fraction, declared_gpus
):
    at_once = int(declared_gpus / fraction)  # 4 in both cases: 2 per GPU, or 4 on one
    spec_path = tmp_path / "fractions.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "fractions",
                "trial": {"data": {"dataset": "digits2"}, "preprocessor": {"kind": "identity"}},
                "grid": {"data.seed": list(range(TRIALS))},
                "objectives": {"val_acc_natural": "max"},
                "resources": {"cpu": 1, "gpu": fraction},
                "max_concurrent": TRIALS,
            }
        )
    )
    records = tmp_path / "records"
    records.mkdir()

    def record_and_wait(params, *, sweep_dir, sweep_name, base_trial, objectives, cpus, gpus, **_):
        # Local: pickled by value (Ray's workers cannot import this test module).
        import os
        import time

        import ray
        from ray import tune

        started = time.time()
        name = f"seed-{params['data.seed']}"
        arrival = 1  # this trial's place in the order of arrival, taken atomically (O_EXCL)
        while True:
            try:
                (records / f"arrival-{arrival}").open("x").close()
                break
            except FileExistsError:
                arrival += 1
        # The barrier: wait until the whole round of `at_once` trials this one belongs to has
        # arrived. Only as many as Ray runs at once can arrive before the round's end.
        round_full = -(-arrival // at_once) * at_once
        deadline = started + BARRIER_S
        while len(list(records.glob("arrival-*"))) < round_full and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the round holds its devices together a moment longer
        record = {
            "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "gpus": gpus,
            "start": started,
            "end": time.time(),
            "barrier_full": time.time() < deadline,
        }
        (records / f"{name}.json").write_text(json.dumps(record))
        tune.report({"val_acc_natural": 0.5, "stage": "done"})

    temp_dir = tempfile.mkdtemp(prefix="gpu-", dir="/tmp")
    backend = LocalBackend(temp_dir=temp_dir, num_cpus=TRIALS, num_gpus=declared_gpus)
    run_sweep(
        load_spec(spec_path),
        tmp_path / "runs" / "fractions",
        backend=backend,
        live=False,
        trial_function=record_and_wait,
    )
    # Every trial ran to its end: each wrote its record just before reporting. (The sweep's outcome
    # counts Parquet rows, the record of truth, which this trial function does not write.)
    trials = [json.loads(path.read_text()) for path in sorted(records.glob("seed-*.json"))]
    assert len(trials) == TRIALS
    # Each trial sees one device, the one Ray gave it, and is told its share.
    for trial in trials:
        assert len(trial["gpu_ids"]) == 1 and trial["cuda_visible_devices"] == trial["gpu_ids"][0], trial
        assert trial["gpus"] == fraction
    assert {trial["gpu_ids"][0] for trial in trials} == {str(i) for i in range(declared_gpus)}
    # Packed as asked: `at_once` ran together (every barrier filled), never more, and never more on
    # one GPU than its fractions allow.
    assert all(trial["barrier_full"] for trial in trials), trials
    assert max_overlap([(t["start"], t["end"]) for t in trials]) == at_once
    for gpu in range(declared_gpus):
        on_gpu = [(t["start"], t["end"]) for t in trials if t["gpu_ids"] == [str(gpu)]]
        assert max_overlap(on_gpu) == int(1 / fraction), (gpu, on_gpu)
