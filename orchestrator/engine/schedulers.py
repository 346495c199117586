"""Ray Tune's scheduler or Optuna's pruner for a spec's checked `scheduler:` section (spec/schedulers.py).

Ray and Optuna are imported when a sweep that asked for early stopping builds them, not before.
"""

from __future__ import annotations

from orchestrator.spec.schedulers import HYPERBAND_BRACKETS, TIME_ATTR, SchedulerSpec


def build_scheduler(scheduler: SchedulerSpec, max_epochs: int):
    """The Ray Tune scheduler for `scheduler`; `max_epochs`: the sweep's longest pre-processor training."""
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    if scheduler.kind == "median":
        return MedianStoppingRule(
            time_attr=TIME_ATTR,
            metric=scheduler.metric,
            mode=scheduler.mode,
            grace_period=scheduler.grace_period,
            min_samples_required=scheduler.min_samples_required,
        )
    brackets = 1 if scheduler.kind == "asha" else scheduler.brackets or HYPERBAND_BRACKETS
    return ASHAScheduler(
        time_attr=TIME_ATTR,
        metric=scheduler.metric,
        mode=scheduler.mode,
        max_t=max(scheduler.max_t or max_epochs, scheduler.grace_period),
        grace_period=scheduler.grace_period,
        reduction_factor=scheduler.reduction_factor,
        brackets=brackets,
        # A trial at max_t has finished training its pre-processor; its head and evaluation follow.
        stop_last_trials=False,
    )


def build_pruner(scheduler: SchedulerSpec, max_epochs: int):
    """Optuna's pruner of the same kind, for a sweep whose trials Optuna samples (`search:`).

    asha: SuccessiveHalvingPruner (rungs at grace_period x reduction_factor^k epochs); hyperband:
    HyperbandPruner (grace_period to max_t epochs); median: MedianPruner (no stop before
    grace_period epochs nor before min_samples_required trials finished).
    """
    import optuna

    if scheduler.kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=scheduler.min_samples_required, n_warmup_steps=scheduler.grace_period - 1
        )
    if scheduler.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=scheduler.grace_period,
            max_resource=max(scheduler.max_t or max_epochs, scheduler.grace_period),
            reduction_factor=int(scheduler.reduction_factor),
        )
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=scheduler.grace_period, reduction_factor=int(scheduler.reduction_factor)
    )
