"""Reading a large sweep's results back: per-trial files alone against results/cache/ (cache.py).

Writes N trials' rows and per-example outcomes through orchestrator.store.results (the files a sweep
writes, with the quickstart's config and 3 attacks x the given test points per trial), then times
in fresh processes: `connect` + a query of every trial row and a count of the examples, first
with no cache (every file read), then after `refresh_all` (the driver does it when a sweep ends).

    python bench/bench_results_read.py [--trials 10000] [--points 200] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

READ = """
import sys, time
started = time.perf_counter()
from orchestrator.store.query import connect
connection = connect(sys.argv[1])
rows = connection.execute("SELECT count(*), count(DISTINCT config_hash), avg(acc_natural) FROM trials").fetchone()
examples = connection.execute("SELECT count(*) FROM examples").fetchone()[0]
print(time.perf_counter() - started, rows[0], rows[1], examples)
"""


def write_sweep(sweep_dir: Path, trials: int, points: int) -> None:
    from orchestrator.store.parquet import write_examples, write_trial
    from orchestrator.store.rows import TERMINATED, now_utc, trial_row
    from trainables.artifacts import config_hash
    from trainables.schema import validate_trial_config

    base = {
        "data": {"dataset": "digits", "data_fraction": 0.5},
        "foundation": {"name": "embedded"},
        "preprocessor": {"kind": "cropd", "epochs": 20},
        "head": {"epochs": 150},
        "evaluation": {"attacks": ["pgd10", "pgd20"]},
    }
    for i in range(trials):
        config = validate_trial_config({**base, "preprocessor": {"kind": "cropd", "lambda": 0.001 * (i + 1)}})
        key = config_hash(config)
        identity = {"sweep": "bench", "trial_id": f"t{i}", "config_hash": key}
        correct = {name: [(i + j) % 3 > 0 for j in range(points)] for name in ("natural", "pgd10", "pgd20")}
        write_examples(
            sweep_dir,
            key,
            {"index": list(range(points)), "label": [j % 10 for j in range(points)], "correct": correct},
            identity,
        )
        metrics = {f"acc_{name}": sum(values) / points for name, values in correct.items()}
        now = now_utc()
        write_trial(
            sweep_dir,
            trial_row(
                sweep="bench",
                trial_id=f"t{i}",
                config_hash=key,
                config=config,
                status=TERMINATED,
                metrics=metrics,
                error=None,
                started_at=now,
                finished_at=now,
            ),
        )


def timed_read(sweep_dir: Path) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", READ, str(sweep_dir)], capture_output=True, text=True, check=True, cwd=REPO
    )
    wall = time.perf_counter() - started
    return wall, out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=10_000)
    p.add_argument("--points", type=int, default=200, help="test points per trial (x3 attacks of example rows)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = p.parse_args(argv)
    from orchestrator.store import cache
    from orchestrator.store.cache import REFRESH_AT

    root = args.out or Path(tempfile.mkdtemp(prefix="bench-results-read-"))
    sweep_dir = root / "sweep"
    started = time.perf_counter()
    write_sweep(sweep_dir, args.trials, args.points)
    print(f"wrote {args.trials} trials ({args.points * 3} example rows each) in {time.perf_counter() - started:.1f} s")
    figures = {}
    # A reader that reads >= REFRESH_AT files itself writes the cache: the first read is the uncached one.
    figures["no cache (first reader)"] = timed_read(sweep_dir)
    for cache_file in (sweep_dir / "results" / "cache").glob("*.parquet"):
        cache_file.unlink()
    started = time.perf_counter()
    cache.refresh_all(sweep_dir / "results")
    figures["refresh_all (driver, sweep end)"] = (time.perf_counter() - started, "")
    figures["with cache"] = timed_read(sweep_dir)
    for name, (seconds, out) in figures.items():
        print(f"{name:34s} {seconds:6.2f} s   {out}")
    print(f"(connect + queries inside the reader process is the first number of its output; REFRESH_AT={REFRESH_AT})")
    if args.json:
        args.json.write_text(json.dumps({k: v[0] for k, v in figures.items()}, indent=2))
    if args.out is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
