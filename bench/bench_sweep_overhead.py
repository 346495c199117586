"""Orchestration overhead: a sweep through the engine (run_sweep, Ray Tune, Optuna, Parquet) against
the same trial configs run one after another by plain Python (trainables.trial.run_trial in a loop).

Same machine, one run. Both sides start cold for the pre-processors (fresh sweep dir / fresh workdir
and artifact store each) and share the embedded foundation cache, which is pre-trained (or found)
once before either side is timed. Default: search_spaces/quickstart.yaml, 8 trials, 2 at a time.
"""

from __future__ import annotations

import os

# Set before torch (and its OpenMP runtime) is imported: on a CPU shared with other jobs, spinning
# OpenMP workers burn the cores the other side of the comparison (and other jobs) need.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

# Put this checkout first on the path, so `python bench/bench_sweep_overhead.py` measures the code
# next to it even where the project is not installed (or another copy of it is).
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _machine import available_cores, concurrency  # noqa: E402

# A trial's own stages (they add up to its time) and their columns; torch-free.
from trainables.schema.results import WALL_STAGES, time_column  # noqa: E402

DEFAULT_SPEC = REPO / "search_spaces" / "quickstart.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--spec", type=Path, default=DEFAULT_SPEC, help="sweep YAML (default: search_spaces/quickstart.yaml)"
    )
    p.add_argument(
        "--trials",
        type=int,
        default=None,
        metavar="N",
        help="run only the first N planned trials (grid points first, then Optuna samples)",
    )
    p.add_argument("--max-concurrent", type=int, default=None, help="override the spec's max_concurrent")
    p.add_argument(
        "--serial-threads",
        default="2",
        metavar="T[,T...]",
        help="torch threads of the plain-Python loop; one serial run per value (default 2: the "
        "whole 2-core machine, as the engine uses it with 2 one-thread trials). '2,1' adds a run "
        "with the engine trials' own thread count",
    )
    p.add_argument(
        "--serial-first", action="store_true", help="run the serial loop(s) before the engine (grid-only specs)"
    )
    p.add_argument("--skip-engine", action="store_true", help="time only the serial loop(s)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the sweep dir and serial workdirs (default: a temp folder, removed at the end)",
    )
    p.add_argument("--keep", action="store_true", help="keep the default temp folder")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here as JSON")
    # Internal: the parent re-invokes this script for each serial loop, in a fresh process.
    p.add_argument("--serial-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.threads = [int(t) for t in args.serial_threads.split(",") if t.strip()]
    except ValueError:
        p.error("--serial-threads: integers separated by commas")
    if any(t < 1 for t in args.threads):
        p.error("--serial-threads: each value must be >= 1")
    if args.trials is not None and args.trials < 1:
        p.error("--trials must be >= 1")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        p.error("--max-concurrent must be >= 1")
    return args


# --- load on a shared machine ---------------------------------------------------------------------


class LoadMonitor:
    """Samples, every `period` s, the 1-min load average and the CPU time that processes outside
    this one's process tree (other people's jobs) used; the engine's Ray processes are descendants
    of this driver, the serial loop's process a child, so both count as ours."""

    def __init__(self, period: float = 5.0):
        self.period = period
        self.loads: list[float] = []
        self._others: dict[int, tuple[float, float]] = {}  # pid -> (first seen cpu, last seen cpu)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = self.ended = 0.0

    def __enter__(self) -> "LoadMonitor":
        self.started = time.time()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.ended = time.time()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def _sample(self) -> None:
        self.loads.append(os.getloadavg()[0])
        try:
            import psutil
        except ImportError:
            return
        me = os.getpid()
        for proc in psutil.process_iter(["pid", "cpu_times"]):
            try:
                times = proc.info["cpu_times"]
                if times is None or proc.pid == me or any(parent.pid == me for parent in proc.parents()):
                    continue
            except (psutil.Error, OSError):
                continue
            cpu = times.user + times.system
            first = self._others.get(proc.pid, (cpu, cpu))[0]
            self._others[proc.pid] = (first, cpu)

    def summary(self) -> str:
        wall = max(self.ended - self.started, 1e-9)
        others = sum(last - first for first, last in self._others.values())
        mean = sum(self.loads) / len(self.loads)
        return (
            f"load avg (1 min) mean {mean:.2f}, max {max(self.loads):.2f}; other processes used ~{others:.0f} CPU-s "
            f"= {others / wall:.2f} cores on average"
        )

    def as_dict(self) -> dict:
        others = sum(last - first for first, last in self._others.values())
        return {
            "load_mean": sum(self.loads) / len(self.loads),
            "load_max": max(self.loads),
            "others_cpu_s": others,
            "wall_s": self.ended - self.started,
        }


# --- the serial loop, in its own process ------------------------------------------------------------


def serial_worker(job_path: Path) -> int:
    """Run the job's trial configs one after another with run_trial; write the timings next to it."""
    job = json.loads(job_path.read_text())
    import torch

    from trainables.schema import validate_trial_config
    from trainables.trial import run_trial

    torch.set_num_threads(job["threads"])
    root = Path(job["root"])
    from trainables.artifacts import config_hash

    trials = []
    loop_started = time.perf_counter()
    for config in job["configs"]:
        started = time.perf_counter()
        resolved = validate_trial_config(config)
        key = config_hash(resolved)
        metrics = run_trial(resolved, root / "trials" / key, artifacts=root / "artifacts", device=job["device"])
        trials.append(
            {
                "config_hash": key,
                "wall_s": time.perf_counter() - started,
                **{time_column(s): metrics.get(time_column(s), math.nan) for s in WALL_STAGES},
                "acc_natural": metrics.get("acc_natural"),
            }
        )
    wall = time.perf_counter() - loop_started
    job_path.with_suffix(".out.json").write_text(
        json.dumps(
            {
                "wall_s": wall,
                "trials": trials,
                "threads": torch.get_num_threads(),
                "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
            }
        )
    )
    return 0


def run_serial(configs: list[dict], root: Path, threads: int, device: str) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    job = root / "job.json"
    job.write_text(json.dumps({"configs": configs, "root": str(root), "threads": threads, "device": device}))
    # A fresh process per loop: no warm allocator or imported-and-initialised state from the engine run.
    command = [sys.executable, str(Path(__file__).resolve()), "--serial-worker", str(job)]
    with LoadMonitor() as load:
        done = subprocess.run(command, stdout=sys.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"serial loop ({threads} threads) failed with exit status {done.returncode}")
    result = json.loads(job.with_suffix(".out.json").read_text())
    result["load"] = load.as_dict()
    result["load_summary"] = load.summary()
    return result


# --- the engine -------------------------------------------------------------------------------------


def run_engine(spec, sweep_dir: Path) -> dict:
    from _timed_backend import TimedBackend

    from orchestrator.engine.runner import run_sweep
    from orchestrator.store.query import load_trials

    stamps: dict[str, float] = {}

    # Ray's unix sockets live under its temp dir: the path must be short.
    ray_temp = tempfile.mkdtemp(prefix="crb-", dir="/tmp")
    try:
        with LoadMonitor() as load:
            called = time.time()
            outcome = run_sweep(spec, sweep_dir, backend=TimedBackend(stamps, temp_dir=ray_temp), live=False)
            returned = time.time()
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    frame = load_trials(sweep_dir)
    trials = []
    for row in frame.to_dict("records"):
        trials.append(
            {
                "config_hash": row["config_hash"],
                "status": row["status"],
                "started": row["started_at"].timestamp(),
                "finished": row["finished_at"].timestamp(),
                **{time_column(s): float(row.get(time_column(s), math.nan)) for s in WALL_STAGES},
                "acc_natural": row.get("acc_natural"),
            }
        )
    overrides = {}
    for trial in trials:
        saved = sweep_dir / "trials" / trial["config_hash"] / "config.json"
        if saved.is_file():
            overrides[trial["config_hash"]] = json.loads(saved.read_text())["config"]
    return {
        "called": called,
        "returned": returned,
        "wall_s": returned - called,
        "stamps": stamps,
        "done": outcome.done,
        "failed": outcome.failed,
        "unfinished": outcome.unfinished,
        "trials": trials,
        "configs_by_hash": overrides,
        "load": load.as_dict(),
        "load_summary": load.summary(),
    }


# --- set-up -------------------------------------------------------------------------------------------


def cut_spec(spec, n: int | None, max_concurrent: int | None):
    """The spec with only its first `n` trials (grid points first), and max_concurrent overridden."""
    changes = {}
    if n is not None and n < spec.num_trials:
        grid = spec.grid_points[:n]
        changes.update(grid_points=grid, search_trials=max(0, n - len(grid)), raw={**spec.raw, "bench_first_trials": n})
    if max_concurrent is not None:
        changes["max_concurrent"] = max_concurrent
    return dataclasses.replace(spec, **changes) if changes else spec


def pretrain_foundations(configs: list[dict]) -> list[str]:
    """Every distinct foundation the trials use, pre-trained (embedded) or found in the cache, untimed."""
    from trainables.artifacts import config_hash
    from trainables.foundation import default_cache_root, load_foundation
    from trainables.schema import validate_trial_config

    lines, seen = [], set()
    for config in configs:
        foundation = validate_trial_config(config)["foundation"]
        key = config_hash(foundation)
        if key in seen:
            continue
        seen.add(key)
        started = time.perf_counter()
        load_foundation(foundation)
        lines.append(
            f"foundation {foundation['name']!r}: ready in {time.perf_counter() - started:.1f} s "
            f"(cache {default_cache_root()}; both sides read it from there, neither side's timing includes this)"
        )
    return lines


# --- report -------------------------------------------------------------------------------------------


def stage_sum(trial: dict) -> float:
    return sum(trial[time_column(s)] for s in WALL_STAGES if math.isfinite(trial[time_column(s)]))


def report(
    spec, args, engine: dict | None, serials: dict[int, dict], foundation_lines: list[str], load_start: float
) -> dict:
    import torch

    n = spec.num_trials
    c = concurrency(spec)
    print()
    print(
        f"=== Sweep orchestration overhead: {spec.path} ({n} trials, max_concurrent {spec.max_concurrent}, "
        f"resources {spec.resources}) ==="
    )
    print(
        f"machine: {os.cpu_count()} CPUs ({available_cores()} available), torch {torch.__version__}, "
        f"python {sys.version.split()[0]}; 1-min load average before the first run: {load_start:.2f}"
    )
    for line in foundation_lines:
        print(line)
    print(
        f"engine trials: torch threads = int(resources.cpu) = {max(1, int(spec.resources['cpu']))} each, "
        f"up to {c} at once (concurrency c = {c})"
    )
    print(
        "in-trial time of a trial = sum of its time_<stage>_s (data, foundation, preprocessor, head, evaluation). "
        "The stage clocks cover the epochs' compute only: per-epoch checkpoints, the head's feature pass, "
        "tune.report and the per-epoch Parquet rewrite fall outside them on both sides."
    )
    out: dict = {"spec": str(spec.path), "trials": n, "concurrency": c, "load_average_at_start": load_start}
    print()
    per_trial_rows = {}
    if engine:
        trials = engine["trials"]
        stamps = engine["stamps"]
        s_stage = sum(stage_sum(t) for t in trials)
        s_span = sum(t["finished"] - t["started"] for t in trials)
        wall = engine["wall_s"]
        first_start = min(t["started"] for t in trials) if trials else math.nan
        last_end = max(t["finished"] for t in trials) if trials else math.nan
        overhead = (c * wall - s_stage) / n
        print(
            f"ENGINE (run_sweep, real tune_trial): wall {wall:.1f} s; {engine['done']} done, "
            f"{engine['failed']} failed, "
            f"{engine['unfinished']} unfinished"
        )
        print(f"  during it: {engine['load_summary']}")
        print(
            f"  sum of in-trial times {s_stage:.1f} s; sum of tune_trial spans (row started_at..finished_at) "
            f"{s_span:.1f} s"
        )
        print(
            f"  per-trial overhead = (c x wall - sum in-trial) / trials = ({c} x {wall:.1f} - {s_stage:.1f}) / {n} "
            f"= {overhead:.1f} s  [slot-seconds a trial costs beyond its own stages; equivalently (wall - "
            "sum/c) / (trials/c)]"
        )
        print(
            f"    of which outside tune_trial (Ray/Tune/Optuna, worker start + imports, scheduling, tail idle): "
            f"{(c * wall - s_span) / n:.1f} s; inside tune_trial but outside the stage clocks: "
            f"{(s_span - s_stage) / n:.1f} s"
        )
        print("  fixed costs:")
        print(
            f"    run_sweep called -> ray.init done:        {stamps['ray_init_end'] - engine['called']:.1f} s "
            f"(ray.init alone {stamps['ray_init_end'] - stamps['ray_init_begin']:.1f} s)"
        )
        print(
            f"    ray.init done -> first trial started:    {first_start - stamps['ray_init_end']:.1f} s "
            "(Tuner + OptunaSearch set-up, worker process start, imports in the worker)"
        )
        print(f"    first trial started -> last trial ended: {last_end - first_start:.1f} s")
        print(f"    last trial ended -> ray.shutdown begins: {stamps['ray_stop_begin'] - last_end:.1f} s")
        print(f"    ray.shutdown:                            {stamps['ray_stop_end'] - stamps['ray_stop_begin']:.1f} s")
        print(f"    ray.shutdown done -> run_sweep returns:  {engine['returned'] - stamps['ray_stop_end']:.1f} s")
        out["engine"] = {
            "wall_s": wall,
            "sum_in_trial_s": s_stage,
            "sum_span_s": s_span,
            "overhead_per_trial_s": overhead,
            "outside_trial_per_trial_s": (c * wall - s_span) / n,
            "inside_unstaged_per_trial_s": (s_span - s_stage) / n,
            "to_ray_up_s": stamps["ray_init_end"] - engine["called"],
            "ray_init_s": stamps["ray_init_end"] - stamps["ray_init_begin"],
            "ray_up_to_first_trial_s": first_start - stamps["ray_init_end"],
            "trials_span_s": last_end - first_start,
            "last_trial_to_shutdown_s": stamps["ray_stop_begin"] - last_end,
            "shutdown_s": stamps["ray_stop_end"] - stamps["ray_stop_begin"],
            "shutdown_to_return_s": engine["returned"] - stamps["ray_stop_end"],
            "load": engine["load"],
            "done": engine["done"],
            "failed": engine["failed"],
        }
        for t in trials:
            per_trial_rows.setdefault(t["config_hash"], {})["engine"] = (stage_sum(t), t["finished"] - t["started"])
        print()
    out["serial"] = {}
    for threads, serial in serials.items():
        trials = serial["trials"]
        s_stage = sum(stage_sum(t) for t in trials)
        s_wall = sum(t["wall_s"] for t in trials)
        wall = serial["wall_s"]
        overhead = (wall - s_stage) / n
        print(f"SERIAL (plain run_trial loop, torch threads {serial['threads']}): wall {wall:.1f} s")
        print(f"  during it: {serial['load_summary']}")
        print(f"  sum of in-trial times {s_stage:.1f} s; sum of run_trial calls {s_wall:.1f} s")
        print(
            f"  per-trial overhead = (wall - sum in-trial) / trials = ({wall:.1f} - {s_stage:.1f}) / {n} = "
            f"{overhead:.1f} s "
            f"(inside run_trial, outside the stage clocks: {(s_wall - s_stage) / n:.1f} s)"
        )
        entry = {
            "wall_s": wall,
            "sum_in_trial_s": s_stage,
            "sum_run_trial_s": s_wall,
            "overhead_per_trial_s": overhead,
            "load": serial["load"],
            "threads": serial["threads"],
        }
        if engine:
            ratio = engine["wall_s"] / wall
            entry["engine_over_serial"] = ratio
            print(f"  engine / serial wall = {engine['wall_s']:.1f} / {wall:.1f} = {ratio:.2f}")
            stage_ratio = out["engine"]["sum_in_trial_s"] / s_stage if s_stage else math.nan
            print(
                f"  engine / serial sum of in-trial times = {stage_ratio:.2f} "
                f"(engine trials run {max(1, int(spec.resources['cpu']))} thread(s) each, {c} at once)"
            )
        out["serial"][threads] = entry
        for t in trials:
            per_trial_rows.setdefault(t["config_hash"], {})[f"serial{threads}"] = (stage_sum(t), t["wall_s"])
        print()
    if per_trial_rows and len(per_trial_rows) <= 50:
        columns = (["engine"] if engine else []) + [f"serial{t}" for t in serials]
        print(
            "per trial, in-trial time / whole trial (s): engine whole = tune_trial span; serial whole = run_trial call"
        )
        print("  config_hash       " + "".join(f"{name:>20}" for name in columns))
        for key, cells in per_trial_rows.items():
            print(
                f"  {key[:16]:16}  "
                + "".join(
                    f"{cells[name][0]:>9.1f} / {cells[name][1]:>6.1f}" if name in cells else f"{'-':>20}"
                    for name in columns
                )
            )
    print(f"\n1-min load average at the end: {os.getloadavg()[0]:.2f}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serial_worker:
        return serial_worker(args.serial_worker)

    from orchestrator.spec.sweep_spec import load_spec
    from trainables.errors import UserError

    try:
        spec = cut_spec(load_spec(args.spec), args.trials, args.max_concurrent)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if spec.search_trials and (args.serial_first or args.skip_engine):
        print(
            "error: this spec has Optuna-sampled trials; the serial loop replays the engine's samples, so the engine "
            "must run first (drop --serial-first / --skip-engine, or cut to the grid with --trials)",
            file=sys.stderr,
        )
        return 2
    device = "cuda" if spec.resources["gpu"] > 0 else "cpu"
    if device == "cuda":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    grid_configs = [spec.trial_config(point) for point in spec.grid_points]

    root = args.out or Path(tempfile.mkdtemp(prefix="bench-sweep-overhead-"))
    root.mkdir(parents=True, exist_ok=True)
    if any((root / name).exists() for name in ["engine", *(f"serial-{t}threads" for t in args.threads)]):
        print(
            f"error: {root} already holds an earlier run; pick another --out (both sides must start cold)",
            file=sys.stderr,
        )
        return 2
    print(f"working folder: {root}", file=sys.stderr)
    foundation_lines = pretrain_foundations(grid_configs)
    load_start = os.getloadavg()[0]

    engine, serials = None, {}

    def serial_pass(configs):
        for threads in args.threads:
            print(f"... serial loop, {threads} thread(s), {len(configs)} trials", file=sys.stderr, flush=True)
            serials[threads] = run_serial(configs, root / f"serial-{threads}threads", threads, device)

    try:
        if args.serial_first or args.skip_engine:
            serial_pass(grid_configs)
        if not args.skip_engine:
            print(f"... engine, {spec.num_trials} trials", file=sys.stderr, flush=True)
            engine = run_engine(spec, root / "engine")
            if not (args.serial_first or args.skip_engine):
                # Grid points in the engine's order; Optuna's samples (search specs) as the engine drew them.
                from trainables.artifacts import config_hash
                from trainables.schema import validate_trial_config

                grid_keys = {config_hash(validate_trial_config(c)) for c in grid_configs}
                sampled = [cfg for key, cfg in engine["configs_by_hash"].items() if key not in grid_keys]
                serial_pass(grid_configs + sampled)
        out = report(spec, args, engine, serials, foundation_lines, load_start)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=2))
    finally:
        if args.out is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept: {root}", file=sys.stderr)
    failed = engine is not None and (engine["failed"] or engine["unfinished"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
