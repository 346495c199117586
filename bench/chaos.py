"""The long chaos run: N SIGKILLs of each kind (driver, worker, process group) across one real sweep.

    python bench/chaos.py --kills 20 --out /tmp/chaos-bench

Prints the harness's table (kills by kind, resumes, rows, duplicate rows, epochs redone, Ray
processes left behind) and whether every metric equals an uninterrupted run of the same spec.
Uses tests/chaos/chaos_harness.py, the same harness the CI test runs with 5 kills of each kind.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests" / "chaos"), str(REPO / "tests" / "helpers"), str(REPO)]

from _machine import available_cores  # noqa: E402
from chaos_harness import KINDS, Chaos, chaos_spec, metrics_by_trial, outcomes_by_trial, read_rows  # noqa: E402
from tiny_settings import TINY_ARCH, TINY_FOUNDATION  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills of each kind")
    parser.add_argument(
        "--epochs", type=int, default=120, help="pre-processor epochs per trial (long enough for the kills)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="chaos-bench-"))
    os.environ.setdefault("CROPD_CACHE", str(out / "cache"))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    spec = chaos_spec(out, TINY_FOUNDATION, TINY_ARCH, name="chaos", epochs=args.epochs, head_epochs=4)
    kinds = [kind for kind in KINDS for _ in range(args.kills)]
    random.Random(args.seed).shuffle(kinds)

    killed = out / "killed" / "chaos"
    killed.parent.mkdir(parents=True, exist_ok=True)
    chaos = Chaos(spec, killed, seed=args.seed)
    try:
        report = chaos.run(kinds, finish_timeout=3600)
        left = chaos.leftovers_after(60)
    finally:
        if chaos.driver is not None and chaos.driver.poll() is None:
            chaos.driver.kill()
        chaos.processes.reap()
    reference = out / "reference" / "chaos"
    reference.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        chaos.command[:4] + [str(spec), "--out", str(reference), "--plain"],
        cwd=reference.parent,
        env=chaos.env,
        check=True,
        capture_output=True,
    )

    rows = [row for p in (killed / "results" / "trials").glob("*.parquet") for row in read_rows(p)]
    keys = [row["config_hash"] for row in rows]
    print(f"machine: {available_cores()} cores; one torch thread per trial, two trials at a time")
    print(
        f"spec: {spec} ({len(keys)} trials, {args.epochs} pre-processor epochs); final exit code "
        f"{chaos.driver.returncode}"
    )
    print("| kind | kills |\n|---|---|")
    for kind in KINDS:
        print(f"| {kind} | {report.kills[kind]} |")
    print(
        "\n| resumes | rows | duplicate rows | not TERMINATED | epochs redone | Ray processes left 60 s after exit | "
        "left by killed drivers (stopped by the next) | wall s |\n|---|---|---|---|---|---|---|---|"
    )
    print(
        f"| {report.resumes} | {len(rows)} | {len(keys) - len(set(keys))} | "
        f"{sum(row['status'] != 'TERMINATED' for row in rows)} | {len(Chaos.epochs_redone(report, killed))} | "
        f"{len(left)} | "
        f"{report.left_by_killed_drivers} | {report.seconds:.0f} |"
    )
    same = metrics_by_trial(killed) == metrics_by_trial(reference) and outcomes_by_trial(killed) == outcomes_by_trial(
        reference
    )
    print(f"\nmetrics and per-example outcomes equal to an uninterrupted run: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
