"""Wall time of whole sweeps at an earlier commit against this checkout, same machine, same run.

    python bench/bench_speedup.py REV [--spec search_spaces/quickstart.yaml ...] [--json PATH]

REV is checked out into a temporary git worktree; each side runs `python -m orchestrator sweep`
on the same spec file (this checkout's; `--spec-from rev`: each side its own copy), from its own
code (PYTHONPATH), in this Python environment, into a fresh sweep folder and a fresh cache. Before the timed sweep
each side pre-trains its embedded foundation into that cache (untimed: every sweep of a project
pays it once). Sides alternate spec by spec, REV first. Printed per spec: both walls, the ratio
(this checkout / REV: the issue's target is <= 0.5), and both sides' stage seconds summed over
the trials from their Parquet rows. Both sides see the same torch thread count (each trial sets
its own from resources.cpu); record the machine's load beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _machine import available_cores, concurrency  # noqa: E402

DEFAULT_SPECS = ("search_spaces/quickstart.yaml",)
# One torch thread, as a sweep's first trial (resources.cpu 1) pre-trains it: CPU float sums depend
# on the thread count, and a foundation pre-trained on 2 threads gives other accuracies.
WARM_FOUNDATION = (
    "import torch; torch.set_num_threads(1); "
    "from trainables.foundation import load_foundation; load_foundation({'name': 'embedded'})"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rev", help="the earlier commit (anything git rev-parse takes)")
    p.add_argument("--spec", action="append", default=None, help="spec path in the repo (repeatable)")
    p.add_argument(
        "--spec-from",
        choices=("this", "rev"),
        default="this",
        help="whose copy of each spec both sides run (default: this checkout's, for both)",
    )
    p.add_argument("--out", type=Path, default=None, help="keep the sweeps here (default: a temp folder, removed)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here as JSON")
    args = p.parse_args(argv)
    args.spec = args.spec or list(DEFAULT_SPECS)
    return args


def run_side(code: Path, spec: str, root: Path, label: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "CROPD_CACHE": str(root / "cache"), "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", WARM_FOUNDATION], cwd=code, env=env, check=True)
    warm = time.perf_counter() - started
    sweep_dir = root / "sweep"
    log = root / "sweep.log"
    started = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", "sweep", spec, "--out", str(sweep_dir)],
            cwd=code,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{label}: the sweep failed (exit {done.returncode}); see {log}")
    return {"wall_s": wall, "foundation_warmup_s": warm, "stages_s": stage_seconds(sweep_dir), "log": str(log)}


def stage_seconds(sweep_dir: Path) -> dict[str, float]:
    """Stage seconds summed over the sweep's trials, from its Parquet rows (read with this checkout's code)."""
    from orchestrator.store.query import load_trials

    trials = load_trials(sweep_dir)
    columns = [c for c in trials.columns if c.startswith("time_") and c.endswith("_s")]
    return {c[len("time_") : -len("_s")]: round(float(trials[c].fillna(0).sum()), 1) for c in sorted(columns)}


def trial_work_floor(stages_s: dict[str, float], spec_file: Path) -> float:
    """The least wall time the sweep's stage seconds allow: their sum over the trials that can run
    at once. Only the trial's stages count: natural, pgd10, ... are parts of evaluation."""
    from orchestrator.spec.sweep_spec import load_spec
    from trainables.schema.results import WALL_STAGES

    return sum(stages_s.get(stage, 0.0) for stage in WALL_STAGES) / concurrency(load_spec(spec_file))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.rev], capture_output=True, text=True)
    if rev.returncode != 0:
        raise SystemExit(f"bench_speedup: {args.rev}: not a commit of {REPO}")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    root = args.out or Path(tempfile.mkdtemp(prefix="bench-speedup-"))
    worktree = root / f"rev-{rev.stdout.strip()}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.rev], check=True)
    print(
        f"REV {rev.stdout.strip()} against this checkout ({head.stdout.strip()}"
        f"{'+changes' if subprocess.run(['git', '-C', str(REPO), 'diff', '--quiet', 'HEAD']).returncode else ''}); "
        f"{available_cores()} cores, load {os.getloadavg()[0]:.2f}; python {sys.executable}",
        flush=True,
    )
    figures = {}
    try:
        for spec in args.spec:
            sides = {}
            for label, code in (("rev", worktree), ("this", REPO)):
                spec_file = (REPO if args.spec_from == "this" else code) / spec
                if not spec_file.is_file():
                    raise SystemExit(f"bench_speedup: {spec_file} does not exist")
                sides[label] = run_side(code, str(spec_file), root / Path(spec).stem / label, label)
                print(
                    f"  {spec} {label}: {sides[label]['wall_s']:.1f} s; stages {sides[label]['stages_s']}", flush=True
                )
            ratio = sides["this"]["wall_s"] / sides["rev"]["wall_s"]
            floor_s = trial_work_floor(sides["this"]["stages_s"], REPO / spec)
            figures[spec] = {**sides, "ratio": ratio, "this_floor_s": floor_s}
            print(
                f"{spec}: REV {sides['rev']['wall_s']:.1f} s, this {sides['this']['wall_s']:.1f} s, ratio {ratio:.2f}"
            )
            print(
                f"  this side's stage work alone, spread perfectly over its slots: {floor_s:.1f} s "
                f"= {floor_s / sides['rev']['wall_s']:.2f}x REV (no engine, no start-up, no idle slot)"
            )
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False)
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps({"rev": rev.stdout.strip(), "head": head.stdout.strip(), "specs": figures}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
