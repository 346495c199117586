"""Two drivers on one sweep folder: the second is refused in one line naming the first; a dead one blocks nobody.

The real CLI (`python -m orchestrator sweep`, Ray, Parquet) for the two-driver race; the lock
itself (orchestrator.store.lock) and the Slurm submit path's fail-closed check in-process.
Every process started here is found and ended by PID: the driver's descendants are sampled while
it runs, and Ray's processes carry this test's own RAY_TMPDIR in their command lines.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chaos_harness import start_held_driver
from sweep_helpers import planned_hashes, read_rows

from orchestrator.backends.jobs import SubmittedJob, record_job, recorded_jobs
from orchestrator.backends.slurm.records import active_jobs
from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.lock import lock_path, sweep_lock
from trainables.errors import UserError

pytestmark = pytest.mark.chaos

REPO = Path(__file__).resolve().parents[2]
INJECT = REPO / "tests" / "chaos" / "inject.py"
# The first driver is held at pre-processor epoch 2 (inject.py's hold-at-epoch-2) until it is
# killed, so it is mid-trial when the second is refused however slow the machine; the third then
# trains the remaining epochs from the epoch-2 checkpoint.
PRE_EPOCHS = 4
# The lock is taken only after the second driver has imported torch, Ray and the trainables (about
# 14 s of imports on 2 shared cores, 25 s while the first driver trains): "a few seconds" on an idle
# machine, more here.
REFUSED_WITHIN_S = 60


def _lock_owner(sweep_dir: Path) -> dict:
    try:
        return json.loads(lock_path(sweep_dir).read_text() or "{}")
    except (FileNotFoundError, ValueError):
        return {}


def test_a_second_driver_is_refused_and_a_killed_one_blocks_nobody(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch
):
    held = start_held_driver(
        tmp_path, cache_root, tiny_foundation_config, tiny_arch, name="two", epochs=PRE_EPOCHS, log="first.log"
    )
    spec_path, sweep_dir, env, epochs_file = held.spec_path, held.sweep_dir, held.env, held.epochs_file
    hold, ray_root, ours = held.hold, held.ray_root, held.ours
    first = held.process
    command = [sys.executable, "-m", "orchestrator", "sweep", str(spec_path), "--out", str(sweep_dir), "--plain"]
    try:
        ours.remember(first.pid)
        started = time.monotonic()
        while _lock_owner(sweep_dir).get("pid") != first.pid or _preprocessor_epochs(epochs_file) != [1, 2]:
            assert first.poll() is None, "the first driver ended before it was held at epoch 2"
            assert time.monotonic() - started < 300, "the first driver never reached epoch 2 holding the lock"
            ours.remember(first.pid)
            time.sleep(0.2)
        print(
            f"\nfirst driver (pid {first.pid}) holds the lock, held at epoch 2 after "
            f"{time.monotonic() - started:.1f} s: {_lock_owner(sweep_dir)}"
        )

        began = time.monotonic()
        second = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        ours.remember(second.pid)
        try:
            stdout, stderr = second.communicate(timeout=60)
        finally:
            if second.poll() is None:
                ours.kill_tree(second)
        refused_in = time.monotonic() - began
        print(
            f"second driver: exit {second.returncode} after {refused_in:.1f} s\n--- stdout\n{stdout}--- "
            f"stderr\n{stderr}"
        )
        ours.remember(first.pid)
        assert first.poll() is None, "the first driver was no longer running when the second was refused"
        assert second.returncode == 2, stdout + stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("orchestrator: error: ") and "another driver is running this sweep" in lines[0]
        assert f"pid {first.pid} on {socket.gethostname()}" in lines[0]
        assert refused_in < REFUSED_WITHIN_S, f"refused only after {refused_in:.1f} s"
        assert not list((sweep_dir / "results" / "trials").glob("*.parquet"))  # the first is still mid-trial
        assert _preprocessor_epochs(epochs_file) == [1, 2]

        # A driver that dies (SIGKILL: no clean-up of its own) with everything it started, as when
        # its node goes down: anything of its Ray that escaped the kill (started after the last
        # sample) is killed too, so no held worker keeps the pre-processor's artifact lock.
        ours.kill_tree(first)
        print(f"processes of the killed driver still alive after its kill: {ours.reap()}")
    finally:
        if first.poll() is None:
            ours.kill_tree(first)
        hold.unlink()
    first_output = (tmp_path / "first.log").read_text(errors="replace")
    assert first.returncode == -9, first_output[-3000:]  # killed by us, not ended by itself

    try:
        # A hang guard, not a speed target: alone the third driver takes about 15 s.
        third = ours.run(command, env=env, cwd=tmp_path, timeout=600)
    finally:
        ours.reap()
        shutil.rmtree(ray_root, ignore_errors=True)
    output = third.stdout + third.stderr
    print(f"third driver: exit {third.returncode}\n{output}")
    assert third.returncode == 0, output[-3000:]
    assert "another driver" not in output
    rows = [row for path in (sweep_dir / "results" / "trials").glob("*.parquet") for row in read_rows(path)]
    assert sorted(r["config_hash"] for r in rows) == sorted(planned_hashes(load_spec(spec_path)))
    assert {r["status"] for r in rows} == {"TERMINATED"}
    # The third resumed from the dead driver's epoch-2 checkpoint: each epoch recorded once.
    assert _preprocessor_epochs(epochs_file) == list(range(1, PRE_EPOCHS + 1))


def _preprocessor_epochs(path: Path) -> list[int]:
    try:
        return sorted(r["epoch"] for r in read_rows(path) if r["stage"] == "preprocessor")
    except (FileNotFoundError, OSError):
        return []


def test_the_refusal_names_the_slurm_job_that_holds_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    sweep_dir = tmp_path / "runs" / "held"
    holder_code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from orchestrator.store.lock import sweep_lock\n"
        "with sweep_lock(Path(sys.argv[1])):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, str(sweep_dir)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([holder.stdout], [], [], 60)
        assert ready and holder.stdout.readline().strip() == "held", "the holder never took the lock"
        with pytest.raises(UserError, match=r"Slurm job 4242") as refused, sweep_lock(sweep_dir):
            pytest.fail("the lock was taken while another process held it")
        assert f"pid {holder.pid} on {socket.gethostname()}, Slurm job 4242, since " in str(refused.value)
        assert _lock_owner(sweep_dir)["pid"] == holder.pid  # a refused attempt leaves the holder's record alone
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # The kernel dropped the dead holder's lock: the next one takes it.
    with sweep_lock(sweep_dir):
        assert _lock_owner(sweep_dir)["pid"] == os.getpid()


def test_the_submit_path_fails_closed_when_slurm_cannot_be_asked(tmp_path, monkeypatch):
    sweep_dir = tmp_path / "runs" / "slurm"
    record_job(sweep_dir, SubmittedJob(job_id="123", mode="ray", submitted_at=0.0, log_folder="x", tasks=1))
    assert [job.job_id for job in recorded_jobs(sweep_dir)] == ["123"]
    empty = tmp_path / "no-commands"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # neither sacct nor squeue can be run
    with pytest.raises(UserError, match=r"cannot ask Slurm .*123") as refused:
        active_jobs(sweep_dir, fail_closed=True)
    print(f"\nfail closed: {refused.value}")
    assert active_jobs(sweep_dir) == {}  # status and --wait: nothing counts as live
