"""`python inject.py FAULT[,FAULT...] SPEC OUT [sweep options]`: the real `orchestrator sweep`, faults injected.

The faults enter through the engine's trial-function hook (run_sweep's `trial_function`): each
one changes one thing inside the Ray worker around trial.tune_trial. Run as its own
process because a full disk stops the sweep the way Ctrl-C does (a SIGINT to the driver).
Faults:
- kill-at-epoch-2: the worker of the lambda=10 trial SIGKILLs itself when it logs pre-processor epoch 2
  (once: a marker file beside the sweep folder says it happened),
- disk-full: every results write raises ENOSPC while the file `disk-full` exists beside the sweep folder,
- nan-foundation: in trials with foundation.embedded.seed 77, the embedded foundation's pre-training
  loss turns NaN after two steps,
- count-calls: each call of the trial function appends its params to `calls.jsonl` beside the sweep folder,
- hold-at-epoch-2: a trial that logs pre-processor epoch 2 waits there while the file `hold` exists beside
  the sweep folder (a driver held mid-trial for as long as a test needs, however fast the machine).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import signal
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[2]))
NAN_SEED = 77


@contextmanager
def kill_at_epoch_2(params, sweep_dir: Path):
    from orchestrator.engine import trial

    marker = sweep_dir.parent / "killed-once"
    original = trial.EpochLog.add

    def add(self, record):
        if (
            params.get("preprocessor.lambda") == 10
            and record["stage"] == "preprocessor"
            and record["epoch"] == 2
            and not marker.exists()
        ):
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, record)

    trial.EpochLog.add = add
    try:
        yield
    finally:
        trial.EpochLog.add = original


@contextmanager
def disk_full(params, sweep_dir: Path):
    from orchestrator.store import parquet  # where rows are written

    flag = sweep_dir.parent / "disk-full"
    original = parquet.atomic_write_bytes

    def write(path, data):
        if flag.exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(path, data)

    parquet.atomic_write_bytes = write
    try:
        yield
    finally:
        parquet.atomic_write_bytes = original


@contextmanager
def nan_foundation(params, sweep_dir: Path):
    import torch

    from trainables import foundation

    original = foundation.ViTMAEForPreTraining
    if params.get("foundation.embedded.seed") != NAN_SEED:
        yield
        return
    calls = {"n": 0}

    class Diverging(original):
        def forward(self, *args, **inner):
            output = super().forward(*args, **inner)
            calls["n"] += 1
            if calls["n"] > 2:  # a few good steps, then the loss blows up
                output.loss = output.loss * torch.tensor(float("nan"))
            return output

    foundation.ViTMAEForPreTraining = Diverging
    try:
        yield
    finally:
        foundation.ViTMAEForPreTraining = original


@contextmanager
def count_calls(params, sweep_dir: Path):
    with open(sweep_dir.parent / "calls.jsonl", "a") as handle:
        handle.write(json.dumps(params, sort_keys=True) + "\n")
    yield


@contextmanager
def hold_at_epoch_2(params, sweep_dir: Path):
    from orchestrator.engine import trial

    flag = sweep_dir.parent / "hold"
    original = trial.EpochLog.add
    parent = os.getppid()  # the raylet that started this worker

    def add(self, record):
        added = original(self, record)
        while record["stage"] == "preprocessor" and record["epoch"] == 2 and flag.exists():
            if os.getppid() != parent:  # orphaned: its raylet died; a held worker must not outlive it
                os._exit(1)
            time.sleep(0.2)
        return added

    trial.EpochLog.add = add
    try:
        yield
    finally:
        trial.EpochLog.add = original


FAULTS = {
    "kill-at-epoch-2": kill_at_epoch_2,
    "disk-full": disk_full,
    "nan-foundation": nan_foundation,
    "count-calls": count_calls,
    "hold-at-epoch-2": hold_at_epoch_2,
}


def with_faults(names: list[str]):
    """trial.tune_trial inside the named faults. Ray Tune restores an experiment only with a
    trainable of the same name, and a plain resume passes the real one: the runner registers every
    trial function under one name (trial.TUNE_NAME), this one too."""

    def tune_trial_with_faults(params, **kwargs):
        from orchestrator.engine import trial

        with ExitStack() as stack:
            for name in names:
                stack.enter_context(FAULTS[name](params, Path(kwargs["sweep_dir"])))
            return trial.tune_trial(params, **kwargs)

    return tune_trial_with_faults


def main() -> int:
    faults, spec, out, *options = sys.argv[1:]
    from orchestrator.cli import app
    from orchestrator.engine import runner

    runner.run_sweep = functools.partial(runner.run_sweep, trial_function=with_faults(faults.split(",")))
    return app.main(["sweep", spec, "--out", out, "--plain", *options])


if __name__ == "__main__":
    sys.exit(main())
