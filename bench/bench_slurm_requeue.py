"""Slurm backend timings on a real Slurm: submission to first trial running, requeue to trial resumed,
and the work lost per interruption (in epochs), for a preemption (USR2) and an outside `scontrol requeue`.

Needs a running cluster (slurm/local_cluster/cluster.sh start). One small CRoPD trial on the embedded
data, long enough to be interrupted twice; the trial's per-epoch Parquet rows give the timeline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "helpers"), str(REPO)]

from tiny_settings import TINY_ARCH, TINY_FOUNDATION  # noqa: E402  (the tests' tiny settings)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=120, help="pre-processor epochs of the one trial (default 120)")
    parser.add_argument(
        "--interrupt-every", type=int, default=10, help="epochs between an interruption and the next (default 10)"
    )
    parser.add_argument("--partition", default="debug")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a new temp folder)")
    return parser.parse_args(argv)


def epoch_rows(sweep_dir: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for path in (sweep_dir / "results" / "epochs").glob("*.parquet"):
        try:
            rows += pq.read_table(pa.BufferReader(path.read_bytes())).to_pylist()
        except (FileNotFoundError, OSError):
            pass
    return sorted((r for r in rows if r["stage"] == "preprocessor"), key=lambda r: r["recorded_at"])


def events(sweep_dir: Path) -> list[dict]:
    path = sweep_dir / "slurm" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def wait_for(condition, timeout=600, poll=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise SystemExit("timed out")


def job_start(job_id: str) -> float | None:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "Start,State"], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        start, state = line.split("|")
        if state.startswith("RUNNING") and start not in ("Unknown", "None"):
            return time.mktime(time.strptime(start, "%Y-%m-%dT%H:%M:%S"))
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    root.mkdir(parents=True, exist_ok=True)
    spec_path = root / "requeue.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "requeue",
                "trial": {
                    "data": {"dataset": "digits2", "data_fraction": 0.5},
                    "foundation": TINY_FOUNDATION,
                    "preprocessor": {
                        "kind": "cropd",
                        "arch": TINY_ARCH,
                        "epochs": args.epochs,
                        "batch_size": 32,
                        "lr": 2e-3,
                    },
                    "head": {"epochs": 3},
                    "evaluation": {"n_examples": 40, "attacks": ["pgd10"]},
                },
                "grid": {"preprocessor.lambda": [1]},
                "objectives": {"acc_pgd10": "max"},
                "slurm": {"partition": args.partition, "time": 30, "cpus_per_task": 2, "mem": "6G"},
            },
            sort_keys=False,
        )
    )
    sweep_dir = root / "sweep"
    env = {**os.environ, "CROPD_CACHE": str(root / "cache"), "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}

    t_call = time.time()
    submitted = subprocess.run(
        [sys.executable, "-m", "orchestrator", "sweep", str(spec_path), "--out", str(sweep_dir), "--backend", "slurm"],
        env=env,
        capture_output=True,
        text=True,
    )
    t_returned = time.time()
    if submitted.returncode != 0:
        print(submitted.stderr, file=sys.stderr)
        return 1
    job_id = json.loads((sweep_dir / "slurm" / "jobs.jsonl").read_text().splitlines()[0])["job_id"]
    t_running = wait_for(lambda: job_start(job_id))
    t_driver = wait_for(lambda: next((e["time"] for e in events(sweep_dir) if e["event"] == "driver started"), None))
    first = wait_for(lambda: (epoch_rows(sweep_dir) or [None])[0])
    t_first_epoch = first["recorded_at"].timestamp()

    print(f"=== Slurm backend on {os.uname().nodename}: one CRoPD trial, {args.epochs} pre-processor epochs ===")
    print(f"submission command: {t_returned - t_call:.1f} s (spec check, sbatch --test-only, sbatch)")
    print(f"submit -> job RUNNING (sacct Start, 1 s resolution): {t_running - t_call:.1f} s")
    print(f"submit -> driver started in the job: {t_driver - t_call:.1f} s")
    print(f"submit -> first trial epoch done (Ray up, trial running): {t_first_epoch - t_call:.1f} s")
    epoch_s = None

    rows = []
    for restart, (how, command) in enumerate(
        (
            ("preemption (USR2)", ["scancel", "--signal", "USR2", job_id]),
            ("scontrol requeue", ["scontrol", "requeue", job_id]),
        ),
        start=1,
    ):
        target = max(r["epoch"] for r in epoch_rows(sweep_dir)) + args.interrupt_every
        wait_for(lambda: max(r["epoch"] for r in epoch_rows(sweep_dir)) >= target)
        before = epoch_rows(sweep_dir)
        times = [r["recorded_at"].timestamp() for r in before]
        epoch_s = (times[-1] - times[-6]) / 5 if len(times) >= 6 else None
        t_signal = time.time()
        subprocess.run(command, check=True)
        t_driver2 = wait_for(
            lambda: next(
                (
                    e["time"]
                    for e in events(sweep_dir)
                    if e["event"] == "driver started" and e["restart_count"] == restart
                ),
                None,
            )
        )
        # The old run may finish an epoch between the signal and its end: the last one before the restart counts.
        last_before = [r for r in epoch_rows(sweep_dir) if r["recorded_at"].timestamp() < t_driver2][-1]
        resumed = wait_for(
            lambda: next((r for r in epoch_rows(sweep_dir) if r["recorded_at"].timestamp() > t_driver2), None)
        )
        partial = max(0.0, t_signal - last_before["recorded_at"].timestamp()) / epoch_s if epoch_s else float("nan")
        rows.append(
            (
                how,
                t_driver2 - t_signal,
                resumed["recorded_at"].timestamp() - t_signal,
                last_before["epoch"],
                resumed["epoch"],
                resumed["epoch"] - 1 - last_before["epoch"],
                partial,
            )
        )

    print(f"epoch time (pre-processor, before the interruption): {epoch_s:.2f} s")
    print(
        "| interruption | signal -> driver restarted (s) | signal -> first resumed epoch done (s) | last epoch saved "
        "before | first epoch after | whole epochs lost | partial epoch lost (at most) |"
    )
    print("|---|---|---|---|---|---|---|")
    for how, restarted, next_epoch, last, first_after, lost, partial in rows:
        print(f"| {how} | {restarted:.1f} | {next_epoch:.1f} | {last} | {first_after} | {lost} | {partial:.2f} |")
    wait_for(lambda: any(e["event"] == "driver finished" for e in events(sweep_dir)), timeout=900)
    print(f"sweep finished; folder {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
