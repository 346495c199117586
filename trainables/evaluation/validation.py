"""The trial's validation metrics: the same evaluation on the validation split, for selection only.

A sweep chooses among its configurations (Optuna's objectives, Pareto fronts, a report's "best")
by these `val_*` numbers; the test set is only reported. The validation split is held out of the
training split (trainables/data.py validation_split): nothing of the trial trains on it.

What runs: natural accuracy and the validation attacks (evaluation.validation_attacks; by default
every PGD attack the trial's `attacks` name) on every validation image, with the trial's eps,
seeds and step sizes; no AutoAttack unless asked for (its cost) and no integrity checks (the test
evaluation records those). Each accuracy keeps its name with a `val_` prefix and its interval.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..schema.evaluation import validation_attacks
from ..schema.results import ACCURACY_NAMES, accuracy_column, interval_columns, time_column, validation_columns
from .run import evaluate


def validation_metrics(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    evaluation_cfg: dict,
    *,
    num_classes: int,
    default_eps: float,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """`val_acc_<name>` with `_lo` / `_hi` for natural and each validation attack, `val_points` and
    `time_validation_s`; NaN accuracies and 0 points where the trial has no validation split."""
    started = time.perf_counter()
    attacks = validation_attacks(evaluation_cfg)
    result: dict[str, Any] = {"val_points": len(images)}
    if len(images) == 0:
        for name in ACCURACY_NAMES:
            result.update(dict.fromkeys(validation_columns(name), float("nan")))
        result[time_column("validation")] = 0.0
        return result
    config = {
        **dict(evaluation_cfg),
        "attacks": attacks,
        "n_examples": None,  # every validation image
        "autoattack_examples": len(images) if "autoattack" in attacks else 0,
        "integrity": False,
    }
    metrics = evaluate(model, images, labels, config, num_classes=num_classes, default_eps=default_eps, device=device)
    for name in ACCURACY_NAMES:
        measured = (metrics.get(column, float("nan")) for column in (accuracy_column(name), *interval_columns(name)))
        result.update(dict(zip(validation_columns(name), measured)))
    result[time_column("validation")] = time.perf_counter() - started
    return result
