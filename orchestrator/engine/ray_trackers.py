"""Two of Ray Tune's tracker callbacks, with the fixes a sweep needs.

Imported only by orchestrator.engine.trackers, and only when a sweep asks for MLflow or W&B: it imports
Ray's integrations (which import wandb when it is installed).
"""

from __future__ import annotations

import os

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback

# WandbLoggerCallback names the actor class it starts in a class attribute (`_logger_actor_cls`)
# for subclasses to replace; the class itself is private to Ray (private_apis.py).
from orchestrator.engine.private_apis import wandb_logging_actor

_MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


class SweepMLflowLoggerCallback(MLflowLoggerCallback):
    """MLflowLoggerCallback that leaves this process's MLFLOW_TRACKING_URI as it found it.

    Its setup calls mlflow.set_tracking_uri, which also writes the URI into os.environ (for
    subprocesses to inherit). Left there, the next sweep this process runs (a test, a notebook)
    would take it for the user's choice and log into the first sweep's store.
    """

    def setup(self, *args, **kwargs) -> None:
        before = {name: os.environ.get(name) for name in _MLFLOW_URI_VARIABLES}
        try:
            super().setup(*args, **kwargs)
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


class _FlushedWandbLoggingActor(wandb_logging_actor()):
    """Ray's W&B logging actor, which returns only once wandb has written and sent everything.

    wandb.finish returns before wandb's service process has flushed the run (offline: its .wandb
    file, buffered until then), and Ray kills the actor as soon as `run` returns, so it never
    reaches wandb's own teardown at exit: a run's records were lost whenever the kill came first
    (seen here: a resumed trial's offline run with nothing but the file's header).
    """

    def run(self):
        try:
            return super().run()
        finally:
            self._wandb.teardown()


class SweepWandbLoggerCallback(WandbLoggerCallback):
    """WandbLoggerCallback that ends the W&B run of every trial still open when the sweep ends.

    Ray's callback logs each trial from a logging actor that runs until the trial ends, and at the
    end of the experiment waits for every such actor to finish, for up to its upload timeout
    (30 minutes by default). A sweep interrupted mid-trial (Ctrl-C, or the driver's own stop on a
    full disk, which is a SIGINT) never ends those trials, so the driver hung for the whole
    timeout. Ending them here lets each actor finish its run (wandb.finish) at once; a resumed
    sweep logs the rest of the trial. Its logging actor waits for wandb to finish writing.
    """

    _logger_actor_cls = _FlushedWandbLoggingActor

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._unended: set = set()

    def log_trial_start(self, trial) -> None:
        super().log_trial_start(trial)
        self._unended.add(trial)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        super().log_trial_result(iteration, trial, result)  # starts the trial's actor if it had none
        self._unended.add(trial)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        self._unended.discard(trial)
        super().log_trial_end(trial, failed=failed)

    def on_experiment_end(self, trials: list, **info) -> None:
        for trial in list(self._unended):
            self.log_trial_end(trial, failed=True)
        super().on_experiment_end(trials, **info)
