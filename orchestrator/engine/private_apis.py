"""Every call this project makes into a private API of Ray or submitit, in one place.

Private names change without notice, so pyproject.toml pins both packages below the next minor
release and tests/integration/test_private_apis.py checks each call here against the installed versions.
Checked with ray 2.60.0 and submitit 1.5.4.

- `ray.init(_temp_dir=..., _node_ip_address=...)`: Ray's session folder (a short path: its unix
  socket paths must stay under ~100 characters; tests give each run its own) and the node address.
- `ray._private.ray_constants.ENABLE_RAY_CLUSTER`: ray.init replaces a node address of 127.0.0.1
  by the machine's network address unless this is False (as on macOS and Windows), and Ray's gRPC
  servers listen on loopback only when the node address is loopback, else on every interface.
- `ray._raylet.Config.initialize("")`, `ray._raylet.AuthenticationTokenLoader.instance().reset_cache()`:
  Ray reads RAY_AUTH_MODE when it is imported and caches the token it loads; a process that sets
  them later (the Slurm driver, after writing its job's token) must make Ray read them again.
- `Tuner._local_tuner.get_run_config()`: Tuner.restore brings back the callbacks the first run
  pickled (objects of that process); a restored run must report to this run's. No public setter.
- `OptunaSearch._ot_trials`, `._ot_study`: which Optuna trial each Tune trial holds, and the
  study, for grid_first_search.py to queue grid points one at a time and to find the points a
  killed driver took (tests/orchestrator/engine/test_search.py checks it). No public accessor.
- `TuneController._search_alg` (and each wrapper's `.searcher`): the searcher a running Tune asks,
  for optuna_pruning.py to reach the live study from a scheduler (tests/integration/test_schedulers.py). A
  scheduler has no public way to it.
- `ray.air._internal.usage.tag_callbacks`: replaced by a no-op (skip_callback_usage_tags), so a
  driver does not import wandb and mlflow only to tag its callbacks for telemetry.
- `ray.air.integrations.wandb._WandbLoggingActor`, the actor class `WandbLoggerCallback` starts
  (its `_logger_actor_cls`, meant for subclasses): ray_trackers.py's actor waits for wandb's
  teardown (tests/integration/test_trackers.py).
- `submitit.slurm.slurm._make_sbatch_string`, `SlurmExecutor._submitit_command_str`: the sbatch
  script submitit would submit, for a `sbatch --test-only` preflight before anything is submitted.

Not here: trainables/foundation.py deletes transformers' `_is_hf_initialized` flag (trainables
must not import orchestrator).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

LOOPBACK = "127.0.0.1"


def start_local_ray(*, temp_dir: str | None, **init_kwargs) -> None:
    """ray.init() of a one-machine cluster whose processes listen on 127.0.0.1 only."""
    import ray

    with _loopback_node_address():
        ray.init(_node_ip_address=LOOPBACK, _temp_dir=temp_dir, **init_kwargs)


@contextmanager
def _loopback_node_address() -> Iterator[None]:
    # Only while ray.init runs: afterwards Ray answers with the started node's address, and a
    # later ray.init(address=...) in this process must find this machine's network address.
    from ray._private import ray_constants

    previous = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous


def optuna_search_internals(searcher) -> tuple[dict, Any]:
    """OptunaSearch's Tune trial id -> Optuna trial map and its Optuna study."""
    return searcher._ot_trials, searcher._ot_study


def controller_searcher(tune_controller):
    """The Searcher a running TuneController asks, unwrapped from Tune's SearchGenerator and
    ConcurrencyLimiter (each holds the one it wraps as `.searcher`)."""
    searcher = tune_controller._search_alg
    while hasattr(searcher, "searcher"):
        searcher = searcher.searcher
    return searcher


def skip_callback_usage_tags() -> None:
    """Stop Ray Tune from importing every tracker package at each run's start.

    tune.run tags which callbacks a run uses for Ray's usage statistics, and to know them imports
    its W&B, MLflow and Comet integrations, which import wandb and mlflow where installed: 0.7 s
    at every driver start (a resume after each kill included), whether the sweep logs to them or
    not. The tag is telemetry only; nothing in the run depends on it.
    """
    from ray.air._internal import usage

    usage.tag_callbacks = lambda callbacks: False


def wandb_logging_actor():
    """Ray's W&B logging actor class (imports wandb: call it only for a sweep that logs to W&B)."""
    from ray.air.integrations.wandb import _WandbLoggingActor

    return _WandbLoggingActor


def reload_ray_auth() -> None:
    """Make Ray in this process use the RAY_AUTH_MODE and token now in os.environ."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")  # before the cache reset, as Ray's own test helpers do
    AuthenticationTokenLoader.instance().reset_cache()


def set_restored_callbacks(tuner, callbacks: list) -> None:
    """Give a Tuner.restore()d run these callbacks instead of the ones the first run pickled."""
    tuner._local_tuner.get_run_config().callbacks = list(callbacks)


def sbatch_script_text(executor, tasks: int | None = None) -> str:
    """The sbatch script submitit will write for this executor (a job array when `tasks` is set)."""
    from submitit.slurm.slurm import _make_sbatch_string

    return _make_sbatch_string(
        command=executor._submitit_command_str, folder=executor.folder, map_count=tasks, **executor.parameters
    )
