"""The Ray Tune logger callbacks of the trackers a spec names (spec/trackers.py checks the names).

Each tracker is imported here only when a sweep asked for it: TensorBoard's callback is Ray's own,
MLflow's and W&B's are Ray's with the fixes a sweep needs (ray_trackers.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def tracker_callbacks(names: tuple[str, ...], sweep_dir: Path, sweep_name: str) -> list:
    """Ray Tune logger callbacks for the named trackers, in the order named.

    - tensorboard: Ray's TBXLoggerCallback writes each trial's event files into the trial's own
      folder under Tune's experiment folder (`<sweep_dir>/ray/<trial>/events.out.tfevents.*`;
      Tune writes them in its session folder and copies them there at each checkpoint and at the
      trial's end); `tensorboard --logdir <sweep_dir>/ray` shows them. It has no setting of its own.
    - mlflow: MLFLOW_TRACKING_URI when set, else a file store at `<sweep_dir>/mlruns`; the
      experiment is named after the sweep, one run per trial; nothing is uploaded as an artifact.
    - wandb: project WANDB_PROJECT, else the sweep's name, and group WANDB_RUN_GROUP, else the
      sweep's name; one run per trial, named by its trial id; mode from WANDB_MODE (online needs
      WANDB_API_KEY or `wandb login`); run folders under `$WANDB_DIR/wandb/`, WANDB_DIR defaulting
      to `<sweep_dir>` (so `<sweep_dir>/wandb/`).
    """
    sweep_dir = Path(sweep_dir).resolve()
    make = {"tensorboard": _tensorboard, "mlflow": _mlflow, "wandb": _wandb}
    return [make[name](sweep_dir, sweep_name) for name in names]


def _tensorboard(sweep_dir: Path, sweep_name: str):
    from ray.tune.logger import TBXLoggerCallback

    return TBXLoggerCallback()


def _mlflow(sweep_dir: Path, sweep_name: str):
    from orchestrator.engine.ray_trackers import SweepMLflowLoggerCallback

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        tracking_uri = (sweep_dir / "mlruns").as_uri()
        # MLflow 3 refuses file stores unless told otherwise ("maintenance mode": it wants a
        # database). A folder of plain files is what a sweep folder on a cluster's shared file
        # system can hold safely (SQLite's locking is not), so opt in, in this process only.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return SweepMLflowLoggerCallback(tracking_uri=tracking_uri, experiment_name=sweep_name, save_artifact=False)


def _wandb(sweep_dir: Path, sweep_name: str):
    from orchestrator.engine.ray_trackers import SweepWandbLoggerCallback

    # Ray runs wandb.init in a logging actor, a worker process that inherits the environment of
    # the Ray node, not of this driver (it forwards WANDB_API_KEY alone): a cluster joined with
    # --address, or a variable set after Ray started, would not reach it. So what the driver's
    # environment says is passed to wandb.init explicitly.
    # resume="allow" (Ray passes resume=False): a trial a resumed sweep continues keeps its W&B
    # run (Ray names it by the trial's id) instead of clashing with it.
    init: dict[str, Any] = {"dir": os.environ.get("WANDB_DIR") or str(sweep_dir), "resume": "allow"}
    if os.environ.get("WANDB_MODE"):
        init["mode"] = os.environ["WANDB_MODE"]
    # Ray's own variables are WANDB_PROJECT_NAME and WANDB_GROUP_NAME; wandb's are WANDB_PROJECT
    # and WANDB_RUN_GROUP. Explicit values win over both, so read wandb's here. The group is the
    # sweep (Ray's default, its experiment folder's name, is `ray` for every sweep), so a lab's
    # shared project still tells the sweeps apart.
    project = os.environ.get("WANDB_PROJECT") or sweep_name
    group = os.environ.get("WANDB_RUN_GROUP") or sweep_name
    return SweepWandbLoggerCallback(project=project, group=group, **init)
