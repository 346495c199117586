"""Run or resume a sweep: the sweep directory, the plan check, and Ray Tune's Tuner around the trials.

A sweep directory is resumable by running the same command again; Ray's experiment folder is only a
resume cache, the Parquet files under results/ are the record of truth.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from trainables.artifacts import atomic_write_json
from trainables.errors import UserError

from .backends import LocalBackend
from .progress import SweepProgress
from .results import STATE_FILE
from .search import build_searcher
from .spec import SweepSpec
from .trainable import sweep_trial

RAY_FOLDER = "ray"
# Keep every per-epoch manifest checkpoint (a few bytes each): with num_to_keep set, Tune saves the
# whole experiment state every num_to_keep trial checkpoints, which grows with the sweep and slowed
# a 300-trial run from 8 to 4 trial starts per second (bench/bench_sweep_scale.py --checkpoints 4).
CHECKPOINTS_KEPT = None


def quiet_ray_tune() -> None:
    """Our progress display replaces Tune's; keep its warnings about real problems only."""
    import logging
    import os

    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    # Tune's newer console output prints its own header and tables whatever `verbose` says.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def default_sweep_dir(spec: SweepSpec) -> Path:
    return Path("runs") / spec.name


@dataclass
class SweepOutcome:
    sweep_dir: Path
    resumed: bool
    done: int
    failed: int
    unfinished: int


def prepare_sweep_dir(spec: SweepSpec, sweep_dir: Path, *, restart: bool) -> bool:
    """Check the folder against the spec; returns True when an earlier run is resumed.

    Raises before writing anything when the folder holds a different plan (unless `restart`,
    which moves the old folder aside: nothing is ever deleted).
    """
    state_path = sweep_dir / STATE_FILE
    if state_path.is_file():
        saved = json.loads(state_path.read_text())
        if saved.get("plan_hash") == spec.plan_hash and not restart:
            return True
        if not restart:
            changed = sorted(k for k in set(saved.get("plan", {})) | set(spec.plan) if saved.get("plan", {}).get(k) != spec.plan.get(k))
            raise UserError(f"{spec.path}: the planned trials differ from the sweep in {sweep_dir} (changed: {', '.join(changed)}); "
                            "run with --restart to move that sweep aside and start again, or pick another --out")
    elif sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise UserError(f"{sweep_dir}: exists and is not a sweep directory (no {STATE_FILE}); pick another --out")
    if restart and sweep_dir.exists():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = sweep_dir.with_name(f"{sweep_dir.name}.replaced-{stamp}")
        shutil.move(str(sweep_dir), str(aside))
        print(f"orchestrator: moved the previous sweep to {aside}")
    return False


def write_state(spec: SweepSpec, sweep_dir: Path) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(sweep_dir / STATE_FILE, {"name": spec.name, "plan_hash": spec.plan_hash, "plan": spec.plan,
                                               "num_trials": spec.num_trials, "spec_path": str(spec.path),
                                               "objectives": spec.objectives})
    if Path(spec.path).is_file():
        (sweep_dir / "spec.yaml").write_text(Path(spec.path).read_text())


def run_sweep(spec: SweepSpec, sweep_dir: Path, *, backend: LocalBackend | None = None, restart: bool = False,
              retry_failed: bool = False, live: bool | None = None, trial_function=sweep_trial) -> SweepOutcome:
    """Run every planned trial not yet finished; returns the counts from Ray's results.

    `trial_function` is the Ray function per trial (signature of trainable.sweep_trial); benches
    pass a no-op one to measure the engine alone.
    """
    from ray import tune

    backend = backend or LocalBackend()
    sweep_dir = Path(sweep_dir).resolve()
    backend.check_resources(spec.resources, str(spec.path))
    resumed = prepare_sweep_dir(spec, sweep_dir, restart=restart)
    backend.start(spec.resources, str(spec.path))
    quiet_ray_tune()
    try:
        write_state(spec, sweep_dir)
        trainable = tune.with_resources(
            tune.with_parameters(trial_function, sweep_dir=str(sweep_dir), sweep_name=spec.name, base_trial=spec.trial,
                                 objectives=list(spec.objectives), cpus=spec.resources["cpu"], gpus=spec.resources["gpu"]),
            {"cpu": spec.resources["cpu"], "gpu": spec.resources["gpu"]},
        )
        progress = SweepProgress(spec.num_trials, spec.objectives, live=live)
        ray_dir = sweep_dir / RAY_FOLDER
        if tune.Tuner.can_restore(str(ray_dir)):
            tuner = tune.Tuner.restore(str(ray_dir), trainable, resume_unfinished=True, restart_errored=retry_failed)
            # The restored run config holds the callbacks pickled by the first run; show this run's progress.
            tuner._local_tuner.get_run_config().callbacks = [progress]
        else:
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=build_searcher(spec, sweep_dir), num_samples=spec.num_trials,
                                            max_concurrent_trials=spec.max_concurrent,
                                            # One worker process runs trial after trial: no torch import per trial.
                                            reuse_actors=True),
                run_config=tune.RunConfig(
                    name=RAY_FOLDER, storage_path=str(sweep_dir), verbose=0, callbacks=[progress],
                    failure_config=tune.FailureConfig(max_failures=spec.max_retries),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
                ),
            )
        grid = tuner.fit()
        done = sum(1 for result in grid if result.error is None)
        failed = len(grid) - done
        return SweepOutcome(sweep_dir, resumed, done, failed, spec.num_trials - len(grid))
    finally:
        backend.stop()
