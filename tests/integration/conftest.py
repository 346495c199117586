"""One finished tiny sweep for the whole test run, shared by the tests that only read a sweep folder.

A real sweep (Ray Tune, Optuna, real trials, the Parquet writers): sweep_helpers.write_spec's tiny
spec with two seeds and 2-epoch pre-processors, so six trials (Identity, CRoPD at lambda 1 and 10,
each at seeds 0 and 1). It runs once per test run, not once per module: under pytest-xdist every
worker is a session of its own, so the first worker to ask runs it under a file lock in the folder
the workers share (pytest-xdist's documented pattern) and the others wait for it and read it.

Its users only read it: `finished_sweep` checks after each test that no file in the folder was
added, removed or changed. A test that must change a sweep copies it first (shutil.copytree). A
test that needs a sweep of another shape runs its own.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from filelock import FileLock
from sweep_helpers import write_spec

FINISHED_SWEEP = "finished"  # the sweep's name; its folder is <root>/runs/finished
FINISHED_TRIALS = 6


@dataclass(frozen=True)
class FinishedSweep:
    sweep_dir: Path
    spec_path: Path
    cache: Path  # the artifact cache (CROPD_CACHE) its trials wrote: its foundation lives there
    files: dict[str, list[int]]  # relative path -> [size, mtime ns] of every file, as the sweep left them


def _files(folder: Path) -> dict[str, list[int]]:
    return {
        str(path.relative_to(folder)): [path.stat().st_size, path.stat().st_mtime_ns]
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def _run_finished_sweep(root: Path, foundation: dict, arch: dict) -> FinishedSweep:
    from orchestrator.backends.local import LocalBackend
    from orchestrator.engine.runner import run_sweep
    from orchestrator.spec.sweep_spec import load_spec

    root.mkdir(exist_ok=True)
    spec_path = write_spec(root, foundation, arch, name=FINISHED_SWEEP, seeds=[0, 1])
    raw = yaml.safe_load(spec_path.read_text())
    raw["trial"]["preprocessor"]["epochs"] = 2  # the shared tiny spec, with fewer epochs: six trials
    # Heads long enough to leave chance on 105 images (3 epochs are ~6 steps: most heads answered
    # one class), so the readers below see unflagged trials as well as flagged ones.
    raw["trial"]["head"]["epochs"] = 12
    spec_path.write_text(yaml.safe_dump(raw))
    # Its own artifact cache, which the readers in every worker use too (the worker's own cache
    # would hold another pre-training of the tiny foundation). Set before Ray starts, so the trial
    # processes inherit it; the worker's cache is set back after.
    cache = root / "cache"
    before = os.environ.get("CROPD_CACHE")
    os.environ["CROPD_CACHE"] = str(cache)
    try:
        temp_dir = tempfile.mkdtemp(prefix="cr-", dir="/tmp")  # Ray's sockets need a short path
        backend = LocalBackend(temp_dir=temp_dir)
        outcome = run_sweep(load_spec(spec_path), root / "runs" / FINISHED_SWEEP, backend=backend, live=False)
    finally:
        if before is None:
            os.environ.pop("CROPD_CACHE", None)
        else:
            os.environ["CROPD_CACHE"] = before
    assert (outcome.done, outcome.failed) == (FINISHED_TRIALS, 0)
    return FinishedSweep(outcome.sweep_dir, spec_path, cache, _files(outcome.sweep_dir))


@pytest.fixture(scope="session")
def _finished_sweep_once(tmp_path_factory, cache_root, tiny_foundation_config, tiny_arch) -> FinishedSweep:
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # one process: this session is the whole run
        return _run_finished_sweep(tmp_path_factory.mktemp("finished-sweep"), tiny_foundation_config, tiny_arch)
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, above every worker's own
    record = shared / "finished-sweep.json"
    with FileLock(str(shared / "finished-sweep.lock")):
        if not record.is_file():
            try:
                done = _run_finished_sweep(shared / "finished-sweep", tiny_foundation_config, tiny_arch)
            except BaseException as err:  # the other workers fail at once instead of running it again
                record.write_text(json.dumps({"error": f"{type(err).__name__}: {err}"}))
                raise
            fields = {"sweep_dir": str(done.sweep_dir), "spec_path": str(done.spec_path), "cache": str(done.cache)}
            record.write_text(json.dumps({**fields, "files": done.files}))
    data = json.loads(record.read_text())
    if "error" in data:
        pytest.fail(f"the shared finished sweep failed in another worker: {data['error']}")
    return FinishedSweep(Path(data["sweep_dir"]), Path(data["spec_path"]), Path(data["cache"]), data["files"])


@pytest.fixture
def finished_sweep(_finished_sweep_once, monkeypatch) -> FinishedSweep:
    """The shared finished sweep (see the module docstring), for a test that only reads it."""
    monkeypatch.setenv("CROPD_CACHE", str(_finished_sweep_once.cache))
    yield _finished_sweep_once
    before, after = _finished_sweep_once.files, _files(_finished_sweep_once.sweep_dir)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"a test changed the shared finished sweep (copy it with shutil.copytree first): {changed[:5]}"
