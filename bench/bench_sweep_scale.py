"""Scale of the sweep engine: many no-op trials through run_sweep (Ray Tune, OptunaSearch, Parquet).

The trial function does no training: by default it validates its config and writes its Parquet row
through orchestrator.store.results as the real tune_trial does, then makes one tune.report; with
--report-only it makes the report alone. Reported: wall, per-trial overhead, throughput over the
run, driver peak RSS, Ray's processes' RSS, the size of Ray's experiment folder, and the results
read back with DuckDB.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

# Put this checkout first on the path, so `python bench/bench_sweep_scale.py` measures the code next
# to it even where the project is not installed (or another copy of it is).
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _machine import available_cores  # noqa: E402

MIB = 1024 * 1024
# A valid base trial (never run): the quickstart's, so validation and flattening do real work.
BASE_TRIAL = {
    "data": {"dataset": "digits", "data_fraction": 0.33},
    "foundation": {"name": "embedded", "mode": "frozen"},
    "preprocessor": {"kind": "cropd", "arch": "tiny", "epochs": 10, "batch_size": 32, "lr": 0.002, "warmup_epochs": 1},
    "head": {"mode": "clean", "epochs": 30, "milestones": [20]},
    "evaluation": {"attacks": ["pgd10", "pgd20"], "n_examples": 200},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=1000, metavar="N", help="planned trials (default 1000)")
    p.add_argument("--cpu", type=float, default=0.25, help="resources.cpu per trial (default 0.25)")
    p.add_argument("--max-concurrent", type=int, default=8, help="max_concurrent (default 8 = 2 cores / 0.25)")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="the trial makes its tune.report only (default: it also validates its config and writes its Parquet row)",
    )
    p.add_argument(
        "--checkpoints",
        type=int,
        default=0,
        metavar="K",
        help="the trial first makes K reports each with a tiny checkpoint, as tune_trial does once per "
        "epoch (default 0); with runner.CHECKPOINTS_KEPT set, Tune saves its experiment state every that many",
    )
    p.add_argument(
        "--objectives", default="acc_natural", help="comma-separated objective metrics, maximised (default acc_natural)"
    )
    p.add_argument("--out", type=Path, default=None, help="sweep dir (default: a temp folder, removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the default temp folder")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here as JSON")
    args = p.parse_args(argv)
    if args.trials < 1:
        p.error("--trials must be >= 1")
    if args.cpu <= 0:
        p.error("--cpu must be > 0")
    if args.checkpoints < 0:
        p.error("--checkpoints must be >= 0")
    return args


# --- the trial functions (module level: Ray ships them to its workers) --------------------------------


def _metric_value(key: str, metric: str) -> float:
    """A deterministic number in [0, 1) per (config, metric), so Optuna sees distinct results."""
    import hashlib

    return int(hashlib.sha256(f"{key}/{metric}".encode()).hexdigest()[:8], 16) / 16**8


def _epoch_reports(objectives: list[str], key: str) -> None:
    """$BENCH_SCALE_CHECKPOINTS reports with a one-file checkpoint each, like tune_trial's on_epoch.

    Read here, in the worker: main() sets it before Ray starts, and Ray's workers inherit it."""
    import tempfile as _tempfile

    from ray import tune

    for epoch in range(1, int(os.environ.get("BENCH_SCALE_CHECKPOINTS", "0")) + 1):
        with _tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "manifest.json").write_text(
                json.dumps({"config_hash": key, "stage": "noop", "epoch": epoch})
            )
            tune.report(
                {**{metric: math.nan for metric in objectives}, "epoch": epoch, "stage": "noop"},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )


def noop_trial_with_row(
    params: dict,
    *,
    sweep_dir: str,
    sweep_name: str,
    base_trial: dict,
    objectives: list[str],
    cpus: float,
    gpus: float,
    **_: object,
) -> None:
    """What tune_trial does around run_trial, without run_trial: config, Parquet row, one report."""
    from ray import tune

    from orchestrator.spec.sweep_spec import apply_overrides
    from orchestrator.store.parquet import write_trial
    from orchestrator.store.rows import TERMINATED, now_utc, trial_row
    from trainables.artifacts import config_hash
    from trainables.schema import validate_trial_config

    started = now_utc()
    config = validate_trial_config(apply_overrides(base_trial, params))
    key = config_hash(config)
    _epoch_reports(objectives, key)
    metrics = {metric: _metric_value(key, metric) for metric in objectives}
    write_trial(
        Path(sweep_dir),
        trial_row(
            sweep=sweep_name,
            trial_id=tune.get_context().get_trial_id(),
            config_hash=key,
            config=config,
            status=TERMINATED,
            metrics=metrics,
            error=None,
            started_at=started,
            finished_at=now_utc(),
            extra={"device": "cpu"},
        ),
    )
    tune.report({**metrics, "stage": "done", "config_hash": key})


def noop_trial_report_only(
    params: dict,
    *,
    sweep_dir: str,
    sweep_name: str,
    base_trial: dict,
    objectives: list[str],
    cpus: float,
    gpus: float,
    **_: object,
) -> None:
    """One tune.report of the objective metrics, nothing else."""
    from ray import tune

    key = json.dumps(params, sort_keys=True)
    _epoch_reports(objectives, key)
    tune.report({**{metric: _metric_value(key, metric) for metric in objectives}, "stage": "done"})


# --- the spec, built in code ----------------------------------------------------------------------------


def grid_for(n: int) -> dict[str, list]:
    """n points: lambda x temperature (10 temperatures) when n is a multiple of 10 and >= 20, else lambda alone."""
    if n >= 20 and n % 10 == 0:
        lambdas = [round(0.01 * (i + 1), 4) for i in range(n // 10)]
        return {
            "preprocessor.lambda": lambdas,
            "preprocessor.temperature": [round(0.1 * (i + 1), 2) for i in range(10)],
        }
    return {"preprocessor.lambda": [round(0.01 * (i + 1), 4) for i in range(n)]}


def build_spec(args: argparse.Namespace):
    from orchestrator.spec.sweep_spec import parse_spec

    raw = {
        "name": f"scale{args.trials}",
        "trial": BASE_TRIAL,
        "grid": grid_for(args.trials),
        "objectives": {metric: "max" for metric in args.objectives.split(",") if metric},
        "resources": {"cpu": args.cpu, "gpu": 0},
        "max_concurrent": args.max_concurrent,
        "max_retries": 0,
    }
    return parse_spec(raw, source="<bench_sweep_scale>", default_name="scale")


# --- measuring ------------------------------------------------------------------------------------------


class ProcessMonitor:
    """Every `period` s: RSS of this driver's descendants (Ray's GCS, raylet, workers), the load
    average, and the CPU time of processes outside this tree (other people's jobs)."""

    def __init__(self, period: float = 2.0):
        self.period = period
        self.peak_children_rss = 0
        self.peak_children_count = 0
        self.last_children_rss = 0
        self.last_children_count = 0
        self.last_children_by_name: dict[str, tuple[int, int]] = {}
        self.frozen = False  # set once the last sample before ray.shutdown is taken
        self.loads: list[float] = []
        self._others: dict[int, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = self.ended = 0.0

    def __enter__(self) -> "ProcessMonitor":
        self.started = time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.ended = time.time()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.period):
                return

    def sample(self) -> None:
        import psutil

        self.loads.append(os.getloadavg()[0])
        me = psutil.Process()
        try:
            children = me.children(recursive=True)
        except psutil.Error:
            children = []
        ours = {me.pid, *(child.pid for child in children)}
        total, by_name = 0, {}
        for child in children:
            try:
                rss = child.memory_info().rss
                name = child.name()
            except psutil.Error:
                continue
            total += rss
            count, size = by_name.get(name, (0, 0))
            by_name[name] = (count + 1, size + rss)
        if total and not self.frozen:  # keep the sample taken just before ray.shutdown
            self.last_children_rss, self.last_children_count, self.last_children_by_name = total, len(children), by_name
        if total > self.peak_children_rss:
            self.peak_children_rss, self.peak_children_count = total, len(children)
        for proc in psutil.process_iter(["pid", "cpu_times"]):
            if proc.pid in ours or proc.info["cpu_times"] is None:
                continue
            cpu = proc.info["cpu_times"].user + proc.info["cpu_times"].system
            self._others[proc.pid] = (self._others.get(proc.pid, (cpu, cpu))[0], cpu)

    def others_cpu_s(self) -> float:
        return sum(last - first for first, last in self._others.values())


def folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak if sys.platform == "darwin" else peak * 1024


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from importlib.metadata import version

    import ray
    from _timed_backend import TimedBackend

    from orchestrator.engine.runner import run_sweep
    from orchestrator.store.paths import SweepPaths
    from orchestrator.store.query import connect

    load_start = os.getloadavg()[0]
    rss_after_imports = peak_rss_bytes()
    started = time.perf_counter()
    spec = build_spec(args)
    spec_s = time.perf_counter() - started

    root = args.out or Path(tempfile.mkdtemp(prefix="bench-sweep-scale-"))
    sweep_dir = root / "sweep" if args.out is None else root
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        print(f"error: {sweep_dir} is not empty; pick another --out", file=sys.stderr)
        return 2
    # Workers read it at import (Ray starts them with the driver's environment).
    os.environ["BENCH_SCALE_CHECKPOINTS"] = str(args.checkpoints)
    trial_function = noop_trial_report_only if args.report_only else noop_trial_with_row
    stamps: dict[str, float] = {}

    def last_look():
        # The last look at Ray's processes, while they are still there.
        monitor.sample()
        monitor.frozen = True

    ray_temp = tempfile.mkdtemp(prefix="crs-", dir="/tmp")  # Ray's unix sockets: keep the path short
    progress_log = root / "progress.log" if args.out is None else root.parent / f"{root.name}.progress.log"
    progress_log.parent.mkdir(parents=True, exist_ok=True)
    print(f"sweep dir: {sweep_dir}; progress lines go to {progress_log}", file=sys.stderr, flush=True)
    try:
        with ProcessMonitor() as monitor, open(progress_log, "w") as log, contextlib.redirect_stderr(log):
            called = time.time()
            outcome = run_sweep(
                spec,
                sweep_dir,
                backend=TimedBackend(stamps, before_stop=last_look, temp_dir=ray_temp),
                live=False,
                trial_function=trial_function,
            )
            returned = time.time()
        wall = returned - called
        driver_peak = peak_rss_bytes()

        ray_dir = SweepPaths(sweep_dir).ray
        ray_size, ray_files = folder_size(ray_dir)
        state_files = sorted(ray_dir.glob("experiment_state*.json"))
        state_size = sum(p.stat().st_size for p in state_files)
        searcher_files = sorted(ray_dir.glob("searcher-state*"))
        searcher_size = sum(p.stat().st_size for p in searcher_files)
        trial_dirs = [p for p in ray_dir.iterdir() if p.is_dir()]
        journal = SweepPaths(sweep_dir).optuna_journal
        results = SweepPaths(sweep_dir).results.root
        results_size, results_files = folder_size(results) if results.exists() else (0, 0)

        query_started = time.perf_counter()
        rows = distinct = terminated = 0
        starts: list[float] = []
        if not args.report_only:
            connection = connect(sweep_dir)
            rows, distinct, terminated = connection.execute(
                "SELECT count(*), count(DISTINCT config_hash), count(*) FILTER (WHERE status = 'TERMINATED') "
                "FROM trials"
            ).fetchone()
            starts = [r[0] for r in connection.execute("SELECT epoch(started_at) FROM trials ORDER BY 1").fetchall()]
        query_s = time.perf_counter() - query_started
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)

    n = spec.num_trials
    print()
    print(
        f"=== Sweep engine at scale: {n} no-op trials "
        f"({'tune.report only' if args.report_only else 'config + Parquet row + tune.report'}"
        f"{f', after {args.checkpoints} checkpointed reports' if args.checkpoints else ''}), "
        f"resources cpu {args.cpu}, max_concurrent {args.max_concurrent}, objectives {list(spec.objectives)} ==="
    )
    print(
        f"machine: {os.cpu_count()} CPUs ({available_cores()} available), ray {ray.__version__}, torch "
        f"{version('torch')} (not imported: the driver of a sweep needs none), "
        f"python {sys.version.split()[0]}"
    )
    print(
        f"load avg (1 min): {load_start:.2f} at start, during the run mean "
        f"{sum(monitor.loads) / len(monitor.loads):.2f} "
        f"max {max(monitor.loads):.2f}; other processes used ~{monitor.others_cpu_s():.0f} CPU-s "
        f"= {monitor.others_cpu_s() / max(wall, 1e-9):.2f} cores on average"
    )
    print(
        f"grid: {', '.join(f'{k} x {len(v)}' for k, v in grid_for(args.trials).items())}; spec parse + validation of "
        f"{n} trial configs: {spec_s:.2f} s"
    )
    print(f"outcome: {outcome.done} done, {outcome.failed} failed, {outcome.unfinished} unfinished")
    print(
        f"total wall (run_sweep call -> return): {wall:.1f} s; per-trial overhead = wall / trials = "
        f"{wall / n * 1000:.0f} ms; "
        f"{n / wall:.1f} trials/s"
    )
    print(
        f"  run_sweep called -> ray.init done: {stamps['ray_init_end'] - called:.1f} s "
        f"(ray.init {stamps['ray_init_end'] - stamps['ray_init_begin']:.1f} s); "
        f"ray.init done -> shutdown begins: {stamps['ray_stop_begin'] - stamps['ray_init_end']:.1f} s; "
        f"ray.shutdown {stamps['ray_stop_end'] - stamps['ray_stop_begin']:.1f} s; "
        f"after shutdown -> return {returned - stamps['ray_stop_end']:.1f} s"
    )
    if len(starts) >= 10:
        first, last = starts[0], starts[-1]
        print(
            f"  first trial started {first - stamps['ray_init_end']:.1f} s after ray.init; last trial started "
            f"{stamps['ray_stop_begin'] - last:.1f} s before shutdown"
        )
        tenth = len(starts) // 10
        rates = []
        for i in range(10):
            chunk = starts[i * tenth : (i + 1) * tenth + 1]
            span = chunk[-1] - chunk[0]
            rates.append((len(chunk) - 1) / span if span > 0 else math.inf)
        print("  trial starts per second, by tenth of the run: " + " ".join(f"{r:.1f}" for r in rates))
    print(
        f"driver peak RSS (ru_maxrss): {driver_peak / MIB:,.0f} MiB (after imports, before the sweep: "
        f"{rss_after_imports / MIB:,.0f} MiB)"
    )
    by_name = ", ".join(
        f"{name} x{count} {size / MIB:,.0f}"
        for name, (count, size) in sorted(monitor.last_children_by_name.items(), key=lambda kv: -kv[1][1])
    )
    print(
        "Ray's processes (driver's descendants), RSS sum: last sample before shutdown "
        f"{monitor.last_children_rss / MIB:,.0f} MiB "
        f"in {monitor.last_children_count} processes ({by_name}); peak {monitor.peak_children_rss / MIB:,.0f} MiB "
        f"in {monitor.peak_children_count} (RSS counts shared pages once per process)"
    )
    print(
        f"Ray experiment folder {ray_dir}: {ray_size / MIB:,.1f} MiB in {ray_files} files, {len(trial_dirs)} "
        "trial folders; "
        f"experiment_state json {state_size / 1024:,.0f} KiB, searcher state {searcher_size / 1024:,.0f} KiB"
    )
    print(
        f"Optuna journal: {journal.stat().st_size / 1024 if journal.exists() else 0:,.0f} KiB; "
        f"results/: {results_size / MIB:,.1f} MiB in {results_files} files"
    )
    if not args.report_only:
        print(
            f"DuckDB read-back ({query_s:.2f} s incl. connect): rows {rows}, distinct config_hash {distinct}, "
            f"duplicates {rows - distinct}, TERMINATED {terminated}  -> "
            f"{'OK' if rows == n and distinct == n else 'MISMATCH'}"
        )
    print(f"1-min load average at the end: {os.getloadavg()[0]:.2f}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "trials": n,
                    "report_only": args.report_only,
                    "cpu": args.cpu,
                    "max_concurrent": args.max_concurrent,
                    "wall_s": wall,
                    "per_trial_s": wall / n,
                    "done": outcome.done,
                    "failed": outcome.failed,
                    "driver_peak_rss_mib": driver_peak / MIB,
                    "ray_rss_last_mib": monitor.last_children_rss / MIB,
                    "ray_rss_peak_mib": monitor.peak_children_rss / MIB,
                    "ray_folder_mib": ray_size / MIB,
                    "ray_files": ray_files,
                    "experiment_state_kib": state_size / 1024,
                    "rows": rows,
                    "duplicates": rows - distinct,
                    "load_start": load_start,
                    "load_mean": sum(monitor.loads) / len(monitor.loads),
                },
                indent=2,
            )
        )
    if args.out is None and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"kept: {sweep_dir}", file=sys.stderr)
    ok = outcome.done == n and (args.report_only or (rows == n and distinct == n))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
