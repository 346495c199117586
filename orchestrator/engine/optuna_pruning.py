"""Optuna's pruners as a Ray Tune scheduler: a searched sweep's trials stopped by its own study.

In a sweep whose trials Optuna samples (`search:`), the spec's `scheduler:` becomes Optuna's
pruner of the same kind (schedulers.build_pruner) on the searcher's study. Each measurement a
trial reports (the scheduler's metric, at its pre-processor epoch) goes to the trial's Optuna
trial as an intermediate value, and the pruner's answer decides: STOP or go on. The study then
holds the learning curves, and the stopped trial ends PRUNED (grid_first_search.py), which
Optuna's samplers take into account.

The searcher is looked up through the controller at each result, never held: Tune pickles its
scheduler and its searcher separately, and a restored run must use the live searcher's study.
"""

from __future__ import annotations

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.engine.private_apis import controller_searcher, optuna_search_internals
from orchestrator.spec.schedulers import TIME_ATTR, SchedulerSpec


class OptunaPruning(FIFOScheduler):
    def __init__(self, scheduler: SchedulerSpec):
        super().__init__()
        self.watched = scheduler.metric

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self.watched not in result or TIME_ATTR not in result:
            return TrialScheduler.CONTINUE
        ot_trials, _ = optuna_search_internals(controller_searcher(tune_controller))
        ot_trial = ot_trials.get(trial.trial_id)
        if ot_trial is None:
            return TrialScheduler.CONTINUE
        ot_trial.report(float(result[self.watched]), step=int(result[TIME_ATTR]))
        return TrialScheduler.STOP if ot_trial.should_prune() else TrialScheduler.CONTINUE
