"""The sweep folder's layout (SweepPaths), the user's argument to a folder, and the backend registry.

Fast, no Ray: the layout is spelled here on purpose, as a guard that existing sweep folders keep
resuming (every path below is one an older sweep folder has on disk).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.backends.base import Backend
from orchestrator.backends.jobs import SubmittedJob, record_job
from orchestrator.backends.local import LocalBackend
from orchestrator.backends.registry import backend_class, backend_of
from orchestrator.engine.trial import TUNE_NAME
from orchestrator.spec.backends import backend_names
from orchestrator.spec.target import results_dir_of, sweep_dir_of
from orchestrator.store.paths import ResultsPaths, SweepPaths, default_sweep_dir
from trainables.errors import UserError


def test_every_path_of_a_sweep_folder_is_where_older_sweeps_have_it(tmp_path):
    paths = SweepPaths(tmp_path / "s")
    root = tmp_path / "s"
    assert paths.state == root / "sweep.json" and paths.spec_copy == root / "spec.yaml"
    assert paths.results.trial_row("k") == root / "results" / "trials" / "k.parquet"
    assert paths.results.epochs_file("k") == root / "results" / "epochs" / "k.parquet"
    assert paths.results.examples_file("k") == root / "results" / "examples" / "k.parquet"
    assert (
        paths.workdir("k") == root / "trials" / "k" and paths.trial_config("k") == root / "trials" / "k" / "config.json"
    )
    assert paths.trial_result("k") == root / "trials" / "k" / "result.json"
    assert paths.artifacts == root / "artifacts" and paths.ray == root / "ray"
    assert paths.optuna_journal == root / "optuna.journal" and paths.ray_processes == root / "ray-processes.json"
    assert paths.jobs == root / "slurm" / "jobs.jsonl" and paths.events == root / "slurm" / "events.jsonl"
    assert paths.slurm_logs == root / "slurm" / "logs" and paths.array_plan == root / "slurm" / "array_plan.json"
    assert paths.ray_head_address("7-0") == root / "slurm" / "ray-head-7-0.address"
    assert paths.ray_token("7-0") == root / "slurm" / "ray-token-7-0"
    assert SweepPaths(root / ".").lock == tmp_path / ".s.driver.lock"  # however the path is spelled
    assert paths.replaced("T") == tmp_path / "s.replaced-T"
    assert default_sweep_dir("q") == Path("runs") / "q"


def test_a_users_argument_becomes_a_sweep_folder_or_a_results_folder(tmp_path):
    sweep = tmp_path / "sweep"
    SweepPaths(sweep).results.trials.mkdir(parents=True)
    with pytest.raises(UserError, match="not a sweep directory"):
        sweep_dir_of(sweep)
    SweepPaths(sweep).state.write_text("{}")
    assert sweep_dir_of(sweep) == sweep and results_dir_of(sweep) == sweep / "results"
    copy = tmp_path / "copy"
    ResultsPaths(copy).trials.mkdir(parents=True)
    assert results_dir_of(copy) == copy  # a results/ folder copied away from its sweep
    with pytest.raises(UserError, match="no such sweep directory or spec file"):
        sweep_dir_of(tmp_path / "missing")


def test_backends_are_registered_by_name_and_an_unknown_one_is_one_line(tmp_path):
    assert backend_names() == ("local", "slurm")
    assert backend_class("local") is LocalBackend
    for name in backend_names():
        assert issubclass(backend_class(name), Backend) and backend_class(name).name == name
    with pytest.raises(UserError, match=r"^unknown backend 'pbs': one of local, slurm$"):
        backend_class("pbs")


def test_status_and_cancel_ask_the_backend_whose_jobs_the_folder_records(tmp_path):
    local = backend_of(tmp_path)
    assert isinstance(local, LocalBackend) and local.jobs(tmp_path) == [] and local.cancel(tmp_path) == []
    record_job(tmp_path, SubmittedJob("12", "ray", 0.0, str(tmp_path / "logs")))
    assert backend_of(tmp_path).name == "slurm"


def test_tune_sees_the_trial_function_under_the_name_older_sweep_folders_were_written_with():
    # Tuner.restore refuses a trainable of another name: this name never changes.
    assert TUNE_NAME == "sweep_trial"
