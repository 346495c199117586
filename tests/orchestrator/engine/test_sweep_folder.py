"""Before Ray starts: a sweep folder whose plan changed is refused unless --restart, which moves the
old folder aside, and a resource request no node of this machine can hold is refused with nothing
written. The sweeps themselves are tests/integration/test_sweep.py.
"""

from __future__ import annotations

import json

import pytest
from sweep_helpers import write_spec

from orchestrator.engine.folder import prepare_sweep_dir, write_state
from orchestrator.engine.runner import run_sweep
from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.paths import STATE_FILE
from trainables.errors import ConfigError, UserError


def test_a_changed_plan_is_refused_unless_restart_which_moves_the_old_sweep_aside(
    tmp_path, tiny_foundation_config, tiny_arch
):
    original = load_spec(write_spec(tmp_path, tiny_foundation_config, tiny_arch))
    sweep_dir = tmp_path / "runs" / "tiny"
    write_state(original, sweep_dir)
    (sweep_dir / "results").mkdir()

    # How it runs may change between runs; what it computes may not.
    operational = load_spec(
        write_spec(tmp_path, tiny_foundation_config, tiny_arch, max_concurrent=1, resources={"cpu": 2})
    )
    assert prepare_sweep_dir(operational, sweep_dir, restart=False) is True

    changed = load_spec(
        write_spec(tmp_path, tiny_foundation_config, tiny_arch, grid={"preprocessor.kind": ["vanilla"]})
    )
    with pytest.raises(UserError, match=r"changed: grid\); run with --restart"):
        prepare_sweep_dir(changed, sweep_dir, restart=False)
    assert json.loads((sweep_dir / STATE_FILE).read_text())["plan_hash"] == original.plan_hash  # untouched

    assert prepare_sweep_dir(changed, sweep_dir, restart=True) is False
    aside = [p for p in sweep_dir.parent.iterdir() if p.name.startswith("tiny.replaced-")]
    assert len(aside) == 1 and (aside[0] / STATE_FILE).is_file() and (aside[0] / "results").is_dir()
    assert not sweep_dir.exists()


def test_a_resource_request_no_node_can_hold_is_refused_before_anything_is_written(
    tmp_path, tiny_foundation_config, tiny_arch
):
    spec = load_spec(write_spec(tmp_path, tiny_foundation_config, tiny_arch, resources={"cpu": 4096}))
    with pytest.raises(
        ConfigError, match=r"tiny.yaml: resources.cpu: expected a request one node of this machine can hold"
    ):
        run_sweep(spec, tmp_path / "runs" / "tiny", live=False)
    assert not (tmp_path / "runs").exists()
