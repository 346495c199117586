"""Stop bad trials early: the spec's `scheduler:` section, Ray Tune's schedulers, and STOPPED rows.

A scheduler watches the robust signal that trials report while their pre-processor trains
(`preprocessor.validation`: val_acc_natural and val_acc_pgd<k> at the pre-processor's epoch,
trainables/validation_probe.py) and stops trials that are behind the others at the same epoch:

- asha: Ray Tune's ASHAScheduler (asynchronous successive halving), one bracket;
- hyperband: the same with several brackets (asynchronous Hyperband, Li et al. 2020); Tune's
  synchronous HyperBandScheduler pauses trials and needs the metric in every report, which the
  head stage's and the final report do not carry;
- median: Tune's MedianStoppingRule.

This module checks the section (torch- and Ray-free); engine/schedulers.py builds the scheduler
or pruner. A trial stopped this way ends in Tune as finished; engine/stopped_trials.py writes its
STOPPED row.
In a sweep whose trials Optuna samples (`search:`), Optuna's pruner of the same kind decides
instead (optuna_pruning.py), on the same measurements, so the sampler knows which trials were
pruned. A multi-objective sweep is refused: Tune's schedulers and Optuna's pruners stop on one
metric, and Optuna does not prune multi-objective studies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trainables.schema.fields import did_you_mean, is_int, is_number

KINDS = ("asha", "hyperband", "median")
KEYS = ("kind", "metric", "mode", "grace_period", "max_t", "reduction_factor", "brackets", "min_samples_required")
# The clock the schedulers compare trials on: the pre-processor epoch each measurement was made at
# (the head stage's reports carry an epoch too, but no validation metric, so they are ignored).
TIME_ATTR = "epoch"
METRIC = re.compile(r"val_acc_(natural|pgd(\d+))")
HYPERBAND_BRACKETS = 3


@dataclass(frozen=True)
class SchedulerSpec:
    kind: str
    metric: str
    mode: str = "max"
    grace_period: int = 1
    max_t: int | None = None  # default: the longest pre-processor training in the sweep
    reduction_factor: float = 3.0
    brackets: int | None = None  # hyperband only (default 3)
    min_samples_required: int = 3  # median only

    @property
    def pgd_steps(self) -> int | None:
        """The PGD steps the metric needs the trials' validation to use (None: natural accuracy)."""
        match = METRIC.fullmatch(self.metric)
        return int(match.group(2)) if match and match.group(2) else None

    def describe(self) -> str:
        return f"{self.kind} on {self.metric} ({self.mode})"


def parse_scheduler(raw, fail, objectives: dict[str, str]) -> SchedulerSpec | None:
    """The `scheduler:` mapping checked (each problem one line through `fail`), or None without one."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise fail("scheduler", "a mapping such as {kind: asha, metric: val_acc_pgd5}", raw)
    for key in raw:
        if key not in KEYS:
            raise fail(f"scheduler.{key}", f"a known setting: one of {list(KEYS)}{did_you_mean(key, list(KEYS))}", key)
    kind = raw.get("kind")
    if kind not in KINDS:
        raise fail("scheduler.kind", f"one of {list(KINDS)}{did_you_mean(str(kind), list(KINDS))}", kind)
    if len(objectives) > 1:
        raise fail(
            "scheduler",
            f"a single-objective sweep (this one has {len(objectives)}: {', '.join(objectives)}): Ray Tune's "
            "schedulers and Optuna's pruners stop trials on one metric, and Optuna does not prune multi-objective "
            "studies",
            kind,
        )
    metric = raw.get("metric")
    if not isinstance(metric, str) or not METRIC.fullmatch(metric):
        raise fail(
            "scheduler.metric",
            "a measurement trials report while their pre-processor trains: val_acc_natural or val_acc_pgd<steps> "
            "(set preprocessor.validation)",
            metric,
        )
    mode = raw.get("mode", "max")
    if mode not in ("max", "min"):
        raise fail("scheduler.mode", "max or min", mode)
    grace_period = raw.get("grace_period", 1)
    if not (is_int(grace_period) and grace_period >= 1):
        raise fail("scheduler.grace_period", "an integer >= 1 (pre-processor epochs before any stop)", grace_period)
    max_t = raw.get("max_t")
    if max_t is not None and not (is_int(max_t) and max_t >= grace_period):
        raise fail("scheduler.max_t", f"an integer >= grace_period ({grace_period}), or null", max_t)
    reduction_factor = raw.get("reduction_factor", 3)
    if not (is_number(reduction_factor) and reduction_factor > 1):
        raise fail("scheduler.reduction_factor", "a number > 1", reduction_factor)
    brackets = raw.get("brackets")
    if brackets is not None and (kind != "hyperband" or not (is_int(brackets) and brackets >= 1)):
        raise fail("scheduler.brackets", "an integer >= 1, for kind hyperband only", brackets)
    min_samples = raw.get("min_samples_required", 3)
    if not (is_int(min_samples) and min_samples >= 1):
        raise fail("scheduler.min_samples_required", "an integer >= 1 (kind median)", min_samples)
    return SchedulerSpec(kind, metric, mode, grace_period, max_t, float(reduction_factor), brackets, min_samples)


def check_pruner_fits(scheduler: SchedulerSpec, objectives: dict[str, str], fail) -> None:
    """Optuna's pruners compare intermediate values in the study's direction (the objective's)."""
    objective, direction = next(iter(objectives.items()))
    if scheduler.mode != direction:
        raise fail(
            "scheduler.mode",
            f"{direction}, as the objective {objective}: in a search Optuna's pruner stops trials and compares "
            "the measurements in the study's direction",
            scheduler.mode,
        )
    if scheduler.kind != "median" and scheduler.reduction_factor != int(scheduler.reduction_factor):
        raise fail(
            "scheduler.reduction_factor", "an integer > 1 in a search (Optuna's pruners)", scheduler.reduction_factor
        )


def check_trials_report(scheduler: SchedulerSpec, trial_configs: list[dict], fail) -> None:
    """Every planned trial that trains a pre-processor measures what the scheduler watches.

    `trial_configs`: validated trial configs. A trial without a trained pre-processor (identity,
    a VAE) reports nothing to stop on and simply runs; one that trains without the measurement
    would never be compared, silently: refused here.
    """
    from trainables.schema.preprocessor import PREPROCESSOR_KINDS

    for number, config in enumerate(trial_configs, 1):
        pre = config["preprocessor"]
        if not PREPROCESSOR_KINDS[pre["kind"]].trained:
            continue
        validation = pre.get("validation")
        if validation is None:
            raise fail(
                "scheduler.metric",
                f"a metric the trials report: trial {number} (preprocessor.kind {pre['kind']}) has no "
                "preprocessor.validation, so it never reports " + scheduler.metric,
                scheduler.metric,
            )
        if scheduler.pgd_steps is not None and validation["steps"] != scheduler.pgd_steps:
            raise fail(
                "scheduler.metric",
                f"the PGD steps trial {number} measures with (preprocessor.validation.steps {validation['steps']}: "
                f"val_acc_pgd{validation['steps']})",
                scheduler.metric,
            )


def max_preprocessor_epochs(trial_configs: list[dict]) -> int:
    """The longest pre-processor training among validated trial configs: ASHA's default max_t."""
    return max((config["preprocessor"].get("epochs", 1) for config in trial_configs), default=1)
