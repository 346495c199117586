"""Faults injected through the engine's trial-function hook (tests/chaos/inject.py), on the real CLI.

- a worker killed at epoch 2: an ERROR row that says so, and a plain resume continues it from epoch 2,
- a user's error: recorded once, the trial not run again by a plain resume (only by --retry-failed),
- a NaN in the embedded foundation's pre-training: the trial fails, nothing is published to the cache,
- a full disk: one line and a stop, no queued trial marked ERROR; after space is freed a plain resume
  finishes everything with exit 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sweep_helpers import planned_hashes, read_rows, write_spec

from orchestrator.spec.sweep_spec import load_spec

pytestmark = pytest.mark.chaos

NAN_SEED = 77  # inject.py's nan-foundation fault diverges trials with this embedded foundation seed

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.fixture
def env(cache_root):
    return {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": tempfile.mkdtemp(prefix="inj-", dir="/tmp")}


def inject(fault: str, spec: Path, out: Path, env: dict, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HERE / "inject.py"), fault, str(spec), str(out), *options],
        cwd=spec.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def plain(spec: Path, out: Path, env: dict, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "sweep", str(spec), "--out", str(out), "--plain", *options],
        cwd=spec.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def rows(out: Path) -> dict[str, dict]:
    return {p.stem: read_rows(p)[0] for p in (out / "results" / "trials").glob("*.parquet")}


def test_a_killed_worker_a_users_error_and_a_nan_in_pretraining_each_end_as_they_should(
    tmp_path, env, tiny_foundation_config, tiny_arch
):
    empty = tmp_path / "no-data"
    empty.mkdir()
    grid = [
        {"preprocessor.kind": ["cropd"], "preprocessor.lambda": [10]},  # its worker is killed at epoch 2
        {
            "data.dataset": ["cifar2"],
            "data.root": [str(empty)],
            "preprocessor.kind": ["identity"],
        },  # no data: the user's
        {"preprocessor.kind": ["identity"], "foundation.embedded.seed": [NAN_SEED]},
    ]  # pre-training diverges
    spec_path = write_spec(tmp_path, tiny_foundation_config, tiny_arch, name="faults", max_retries=0, grid=grid)
    out, cache = tmp_path / "faults", tmp_path / "cache"
    env = {**env, "CROPD_CACHE": str(cache)}
    first = inject("kill-at-epoch-2,nan-foundation,count-calls", spec_path, out, env)
    assert first.returncode == 1, first.stderr[-3000:]
    assert (tmp_path / "killed-once").exists()
    by_kind = {
        ("killed" if row["preprocessor.lambda"] == 10 else "user" if row["dataset"] == "cifar2" else "nan"): row
        for row in rows(out).values()
    }
    assert {kind: row["status"] for kind, row in by_kind.items()} == {
        "killed": "ERROR",
        "user": "ERROR",
        "nan": "ERROR",
    }

    # The killed worker wrote nothing; the driver wrote its row from Ray's state, with Ray's reason.
    killed = by_kind["killed"]
    assert killed["error_kind"] == "infrastructure" and killed["error"].startswith("worker lost: ")
    assert "died" in killed["error"].lower() or "exit" in killed["error"].lower(), killed["error"]
    assert f"{killed['config_hash'][:8]} failed: worker lost" in first.stdout  # the sweep's closing status says it
    # The user's error and the trial's own failure, each with its kind.
    assert by_kind["user"]["error_kind"] == "user" and by_kind["user"]["error"].startswith("DataNotFoundError")
    assert by_kind["nan"]["error_kind"] == "trial"
    assert by_kind["nan"]["error"].startswith("FloatingPointError: embedded foundation pre-training: non-finite loss")
    # Nothing of the diverged pre-training reached the shared cache (neither the folder nor a scratch copy).
    cached = {p.name for p in (cache / "foundations").iterdir() if not p.name.endswith(".lock")}
    assert len(cached) == 1, cached  # the other trials' (seed 0) foundation only

    epochs_file = out / "results" / "epochs" / f"{killed['config_hash']}.parquet"
    before = {r["epoch"]: r["recorded_at"] for r in read_rows(epochs_file) if r["stage"] == "preprocessor"}
    assert sorted(before) == [1]  # killed as it logged epoch 2, after epoch 2's checkpoint was saved

    # A plain resume: the killed trial (an infrastructure fault) runs again from its checkpoint; the
    # user's error and the trial's failure would only repeat: their rows stay as they were.
    resumed = plain(spec_path, out, env)
    assert resumed.returncode == 1, resumed.stderr[-3000:]
    after = rows(out)
    assert after[killed["config_hash"]]["status"] == "TERMINATED"
    assert after[killed["config_hash"]]["resumed_from"] == "preprocessor epoch 1"
    now = {r["epoch"]: r["recorded_at"] for r in read_rows(epochs_file) if r["stage"] == "preprocessor"}
    assert sorted(now) == [1, 2, 3] and now[1] == before[1]  # resumed from the epoch-2 checkpoint, epoch 1 not redone
    for kind in ("user", "nan"):
        assert after[by_kind[kind]["config_hash"]]["finished_at"] == by_kind[kind]["finished_at"], kind

    # --retry-failed is the user's way to run them again: once each, and they fail again.
    retried = plain(spec_path, out, env, "--retry-failed")
    assert retried.returncode == 1
    again = rows(out)
    for kind in ("user", "nan"):
        assert again[by_kind[kind]["config_hash"]]["finished_at"] > by_kind[kind]["finished_at"], kind
    assert again[killed["config_hash"]]["finished_at"] == after[killed["config_hash"]]["finished_at"]
    assert len((tmp_path / "calls.jsonl").read_text().splitlines()) == 3  # the injected run called each trial once


def test_a_full_disk_stops_the_sweep_with_one_line_and_a_plain_resume_finishes_it(
    tmp_path, env, tiny_foundation_config, tiny_arch
):
    spec_path = write_spec(
        tmp_path,
        tiny_foundation_config,
        tiny_arch,
        name="full",
        max_concurrent=1,
        grid={"preprocessor.kind": ["identity", "vanilla"], "head.epochs": [2, 3]},
    )
    spec = load_spec(spec_path)
    out = tmp_path / "full"
    (tmp_path / "disk-full").touch()
    stopped = inject("disk-full", spec_path, out, env)
    assert stopped.returncode == 2, stopped.stderr[-3000:]
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("orchestrator: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "run the same command again" in errors[0]
    assert rows(out) == {}  # no trial marked ERROR (nor anything else: there was no room)

    (tmp_path / "disk-full").unlink()  # space freed
    resumed = plain(spec_path, out, env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = rows(out)
    assert sorted(after) == sorted(planned_hashes(spec)) and {r["status"] for r in after.values()} == {"TERMINATED"}
