"""Resident memory of one process that runs trials back to back, as a reused Ray worker does.

cifar2_table1's first run was killed for memory at trial 34 of 36: its two Ray workers, each
running trial after trial (reuse_actors), had grown to ~11 GB. This runs embedded_table1's seed-1
trials (no AutoAttack; 2 pre-processor epochs, 5 clean-head or 1 robust-head epochs, to be quick)
in this process one after another and prints its resident memory after each: as it is, and with
the trial function's release_freed_memory() (gc, then glibc's malloc_trim) after each.

Run: python bench/worker_memory.py [--trials 12]   (one thread; about 10 minutes on a CPU)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def resident_gib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def run(trials: int, release: bool) -> list[float]:
    from orchestrator.engine.trial import release_freed_memory
    from orchestrator.spec.sweep_spec import load_spec
    from trainables.trial import run_trial

    spec = load_spec(REPO / "search_spaces" / "embedded_table1.yaml")
    points = [point for point in spec.grid_points if point.get("seed") == 1][:trials]
    root = Path(tempfile.mkdtemp(prefix="worker-memory-"))
    after = []
    for i, point in enumerate(points):
        config = spec.trial_config(point)
        config["preprocessor"]["epochs"] = 2
        config["head"]["epochs"] = 1 if point.get("head.mode") == "robust" else 5
        started = time.time()
        run_trial(config, root / f"trial-{i}", artifacts=root / "artifacts")
        if release:
            release_freed_memory()
        after.append(resident_gib())
        print(
            f"  {i:2d} {point.get('preprocessor.kind'):8s} {point.get('head.mode'):6s} "
            f"{after[-1]:.2f} GiB resident ({time.time() - started:.0f} s)",
            flush=True,
        )
    return after


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--release", action="store_true", help="release_freed_memory() after each trial")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    print(f"release_freed_memory after each trial: {args.release}; start {resident_gib():.2f} GiB", flush=True)
    after = run(args.trials, args.release)
    print(f"largest after a trial: {max(after):.2f} GiB; after the last: {after[-1]:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
