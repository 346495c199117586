"""A sweep folder that 15dd327 wrote and interrupted (tests/fixtures/sweep_15dd327/, described in
tests/orchestrator/test_compat.py) resumes under this code: the finished trial is kept, the cut one
continues from its epoch-2 checkpoint.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sweep_15dd327"


def test_a_sweep_folder_that_15dd327_wrote_and_interrupted_resumes(tmp_path, cache_root):
    from orchestrator.backends.local import LocalBackend
    from orchestrator.engine.runner import run_sweep
    from orchestrator.spec.sweep_spec import load_spec
    from orchestrator.store.query import connect, load_trials

    spec_path = tmp_path / "old_sweep.yaml"
    shutil.copy(FIXTURE / "old_sweep.yaml", spec_path)
    sweep_dir = tmp_path / "runs" / "old_sweep"
    shutil.copytree(FIXTURE / "old_sweep", sweep_dir)
    before = load_trials(sweep_dir).set_index("preprocessor.kind")
    assert len(before) == 2  # identity finished, cifar2's identity failed; cropd was cut mid-training

    outcome = run_sweep(
        load_spec(spec_path),
        sweep_dir,
        backend=LocalBackend(temp_dir=tempfile.mkdtemp(prefix="cr-", dir="/tmp")),
        live=False,
    )
    assert outcome.resumed and (outcome.done, outcome.failed) == (2, 1)
    trials = load_trials(sweep_dir)
    done = trials[trials["status"] == "TERMINATED"].set_index("preprocessor.kind")
    assert sorted(done.index) == ["cropd", "identity"]
    # The finished trial was not run again, and the cut one continued from its epoch-2 checkpoint.
    finished_before = before[before["status"] == "TERMINATED"].loc["identity", "finished_at"]
    assert done.loc["identity", "finished_at"] == finished_before
    epochs = connect(sweep_dir).execute(
        "SELECT epoch, count(*) FROM epochs WHERE stage = 'preprocessor' GROUP BY epoch ORDER BY epoch"
    ).fetchall()
    assert epochs == [(1, 1), (2, 1), (3, 1)]
