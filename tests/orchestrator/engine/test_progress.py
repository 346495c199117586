"""The sweep's progress lines (orchestrator/engine/progress.py) over Ray Tune's own Trial objects.

Counts and the best value are kept as the hooks fire, not recounted over every trial at each
event; these tests check they still say what a recount would, restored trials included.
"""

from __future__ import annotations

import io

from ray.tune.experiment import Trial

from orchestrator.engine.progress import SweepProgress


def _trial(lam: float, status: str = Trial.PENDING, acc: float | None = None) -> Trial:
    trial = Trial("sweep_trial", config={"preprocessor.lambda": lam}, stub=True)
    trial.set_status(status)
    if acc is not None:
        trial.update_last_result({"acc_natural": acc})
    return trial


def _recount(progress: SweepProgress, trials: list[Trial]) -> tuple[int, int, int]:
    states = [progress.status(t) for t in trials]
    return states.count("TERMINATED"), states.count("RUNNING"), states.count("ERROR")


def test_counts_and_best_follow_the_hooks_and_take_in_restored_trials():
    out = io.StringIO()
    progress = SweepProgress(6, {"acc_natural": "max"}, live=False, stream=out)
    # Two trials restored from an earlier run: one done (its result counts for the best), one failed.
    trials = [_trial(0.1, Trial.TERMINATED, acc=0.4), _trial(0.2, Trial.ERROR)]
    trials.append(_trial(1.0))
    progress.on_trial_start(0, trials, trials[2])
    assert progress.counts(trials) == {"done": 1, "running": 1, "failed": 1, "stopped": 0, "pending": 3}
    trials[2].update_last_result({"acc_natural": 0.7})
    progress.on_trial_complete(0, trials, trials[2])
    trials.append(_trial(10.0))  # Tune appends trials as the searcher makes them
    progress.on_trial_start(0, trials, trials[3])
    trials[3].update_last_result({"acc_natural": 0.9})
    progress.on_trial_error(0, trials, trials[3])  # a failed trial's result is not the best
    assert progress.counts(trials) == {"done": 2, "running": 0, "failed": 2, "stopped": 0, "pending": 2}
    done, running, failed = _recount(progress, trials)  # what counting every trial again says
    assert progress.counts(trials) == {
        "done": done,
        "running": running,
        "failed": failed,
        "stopped": 0,
        "pending": 6 - done - failed,
    }
    assert progress.best(trials) == "best acc_natural: 0.7000"
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].endswith(
        "2/6 done, 0 running, 2 failed; best acc_natural: 0.7000; elapsed 0m00s, eta 0m00s"
    )


def test_a_trial_started_again_on_a_reused_worker_records_no_new_processes():
    recorded = []
    progress = SweepProgress(
        2, {"acc_natural": "min"}, live=False, stream=io.StringIO(), on_start=lambda: recorded.append(1)
    )
    first, second = _trial(1.0), _trial(2.0)
    worker = object()  # stands for one Ray actor handle, reused by Tune for the second trial
    first.temporary_state.ray_actor = worker
    progress.on_trial_start(0, [first], first)
    progress.on_trial_complete(0, [first], first)
    second.temporary_state.ray_actor = worker
    progress.on_trial_start(0, [first, second], second)
    assert recorded == [1]
    second.temporary_state.ray_actor = object()  # a new worker
    progress.on_trial_start(0, [first, second], second)
    assert recorded == [1, 1]


def test_a_trial_a_scheduler_stopped_is_counted_and_shown_as_stopped():
    out = io.StringIO()
    progress = SweepProgress(3, {"acc_pgd20": "max"}, live=False, stream=out)
    trials = [_trial(1.0), _trial(10.0)]
    for trial in trials:
        progress.on_trial_start(0, trials, trial)
    # Tune ends a stopped trial as complete; its last result is an epoch's, not the final report.
    trials[0].update_last_result({"acc_pgd20": float("nan"), "stage": "preprocessor", "epoch": 2})
    progress.on_trial_complete(0, trials, trials[0])
    trials[1].update_last_result({"acc_pgd20": 0.5, "stage": "done"})
    progress.on_trial_complete(0, trials, trials[1])
    assert progress.counts(trials) == {"done": 1, "running": 0, "failed": 0, "stopped": 1, "pending": 1}
    lines = out.getvalue().splitlines()
    assert "] stopped at preprocessor epoch 2: lambda=1 | 0/3 done, 1 running, 0 failed, 1 stopped;" in lines[2]
    assert (
        "] done lambda=10 acc_pgd20=0.5000 | 1/3 done, 0 running, 0 failed, 1 stopped; best acc_pgd20: 0.5000"
        in lines[3]
    )
