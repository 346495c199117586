"""The chaos harness: a real sweep (the CLI, Ray, Optuna, Parquet) SIGKILLed again and again, then checked.

Used by tests/chaos/test_kills.py (5 kills of each kind) and bench/chaos.py (20 of each, a table).
Three kinds of kill, at random moments once the running driver has made progress:
- driver: SIGKILL of the driver process alone; its Ray processes are left to die or linger,
- worker: SIGKILL of one Ray worker running a trial (what the kernel's OOM killer does),
- group: SIGKILL of the driver's whole process group (a node or job step going down).
After a driver or group kill the same command is run again; after a worker kill the driver goes
on (Tune retries the trial). When the kills are done, the command runs to the end.
Every process is ours (started here) and is found by PID: the driver's descendants, sampled before
each kill, and anything whose command line names this run's Ray temp folder.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[2]
KINDS = ("driver", "worker", "group")
WORKER_MARK = "ImplicitFunc"  # Ray Tune's function-trainable actor: `ray::ImplicitFunc.train` while it runs


def chaos_spec(
    folder: Path,
    foundation: dict,
    arch: dict,
    *,
    name: str,
    epochs: int,
    head_epochs: int,
    lambdas=(1, 3, 10),
    data_fraction: float = 0.5,
) -> Path:
    """Several trials with epoch checkpoints in two stages, two at a time, retried as often as killed."""
    spec = {
        "name": name,
        "trial": {
            "data": {"dataset": "digits2", "data_fraction": data_fraction},
            "foundation": foundation,
            "preprocessor": {"kind": "cropd", "arch": arch, "epochs": epochs, "batch_size": 32, "lr": 2e-3},
            "head": {"epochs": head_epochs},
            "evaluation": {"n_examples": 40, "attacks": ["pgd10"]},
        },
        "grid": [
            {"preprocessor.kind": ["cropd"], "preprocessor.lambda": list(lambdas)},
            {"preprocessor.kind": ["vanilla"]},
        ],
        "objectives": {"val_acc_natural": "max", "val_acc_pgd10": "max"},
        "resources": {"cpu": 1},
        "max_concurrent": 2,
        "max_retries": 1000,  # every worker kill is an infrastructure fault Tune should retry
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@dataclass
class HeldDriver:
    """A real `orchestrator sweep` driver started by inject.py's hold-at-epoch-2: it trains one
    CRoPD pre-processor and waits at epoch 2 while `hold` exists (remove it to let it go on)."""

    spec_path: Path
    sweep_dir: Path
    env: dict
    key: str  # the trial's config hash
    epochs_file: Path  # the trial's per-epoch records
    hold: Path
    ray_root: str  # this driver's RAY_TMPDIR: remove it when done
    ours: "OurProcesses"
    process: subprocess.Popen


def start_held_driver(tmp_path: Path, cache_root, foundation, arch, *, name: str, epochs: int, log: str) -> HeldDriver:
    """One-trial sweep `name` (CRoPD lambda 1, `epochs` pre-processor epochs) and its driver,
    started held at epoch 2 with its own RAY_TMPDIR, its processes remembered to end by PID."""
    from sweep_helpers import planned_hashes, write_spec

    from orchestrator.spec.sweep_spec import load_spec

    spec_path = write_spec(
        tmp_path,
        foundation,
        arch,
        name=name,
        max_concurrent=1,
        grid={"preprocessor.kind": ["cropd"], "preprocessor.lambda": [1]},
    )
    text = yaml.safe_load(spec_path.read_text())
    text["trial"]["preprocessor"]["epochs"] = epochs
    spec_path.write_text(yaml.safe_dump(text, sort_keys=False))
    sweep_dir = tmp_path / "runs" / name
    sweep_dir.parent.mkdir()
    ray_root = tempfile.mkdtemp(prefix=f"{name[:2]}-", dir="/tmp")
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": ray_root, "CROPD_CACHE": str(cache_root)}
    (key,) = planned_hashes(load_spec(spec_path))
    hold = sweep_dir.parent / "hold"
    hold.touch()
    ours = OurProcesses(ray_root)
    with open(tmp_path / log, "wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "chaos" / "inject.py"),
                "hold-at-epoch-2",
                str(spec_path),
                str(sweep_dir),
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    ours.remember(process.pid)
    epochs_file = sweep_dir / "results" / "epochs" / f"{key}.parquet"
    return HeldDriver(spec_path, sweep_dir, env, key, epochs_file, hold, ray_root, ours, process)


class OurProcesses:
    """Every process a test started, by PID and start time (so a reused PID is never taken for ours),
    and anything whose command line names the test's own Ray temp folder (Ray's GCS, raylet, workers)."""

    def __init__(self, ray_root: str):
        self.ray_root = ray_root
        self.seen: dict[int, float] = {}

    def remember(self, pid: int) -> list[psutil.Process]:
        """`pid` and its descendants now, remembered; returns the descendants."""
        try:
            root = psutil.Process(pid)
            self.seen[pid] = root.create_time()
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for child in children:
            try:
                self.seen[child.pid] = child.create_time()
            except psutil.NoSuchProcess:
                pass
        return children

    def alive(self) -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["pid", "cmdline", "create_time"]):
            try:
                mine = self.seen.get(process.pid) == process.info["create_time"]
                mine = mine or any(self.ray_root in part for part in process.info["cmdline"] or [])
                if mine and process.pid != os.getpid() and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def kill_tree(self, popen: subprocess.Popen) -> None:
        """SIGKILL a process we started and every descendant it has; then reap it.

        The root is reaped by Popen.wait, not psutil: psutil would take its exit status and leave
        Popen a returncode of 0.
        """
        descendants = self.remember(popen.pid)
        for process in [*descendants]:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        if popen.poll() is None:
            popen.kill()
        popen.wait(timeout=60)
        psutil.wait_procs(descendants, timeout=30)

    def reap(self) -> int:
        """SIGKILL every process of ours still alive (a test's own clean-up); returns how many."""
        alive = self.alive()
        for process in alive:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=30)
        return len(alive)

    def ray_log_tails(self, lines: int = 15) -> str:
        """The last lines of each log of the newest Ray session under our Ray temp folder (why a run hung)."""
        sessions = sorted(
            (p for p in Path(self.ray_root).rglob("session_2*") if p.is_dir()), key=lambda p: p.stat().st_mtime
        )
        if not sessions:
            return f"no Ray session under {self.ray_root}"
        parts = []
        for log in sorted((sessions[-1] / "logs").glob("*")):
            if log.is_file() and log.suffix in (".out", ".err", ".log") and log.stat().st_size:
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def run(self, command: list[str], *, env: dict, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
        """Run `command` to its end (or SIGKILL it and all of ours past `timeout`), remembering what it starts."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
            deadline = time.monotonic() + timeout
            try:
                while process.poll() is None and time.monotonic() < deadline:
                    self.remember(process.pid)
                    time.sleep(0.5)
            finally:
                if process.poll() is None:
                    self.kill_tree(process)
                    self.reap()
                process.wait(timeout=60)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{command} ran past {timeout} s\n{stdout[-3000:]}\n{stderr[-3000:]}\n{self.ray_log_tails()}"
            )
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@dataclass
class ChaosReport:
    kills: dict[str, int] = field(default_factory=lambda: {kind: 0 for kind in KINDS})
    resumes: int = 0
    left_by_killed_drivers: int = 0  # Ray processes alive when the next driver started
    seconds: float = 0.0
    # (trial, stage, epoch) -> when it was first seen recorded: an epoch recorded later again was redone
    first_recorded: dict = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)


class Chaos:
    """Runs `orchestrator sweep SPEC --out SWEEP` under kills; every process it starts is tracked."""

    def __init__(self, spec: Path, sweep_dir: Path, *, seed: int, env: dict | None = None):
        self.spec, self.sweep_dir = spec, sweep_dir
        self.rng = random.Random(seed)
        # Ray's session folders (and so the command lines of its GCS and raylet) under a folder of our own.
        self.ray_root = tempfile.mkdtemp(prefix="chaos-", dir="/tmp")
        self.env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO), "RAY_TMPDIR": self.ray_root}
        self.command = [sys.executable, "-m", "orchestrator", "sweep", str(spec), "--out", str(sweep_dir), "--plain"]
        self.processes = OurProcesses(self.ray_root)
        self.driver: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    # --- processes ------------------------------------------------------------------------------
    def start(self) -> None:
        self.log.seek(0)
        self.log.truncate()
        # Its own session and process group: a group kill takes the driver and what shares its group.
        self.driver = subprocess.Popen(
            self.command,
            cwd=self.sweep_dir.parent,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def sample(self) -> list[psutil.Process]:
        """The driver's descendants now, remembered for the leftover check."""
        return self.processes.remember(self.driver.pid)

    # --- progress -------------------------------------------------------------------------------
    def progress_marker(self) -> tuple:
        """Changes whenever a trial logs an epoch or finishes."""
        results = self.sweep_dir / "results"
        return tuple(
            sorted(
                (p.name, p.stat().st_mtime_ns)
                for folder in ("epochs", "trials")
                for p in (results / folder).glob("*.parquet")
                if p.exists()
            )
        )

    def wait_for_progress(self, timeout: float = 240) -> bool:
        """Until the running driver has logged something new, then a random moment more; False if it ended."""
        before = self.progress_marker()
        deadline = time.monotonic() + timeout
        while self.driver.poll() is None and time.monotonic() < deadline:
            self.sample()
            if self.progress_marker() != before:
                time.sleep(self.rng.uniform(0.0, 1.5))
                self.sample()
                return self.driver.poll() is None
            time.sleep(0.2)
        return False

    # --- kills ----------------------------------------------------------------------------------
    def kill(self, kind: str) -> bool:
        """One kill of `kind` in the running sweep; False when there was nothing to kill."""
        children = self.sample()
        if kind == "driver":
            os.kill(self.driver.pid, signal.SIGKILL)
        elif kind == "group":
            os.killpg(self.driver.pid, signal.SIGKILL)
        else:
            workers = [c for c in children if _is_trial_worker(c)]
            if not workers:
                return False
            self.rng.choice(workers).kill()
            return True
        self.driver.wait(timeout=60)
        return True

    def run(self, kinds: list[str], *, finish_timeout: float = 900) -> ChaosReport:
        """Kill in the order given (each when the sweep has progressed), then run to the end."""
        report = ChaosReport()
        started = time.monotonic()
        self.start()
        for kind in kinds:
            landed = False
            for _ in range(5):  # a worker kill needs a trial running: try at the next progress
                if self.driver.poll() is not None:
                    report.outputs.append(self.output())
                    report.left_by_killed_drivers += len(self.processes.alive())
                    self.start()
                    report.resumes += 1
                if not self.wait_for_progress():
                    continue
                landed = self.kill(kind)
                if landed:
                    break
            if landed:
                report.kills[kind] += 1
                for key, when in epoch_snapshot(self.sweep_dir).items():
                    report.first_recorded.setdefault(key, when)
        if self.driver.poll() is not None:
            report.left_by_killed_drivers += len(self.processes.alive())
            report.outputs.append(self.output())
            self.start()
            report.resumes += 1
        self.driver.wait(timeout=finish_timeout)
        report.outputs.append(self.output())
        report.seconds = time.monotonic() - started
        return report

    @staticmethod
    def epochs_redone(report: ChaosReport, sweep_dir: Path) -> list[tuple]:
        """Epochs whose record was written again after it was first seen: trained a second time."""
        final = epoch_snapshot(sweep_dir)
        return sorted(key for key, when in report.first_recorded.items() if final.get(key) != when)

    def leftovers_after(self, seconds: float = 60) -> list[psutil.Process]:
        """Processes of ours still alive `seconds` after the last driver exited (polled, so usually sooner)."""
        deadline = time.monotonic() + seconds
        alive = self.processes.alive()
        while alive and time.monotonic() < deadline:
            time.sleep(1)
            alive = self.processes.alive()
        return alive


def _is_trial_worker(process: psutil.Process) -> bool:
    try:
        return any(WORKER_MARK in part for part in process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def read_rows(path: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(path.read_bytes())).to_pylist()


def epoch_snapshot(sweep_dir: Path) -> dict[tuple, object]:
    """(trial, stage, epoch) -> when it was recorded, for every epoch on disk now."""
    snapshot = {}
    for path in (sweep_dir / "results" / "epochs").glob("*.parquet"):
        for row in read_rows(path):
            snapshot[(path.stem, row["stage"], row["epoch"])] = row["recorded_at"]
    return snapshot


# Columns that measure a trial; times, ids and provenance differ between runs by nature.
COMPARED = (
    "acc_natural",
    "acc_natural_lo",
    "acc_natural_hi",
    "acc_pgd10",
    "acc_pgd10_lo",
    "acc_pgd10_hi",
    "params_preprocessor",
    "params_foundation",
    "params_head",
    "integrity_flags",
)


def metrics_by_trial(sweep_dir: Path) -> dict[str, dict]:
    rows = [row for p in (sweep_dir / "results" / "trials").glob("*.parquet") for row in read_rows(p)]
    return {row["config_hash"]: {name: row.get(name) for name in COMPARED} for row in rows}


def outcomes_by_trial(sweep_dir: Path) -> dict[str, list]:
    return {
        p.stem: sorted((r["attack"], r["index"], r["correct"]) for r in read_rows(p))
        for p in (sweep_dir / "results" / "examples").glob("*.parquet")
    }
