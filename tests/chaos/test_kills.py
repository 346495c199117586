"""Repeated SIGKILLs of a real sweep (driver alone, one Ray worker, the whole process group), then checks.

After the last resume: one row per planned trial, every epoch of every stage recorded once and
never trained twice (so no trial went back to epoch 0 past a checkpoint), the same numbers as an
uninterrupted run of the same spec at the same thread count (one torch thread per trial: the code
is deterministic there, so equal means bit-identical), and no Ray process of ours left behind.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile

import pytest
from chaos_harness import KINDS, Chaos, OurProcesses, chaos_spec, metrics_by_trial, outcomes_by_trial, read_rows
from sweep_helpers import planned_hashes

from orchestrator.spec.sweep_spec import load_spec

pytestmark = pytest.mark.chaos

KILLS_PER_KIND = 5
EPOCHS, HEAD_EPOCHS = 30, 3


@pytest.mark.timeout(1500)  # 15 kills and 10 restarts of Ray, beside an uninterrupted run to compare with
def test_repeated_kills_of_each_kind_leave_the_results_of_an_uninterrupted_run(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch
):
    spec_path = chaos_spec(
        tmp_path,
        tiny_foundation_config,
        tiny_arch,
        name="chaos",
        epochs=EPOCHS,
        head_epochs=HEAD_EPOCHS,
        lambdas=(1, 10),
        # Every training image: epochs long enough that each kill lands mid-training. At half of
        # them an epoch took a fraction of a second on a fast machine, the workers a driver kill
        # orphans finished whole trials while the next driver started, and the sweep was done
        # before 5 kills of each kind had landed (2-4 of them, in every run on such a machine).
        data_fraction=1.0,
    )
    spec = load_spec(spec_path)
    kinds = [kind for kind in KINDS for _ in range(KILLS_PER_KIND)]
    random.Random(15).shuffle(kinds)

    killed_dir = tmp_path / "killed" / "chaos"
    killed_dir.parent.mkdir()
    chaos = Chaos(spec_path, killed_dir, seed=15)
    # The uninterrupted run of the same spec goes at the same time, in its own folder with its own
    # Ray (a temp folder of its own, so the leftover check below never counts its processes). The
    # suite mostly waits on Ray and restarts; one torch thread per trial keeps it bit-identical.
    reference_dir = tmp_path / "reference" / "chaos"
    reference_dir.parent.mkdir()
    reference_ray = tempfile.mkdtemp(prefix="kills-ref-", dir="/tmp")
    reference_processes = OurProcesses(reference_ray)
    reference_log = tmp_path / "reference.log"
    with open(reference_log, "wb") as log:
        reference = subprocess.Popen(
            chaos.command[:4] + [str(spec_path), "--out", str(reference_dir), "--plain"],
            cwd=reference_dir.parent,
            env={**chaos.env, "RAY_TMPDIR": reference_ray},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        reference_processes.remember(reference.pid)
        report = chaos.run(kinds)
        final_code = chaos.driver.returncode
        leftovers = chaos.leftovers_after(60)
        reference.wait(timeout=900)
    finally:
        if chaos.driver is not None and chaos.driver.poll() is None:
            chaos.driver.kill()
        chaos.processes.reap()
        if reference.poll() is None:
            reference_processes.kill_tree(reference)
        reference_processes.reap()
        shutil.rmtree(reference_ray, ignore_errors=True)
    assert final_code == 0, report.outputs[-1]
    assert report.kills == {kind: KILLS_PER_KIND for kind in KINDS}, report.outputs[-1]
    assert report.resumes >= 2 * KILLS_PER_KIND
    assert leftovers == [], [p.info for p in leftovers]
    assert reference.returncode == 0, reference_log.read_text(errors="replace")[-3000:]

    # Exactly one row per planned trial, each finished.
    rows = [row for p in (killed_dir / "results" / "trials").glob("*.parquet") for row in read_rows(p)]
    assert sorted(r["config_hash"] for r in rows) == sorted(planned_hashes(spec))
    assert {r["status"] for r in rows} == {"TERMINATED"}
    # Every epoch of each stage recorded exactly once, and none trained a second time.
    for key in planned_hashes(spec):
        records = read_rows(killed_dir / "results" / "epochs" / f"{key}.parquet")
        by_stage = {}
        for record in records:
            by_stage.setdefault(record["stage"], []).append(record["epoch"])
        expected = {"head": list(range(1, HEAD_EPOCHS + 1))}
        if any(r["stage"] == "preprocessor" for r in records):
            expected["preprocessor"] = list(range(1, EPOCHS + 1))
        assert {stage: sorted(epochs) for stage, epochs in by_stage.items()} == expected, key
    assert Chaos.epochs_redone(report, killed_dir) == []
    # The numbers of an uninterrupted run, bit for bit, point by point.
    assert metrics_by_trial(killed_dir) == metrics_by_trial(reference_dir)
    assert outcomes_by_trial(killed_dir) == outcomes_by_trial(reference_dir)
