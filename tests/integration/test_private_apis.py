"""Each private Ray and submitit API orchestrator/engine/private_apis.py uses, against the installed versions.

A failure here after an upgrade says which private call moved; pyproject.toml pins both packages
below the next minor release, and constraints.txt names the versions these tests passed with.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from ray import tune
from sweep_helpers import local_ray_session

from orchestrator.engine import private_apis

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PINNED = ("ray", "submitit")


def test_installed_ray_and_submitit_are_the_checked_versions_within_the_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specifiers = {requirement.name: requirement.specifier for requirement in map(Requirement, project["dependencies"])}
    constraints = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split() if "==" in line)
    for name in PINNED:
        assert any(spec.operator == "<" for spec in specifiers[name]), f"{name}: no upper bound in pyproject.toml"
        assert version(name) in specifiers[name], (name, version(name), str(specifiers[name]))
        assert constraints[name] == version(name), (name, constraints[name], version(name))


def test_sbatch_script_text_is_the_script_submitit_would_submit(tmp_path):
    import submitit
    from submitit.core.test_core import MockedSubprocess

    # submitit's SlurmExecutor refuses to start without `srun` on PATH: stood in for the way
    # submitit's own tests do (no Slurm command is run here; see tests/orchestrator/backends/test_slurm_settings.py).
    with MockedSubprocess(known_cmds=["srun"]).context():
        executor = submitit.SlurmExecutor(folder=tmp_path)
    executor.update_parameters(time=5, partition="debug", cpus_per_task=2)
    script = private_apis.sbatch_script_text(executor)
    assert script.startswith("#!/bin/bash") and "#SBATCH --partition=debug" in script
    assert "#SBATCH --cpus-per-task=2" in script and str(tmp_path) in script and "submitit" in script
    assert "#SBATCH --array=0-2%" in private_apis.sbatch_script_text(executor, tasks=3)


def test_the_loopback_switch_keeps_ray_from_replacing_127_0_0_1():
    from ray._private import ray_constants, services

    assert isinstance(ray_constants.ENABLE_RAY_CLUSTER, bool)
    with private_apis._loopback_node_address():
        assert services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"
    assert ray_constants.ENABLE_RAY_CLUSTER


def test_reload_ray_auth_makes_this_process_read_the_auth_mode_again(monkeypatch):
    from ray._raylet import AuthenticationMode, get_authentication_mode

    assert get_authentication_mode() == AuthenticationMode.DISABLED  # tests/conftest.py: RAY_AUTH_MODE=disabled
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert get_authentication_mode() == AuthenticationMode.DISABLED  # read once, at import: why the reload exists
    try:
        private_apis.reload_ray_auth()
        assert get_authentication_mode() == AuthenticationMode.TOKEN
    finally:
        monkeypatch.undo()
        private_apis.reload_ray_auth()
    assert get_authentication_mode() == AuthenticationMode.DISABLED


class Recorder(tune.Callback):
    """Remembers which runs set it up (pickled with the first run's state, like the real callbacks)."""

    def __init__(self):
        self.events = []

    def setup(self, **info):
        self.events.append("setup")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.events.append("trial complete")


@pytest.fixture
def local_ray():
    with local_ray_session():
        yield


def test_set_restored_callbacks_makes_a_restored_run_report_to_this_runs_callbacks(tmp_path, local_ray):
    def report_x(config):  # local: pickled by value, Ray's workers cannot import this test module
        tune.report({"score": config["x"]})

    first = Recorder()
    tuner = tune.Tuner(
        report_x,
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(name="run", storage_path=str(tmp_path), verbose=0, callbacks=[first]),
    )
    assert not tuner.fit().errors
    assert first.events.count("trial complete") == 2

    restored = tune.Tuner.restore(str(tmp_path / "run"), report_x, resume_unfinished=True, restart_errored=True)
    pickled = restored._local_tuner.get_run_config().callbacks
    assert len(pickled) == 1 and isinstance(pickled[0], Recorder) and pickled[0] is not first  # the first run's copy
    now = Recorder()
    private_apis.set_restored_callbacks(restored, [now])
    assert not restored.fit().errors
    assert "setup" in now.events and pickled[0].events == []  # this run's callback, not the pickled copy
