"""A sweep run with command-line overrides runs them and records them in its plan (the parsing and
refusals of overrides are tests/orchestrator/spec/test_overrides.py)."""

from __future__ import annotations

import json
import tempfile

import pytest
from sweep_helpers import write_spec

from orchestrator.backends.local import LocalBackend
from orchestrator.engine.runner import run_sweep
from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.paths import STATE_FILE
from orchestrator.store.query import load_trials

pytestmark = pytest.mark.integration


def test_a_sweep_with_overrides_runs_them_and_records_them(tmp_path, cache_root, tiny_foundation_config, tiny_arch):
    path = write_spec(tmp_path, tiny_foundation_config, tiny_arch)
    spec = load_spec(path, ["grid.1.preprocessor.lambda=[10]", "head.epochs=1", "name=smoke"])
    sweep_dir = tmp_path / "runs" / "smoke"
    outcome = run_sweep(
        spec, sweep_dir, backend=LocalBackend(temp_dir=tempfile.mkdtemp(prefix="cr-", dir="/tmp")), live=False
    )
    assert (outcome.done, outcome.failed) == (2, 0)
    trials = load_trials(sweep_dir)
    assert set(trials["head.epochs"]) == {1} and set(trials["sweep"]) == {"smoke"}
    assert set(trials.loc[trials["preprocessor.kind"] == "cropd", "preprocessor.lambda"]) == {10}
    state = json.loads((sweep_dir / STATE_FILE).read_text())
    assert state["overrides"] == list(spec.overrides) and state["plan"]["trial"]["head"]["epochs"] == 1
