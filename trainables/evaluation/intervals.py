"""A trial's intervals: one accuracy's score interval, and whether a stronger attack leaves more points correct.

Nothing here resamples (it was bootstrap.py, with percentile bootstraps, before issue 32).
Per-trial accuracy intervals are Wilson score intervals (0 of 64 is [0, 5.7%], not a bootstrap's
[0, 0]); a paired comparison of two attacks on the same points is McNemar's exact test with
Tango's score interval (trainables/statistics.py says why each).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..schema.results import CONFIDENCE, metric_columns
from ..statistics import mcnemar, tango_interval, wilson_interval


def metric(name: str, correct: torch.Tensor | None) -> dict[str, Any]:
    """The row's columns of one accuracy (value, Wilson interval at CONFIDENCE, count) from
    per-point correctness; exact arithmetic, the same in any process."""
    accuracy, low_column, high_column, count = metric_columns(name)
    if correct is None:  # not run: NaN, so a missing attack never reads as 0% robust
        return {accuracy: math.nan, low_column: math.nan, high_column: math.nan, count: 0}
    points = int(correct.numel())
    right = int(correct.sum())
    low, high = wilson_interval(right, points, CONFIDENCE)
    return {accuracy: right / points if points else math.nan, low_column: low, high_column: high, count: points}


def rises(higher_budget: torch.Tensor, lower_budget: torch.Tensor) -> dict[str, Any]:
    """accuracy(stronger attack) - accuracy(weaker) on the same points, and whether it is above 0
    beyond noise.

    Only the points the two disagree on carry the difference: `a_only` (correct under the
    stronger attack, broken by the weaker) and `b_only` (the other way). `rises` when McNemar's one-sided
    exact test (`p`: P(X >= a_only), X ~ Binomial(discordant, 1/2)) is below (1 - CONFIDENCE) / 2
    AND Tango's score interval (`lo`, `hi`) lies above 0. The exact test rather than a paired
    bootstrap: these checks run on 64 points with a handful of discordant ones, where a percentile
    bootstrap is too narrow (4 points all one way gave an interval above 0 while p = 0.0625), and
    a flag should not fire on noise.
    """
    stronger = higher_budget.bool().flatten()
    weaker = lower_budget.bool().flatten()
    if stronger.shape != weaker.shape:
        raise ValueError(f"rises: {len(stronger)} and {len(weaker)} points; the same points are needed")
    points = len(stronger)
    stronger_only = int((stronger & ~weaker).sum())
    weaker_only = int((~stronger & weaker).sum())
    if points == 0:
        return {"difference": math.nan, "lo": math.nan, "hi": math.nan, "rises": False}
    test = mcnemar(stronger_only, weaker_only)
    low, high = tango_interval(stronger_only, weaker_only, points, CONFIDENCE)
    return {
        "difference": (stronger_only - weaker_only) / points,
        "lo": low,
        "hi": high,
        "rises": bool(test.p_greater < (1 - CONFIDENCE) / 2 and low > 0),
        "p": test.p_greater,
        "a_only": stronger_only,
        "b_only": weaker_only,
    }
