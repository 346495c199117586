"""Integrity checks of an evaluation: signs that its robust accuracies are not robustness.

Recorded as short flags with the measurements behind them, never hidden: orderings no honest
evaluation violates, a pipeline that answers one class, AutoAttack's own warnings, and (when
`integrity` is on, at the cost of extra passes) determinism, input gradients and the
attack-strength sweep (Athalye et al.; AdvCL Sec. 5.1): accuracy must not rise with eps or steps.
"""

from __future__ import annotations

from typing import Any

import torch

from ..schema.results import ATTACKS, REFERENCE_ATTACK, SWEEP_POINTS
from ..survival import PGDSetting, attack_loss
from .batches import Batches, SubsetBatches, robust_correct_settings
from .bootstrap import rises

SWEEP_EPS_FACTORS = (0.25, 0.5, 1.0, 2.0)
SWEEP_STEPS = (1, 10, 50)
SWEEP_STEP_FACTOR = 2.5  # step size 2.5 * eps / steps (Madry et al.'s rule)
# Whether the sweep's settings share batches (trainables/survival.py; the same outcome either way),
# by what bench/bench_strength_sweep.py measured: on 2 CPU cores shared batches were slower (0.86x,
# the embedded pipeline); on an H200 1.69x faster for the embedded pipeline (launch-bound) and
# 1.00-1.03x for ViT-MAE-large at 224 px. Other device kinds: one run per setting.
SWEEP_SHARED_BATCHES = {"cpu": False, "cuda": True}
# Logits of two identical forward passes may differ by float noise on a GPU, not by more.
DETERMINISM_TOLERANCE = 1e-4
CONSTANT_PREDICTION_SHARE = 0.9  # one class for this share of the evaluated points: a degenerate pipeline


def integrity(
    model,
    batches: Batches,
    correct: dict[str, torch.Tensor],
    config,
    aa_details: dict[str, Any],
    predicted: torch.Tensor,
):
    """Flags (short names) and the measurements behind them."""
    flags: set[str] = set()
    details: dict[str, Any] = {"comparisons": orderings(correct, config, flags)}
    # A pipeline that answers one class whatever the input (an auto-encoder that outputs its mean
    # image) scores that class's share under every attack: "robust" accuracy that is no robustness.
    share = float(torch.bincount(predicted).max()) / len(predicted)
    details["majority_prediction_share"] = share
    if share >= CONSTANT_PREDICTION_SHARE:
        flags.add("constant_predictions")
    if aa_details.get("warnings"):  # AutoAttack's own checks: randomised, dynamic, Square beat APGD, ...
        flags.add("autoattack_warning")
        details["autoattack_warnings"] = aa_details["warnings"]
    if aa_details["outside_budget"]:
        flags.add("autoattack_outside_budget")
    if not config["integrity"]:
        return flags, details  # the checks below cost extra passes; the orderings above were free
    first = torch.arange(min(config["batch_size"], len(batches)))
    details["determinism"] = _determinism(model, batches, first, flags)
    details["input_gradient"] = _gradient_check(model, batches, first, flags)
    details.update(sweeps(model, batches, correct["natural"], config, flags))
    return flags, details


def orderings(correct: dict[str, torch.Tensor], config, flags: set[str]) -> dict[str, Any]:
    """Orderings no honest evaluation can violate: robust <= natural, a stronger attack <= the
    reference (the weakest, PGD-10)."""
    resamples, seed = config["bootstrap_resamples"], config["seed"]
    natural, comparisons = correct["natural"], {}
    for name in ATTACKS:
        if name in correct:
            same_points = natural[: len(correct[name])]  # AutoAttack ran on a prefix of the points
            if correct[name].float().mean() > same_points.float().mean():
                flags.add("robust_above_natural")
    if REFERENCE_ATTACK in correct:
        for name in ATTACKS:
            if name != REFERENCE_ATTACK and name in correct:
                reference = correct[REFERENCE_ATTACK][: len(correct[name])]
                key = f"{name}_vs_{REFERENCE_ATTACK}"
                comparisons[key] = rises(correct[name], reference, resamples, (seed, "compare", name))
                if comparisons[key]["rises"]:
                    flags.add(f"{name}_above_{REFERENCE_ATTACK}")
    return comparisons


def _determinism(model, batches: Batches, positions: torch.Tensor, flags: set[str]) -> dict[str, float]:
    """A randomised pipeline (e.g. ViT-MAE's random masking left on) weakens single-pass attacks."""
    x, _ = batches.get(positions)
    with torch.no_grad():
        first, second = model(x), model(x)
    difference = float((first - second).abs().max())
    scale = float(first.abs().max())
    if not difference <= DETERMINISM_TOLERANCE * (1 + scale):  # `not <=` also catches NaN
        flags.add("nondeterministic_model")
    return {"max_logit_difference": difference}


def _gradient_check(model, batches: Batches, positions: torch.Tensor, flags: set[str]) -> dict[str, float]:
    """Zero or non-finite input gradients through the pipeline make gradient attacks fail silently."""
    x, y = batches.get(positions)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(attack_loss(model(x), y, x), x)
    finite = bool(torch.isfinite(grad).all())
    per_point = grad.detach().flatten(1).abs().sum(dim=1)
    if not finite:
        flags.add("nonfinite_input_gradient")
    elif bool((per_point == 0).all()):
        flags.add("zero_input_gradient")
    return {
        "points": len(positions),
        "zero_fraction": float((per_point == 0).float().mean()),
        "max_abs": float(grad.abs().max()),
        "finite": finite,
    }


def sweeps(model, batches: Batches, natural: torch.Tensor, config, flags: set[str]) -> dict[str, Any]:
    """PGD accuracy on the first points at growing eps and growing steps: neither may rise."""
    eps, resamples, seed = config["eps"], config["bootstrap_resamples"], config["seed"]
    if eps == 0:
        return {"sweep_note": "skipped: eps is 0"}
    subset = SubsetBatches(batches, min(SWEEP_POINTS, len(batches)))
    settings = {(factor * eps, 10) for factor in SWEEP_EPS_FACTORS} | {(eps, steps) for steps in SWEEP_STEPS}
    outcome = robust_correct_settings(
        model,
        subset,
        natural[: len(subset)],
        [PGDSetting(budget, steps, SWEEP_STEP_FACTOR * budget / steps) for budget, steps in sorted(settings)],
        random_start=config["random_start"],
        seed_parts=(seed, "sweep"),
        shared_batches=SWEEP_SHARED_BATCHES.get(torch.device(batches.device).type, False),
    )
    by_eps = [outcome[(factor * eps, 10)] for factor in SWEEP_EPS_FACTORS]
    by_steps = [outcome[(eps, steps)] for steps in SWEEP_STEPS]
    eps_checks = _monotone(by_eps, resamples, (seed, "sweep-eps"))
    steps_checks = _monotone(by_steps, resamples, (seed, "sweep-steps"))
    if any(check["rises"] for check in eps_checks.values()):
        flags.add("accuracy_rises_with_eps")
    if any(check["rises"] for check in steps_checks.values()):
        flags.add("accuracy_rises_with_steps")
    return {
        "sweep_points": len(subset),
        "sweep_eps": [(factor * eps, float(c.float().mean())) for factor, c in zip(SWEEP_EPS_FACTORS, by_eps)],
        "sweep_steps": [(steps, float(c.float().mean())) for steps, c in zip(SWEEP_STEPS, by_steps)],
        "sweep_eps_checks": eps_checks,
        "sweep_steps_checks": steps_checks,
    }


def _monotone(series: list[torch.Tensor], resamples: int, seed_parts: tuple) -> dict[str, dict[str, Any]]:
    """Every later (stronger) entry against every earlier one, paired on the same points."""
    return {
        f"{j}_vs_{i}": rises(series[j], series[i], resamples, (*seed_parts, i, j))
        for j in range(len(series))
        for i in range(j)
    }
