"""Seeded percentile bootstrap: an accuracy's interval, and paired differences between two attacks.

Every resample is drawn from a seed derived from the evaluation seed and what is measured, so the
same points give the same interval in any process.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..schema.results import CONFIDENCE, metric_columns
from ..seeding import derive_seed


def bootstrap_means(values: np.ndarray, resamples: int, seed_parts: tuple) -> np.ndarray:
    """Means of `resamples` seeded resamples (with replacement, same size) of `values`."""
    rng = np.random.default_rng(derive_seed(*seed_parts))
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(len(values), 1))  # bounded memory for large test sets
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        means[start:stop] = values[rng.integers(0, len(values), size=(stop - start, len(values)))].mean(axis=1)
    return means


def interval(values: np.ndarray, resamples: int, seed_parts: tuple) -> tuple[float, float]:
    """The CONFIDENCE percentile interval of the mean of `values`."""
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(bootstrap_means(values, resamples, seed_parts), [tail, 100 - tail])
    return float(low), float(high)


def metric(name: str, correct: torch.Tensor | None, resamples: int, seed: int) -> dict[str, Any]:
    """The row's columns of one accuracy (value, interval, count) from per-point correctness."""
    accuracy, low_column, high_column, count = metric_columns(name)
    if correct is None:  # not run: NaN, so a missing attack never reads as 0% robust
        return {accuracy: math.nan, low_column: math.nan, high_column: math.nan, count: 0}
    values = correct.numpy().astype(np.float64)
    low, high = interval(values, resamples, (seed, "bootstrap", name))
    return {accuracy: float(values.mean()), low_column: low, high_column: high, count: len(values)}


def rises(higher_budget: torch.Tensor, lower_budget: torch.Tensor, resamples: int, seed_parts: tuple) -> dict[str, Any]:
    """Paired bootstrap of accuracy(stronger attack) - accuracy(weaker) on the same points.

    `rises` when the whole interval is above 0: more than resampling noise.
    """
    difference = higher_budget.numpy().astype(np.float64) - lower_budget.numpy().astype(np.float64)
    low, high = interval(difference, resamples, seed_parts)
    return {"difference": float(difference.mean()), "lo": low, "hi": high, "rises": low > 0}
