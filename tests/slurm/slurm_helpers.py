"""What the tests against a real Slurm (slurm/local_cluster/cluster.sh) share: specs, waiting, reading.

test_slurm_cluster.py runs on any layout of the local cluster; test_slurm_multinode.py needs it
started with several nodes (`cluster.sh start --nodes 2 --gpus-per-node 2`, what .ci/run starts).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from sweep_helpers import planned_hashes, read_rows, write_spec

from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.paths import SweepPaths
from orchestrator.store.query import connect
from trainables.trial import run_trial

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "slurm" / "local_cluster" / "cluster.sh"
JOB_WAIT_S = 420


def cluster_nodes() -> dict[str, tuple[str, str]]:
    """{node: (state, gres)} of the cluster that answers here; empty when none does."""
    if shutil.which("sinfo") is None:
        return {}
    result = subprocess.run(["sinfo", "-h", "-N", "-o", "%N|%T|%G"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        return {}
    rows = [line.split("|") for line in result.stdout.splitlines() if line.count("|") == 2]
    return {name: (state, gres) for name, state, gres in rows}


def require_cluster(*, nodes: int = 1, gpus_per_node: int = 0) -> None:
    """Skip (or fail, with CROPD_REQUIRE_SLURM=1 as in CI) unless such a cluster answers."""
    usable = [
        name
        for name, (state, gres) in cluster_nodes().items()
        if state in ("idle", "mixed", "allocated", "completing")  # "idle*": not responding
        and (gpus_per_node == 0 or f"gpu:{gpus_per_node}" in gres)
    ]
    if len(usable) >= nodes:
        return
    start = f"{CLUSTER_SCRIPT.relative_to(REPO)} start" + (
        f" --nodes {nodes} --gpus-per-node {gpus_per_node}" if nodes > 1 else ""
    )
    what = f"no Slurm cluster with {nodes} usable node(s) and {gpus_per_node} GPU(s) each answers here ({start})"
    if os.environ.get("CROPD_REQUIRE_SLURM") == "1":
        pytest.fail(f"CROPD_REQUIRE_SLURM=1 but {what}")
    pytest.skip(what)


def measured_epoch_seconds(folder: Path, foundation: dict, arch: dict) -> float:
    """Seconds per pre-processor epoch of a tiny trial here, at the one thread a trial gets.

    Tests that must interrupt a trial mid-training size its epochs by it: a fixed count that
    lasted minutes on one machine ended before the signal on a faster one. Measured in this
    process (which also pre-trains the tiny foundation into the shared artifact cache), without
    the first epoch, which pays for warm-up.
    """
    grid = {"preprocessor.kind": ["cropd"], "preprocessor.lambda": [1]}
    spec = load_spec(slurm_spec(folder, foundation, arch, name="calibration", epochs=4, grid=grid))
    times: list[float] = []

    def on_epoch(record: dict) -> None:
        if record["stage"] == "preprocessor" and record["epoch"] > 1:
            times.append(record["epoch_time_s"])

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_trial(spec.trial_config(spec.grid_points[0]), folder / "trial", on_epoch=on_epoch)
    finally:
        torch.set_num_threads(threads)
    return sum(times) / len(times)


def slurm_spec(
    folder: Path, foundation: dict, arch: dict, *, name: str, epochs: int = 3, slurm: dict | None = None, **top
) -> Path:
    path = write_spec(folder, foundation, arch, name=name, **top)
    text = yaml.safe_load(path.read_text())
    text["trial"]["preprocessor"]["epochs"] = epochs
    text["slurm"] = {"partition": "debug", "time": 20, "cpus_per_task": 2, "mem": "6G", **(slurm or {})}
    path.write_text(yaml.safe_dump(text, sort_keys=False))
    return path


def orchestrator(*args: str, cwd: Path, timeout: float = JOB_WAIT_S) -> subprocess.CompletedProcess:
    # The job inherits this environment through sbatch (--export=ALL): the test's artifact cache included.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def submit(spec_path: Path, sweep_dir: Path, *, wait: bool = False) -> str:
    """`orchestrator sweep SPEC --backend slurm` (with --wait: until the sweep has ended); the job id."""
    submitted = orchestrator(
        "sweep",
        str(spec_path),
        "--out",
        str(sweep_dir),
        "--backend",
        "slurm",
        *(["--wait"] if wait else []),
        cwd=spec_path.parent,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    return jobs_of(sweep_dir)[0]["job_id"]


def jobs_of(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in SweepPaths(sweep_dir).jobs.read_text().splitlines()]


def events_of(sweep_dir: Path) -> list[dict]:
    path = SweepPaths(sweep_dir).events
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def sacct_state(job_id: str) -> str:
    """The job's state now: the first word ("CANCELLED by 0") of the last line (a job that lost a
    node has a RESIZING record before it)."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"], capture_output=True, text=True
    ).stdout
    lines = [line for line in out.splitlines() if line.strip()]
    return lines[-1].split()[0] if lines else ""


def lock_owner(sweep_dir: Path) -> dict:
    try:
        return json.loads(SweepPaths(sweep_dir).lock.read_text() or "{}")
    except (FileNotFoundError, ValueError):
        return {}


def wait_for(condition, what: str, timeout: float = JOB_WAIT_S, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_until_done(sweep_dir: Path, job_id: str) -> None:
    wait_for(
        lambda: sacct_state(job_id) in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), f"job {job_id} to end", poll=2
    )


def epoch_rows(sweep_dir: Path) -> dict[str, list[dict]]:
    """{config hash: its pre-processor epoch rows} of every trial, finished or not."""
    return {
        path.stem: [r for r in read_rows(path) if r["stage"] == "preprocessor"]
        for path in (sweep_dir / "results" / "epochs").glob("*.parquet")
    }


def running_trial_past(sweep_dir: Path, epoch: int, node: str | None = None) -> tuple[str, int] | None:
    """(config hash, epoch) of a trial without a result whose pre-processor reached `epoch`
    (its latest epoch on `node`, when given)."""
    finished = {p.stem for p in (sweep_dir / "results" / "trials").glob("*.parquet")}
    for key, rows in epoch_rows(sweep_dir).items():
        done = [r["epoch"] for r in rows]
        if key in finished or not done or max(done) < epoch:
            continue
        if node is None or max(rows, key=lambda r: r["epoch"]).get("node") == node:
            return key, max(done)
    return None


def assert_each_trial_once_and_every_epoch_once(sweep_dir: Path, spec, epochs: int) -> None:
    rows = [row for p in (sweep_dir / "results" / "trials").glob("*.parquet") for row in read_rows(p)]
    assert sorted(r["config_hash"] for r in rows) == sorted(planned_hashes(spec))
    assert {r["status"] for r in rows} == {"TERMINATED"}
    counts = (
        connect(sweep_dir)
        .execute(
            "SELECT config_hash, count(*), count(DISTINCT epoch) FROM epochs WHERE stage = 'preprocessor' GROUP BY 1"
        )
        .fetchall()
    )
    for key, n, distinct in counts:
        assert n == distinct == epochs, (key, n, distinct)
