"""`orchestrator cancel` on a sweep whose driver runs here: the driver is stopped as Ctrl-C would
stop it, `status` says whether a driver runs, and the same sweep command then finishes the sweep.

The real CLI (`python -m orchestrator sweep`, Ray, Parquet); the driver is held mid-trial at
pre-processor epoch 2 (inject.py's hold-at-epoch-2) so it is surely running when cancelled.
Every process started here is found and ended by PID (chaos_harness.OurProcesses).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chaos_harness import start_held_driver
from sweep_helpers import read_rows

pytestmark = pytest.mark.chaos

REPO = Path(__file__).resolve().parents[2]
INJECT = REPO / "tests" / "chaos" / "inject.py"


def _cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_cancel_stops_the_local_driver_and_the_sweep_resumes(tmp_path, cache_root, tiny_foundation_config, tiny_arch):
    held = start_held_driver(
        tmp_path, cache_root, tiny_foundation_config, tiny_arch, name="cancelled", epochs=3, log="driver.log"
    )
    spec_path, sweep_dir, env, key, epochs_file = held.spec_path, held.sweep_dir, held.env, held.key, held.epochs_file
    hold, ray_root, ours, driver = held.hold, held.ray_root, held.ours, held.process
    try:
        ours.remember(driver.pid)
        started = time.monotonic()
        while sorted(r["epoch"] for r in read_rows(epochs_file) if r["stage"] == "preprocessor") != [1, 2]:
            assert driver.poll() is None, "the driver ended before it was held at epoch 2"
            assert time.monotonic() - started < 300, "the driver never reached epoch 2"
            ours.remember(driver.pid)
            time.sleep(0.2)

        status = _cli(["status", str(sweep_dir), "--format", "json"], env, tmp_path)
        assert status.returncode == 0, status.stderr
        running = json.loads(status.stdout)["driver"]
        assert running["alive"] is True and running["pid"] == driver.pid

        cancelled = _cli(["cancel", str(sweep_dir)], env, tmp_path)
        ours.remember(driver.pid)
        print(f"\ncancel: exit {cancelled.returncode}\n{cancelled.stderr}")
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"stopped the local driver pid {driver.pid}" in cancelled.stderr
        assert driver.wait(timeout=60) != 0  # it stopped because it was told to, not because it finished
        assert not list((sweep_dir / "results" / "trials").glob("*.parquet"))  # mid-trial, as it was

        status = _cli(["status", str(sweep_dir)], env, tmp_path)
        assert "driver: none running" in status.stdout, status.stdout
        again = _cli(["cancel", str(sweep_dir)], env, tmp_path)
        assert again.returncode == 0 and "no driver runs it" in again.stderr
    finally:
        if driver.poll() is None:
            ours.kill_tree(driver)
        hold.unlink()
        print(f"processes of the cancelled driver still alive: {ours.reap()}")
    print((tmp_path / "driver.log").read_text(errors="replace")[-2000:])

    try:
        resumed = ours.run(
            [sys.executable, "-m", "orchestrator", "sweep", str(spec_path), "--out", str(sweep_dir), "--plain"],
            env=env,
            cwd=tmp_path,
            timeout=600,
        )
    finally:
        ours.reap()
        shutil.rmtree(ray_root, ignore_errors=True)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    rows = [row for path in (sweep_dir / "results" / "trials").glob("*.parquet") for row in read_rows(path)]
    assert [(r["config_hash"], r["status"]) for r in rows] == [(key, "TERMINATED")]
    # The cancelled driver's epochs were kept: epoch 1 is recorded once, as it was before cancel.
    assert sorted(r["epoch"] for r in read_rows(epochs_file) if r["stage"] == "preprocessor")[:2] == [1, 2]
