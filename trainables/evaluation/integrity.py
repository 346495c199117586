"""Integrity checks of an evaluation: signs that its robust accuracies are not robustness.

Recorded as short flags with the measurements behind them, never hidden. Free, from the per-point
outcomes the attacks already gave (`orderings`):

* `<stronger>_above_<weaker>`: more steps on the same loss (`pgd20_above_pgd10`,
  `pgd20_margin_above_pgd10_margin`) or AutoAttack (`autoattack_above_pgd10`) left more points
  correct than the weaker attack, beyond noise (intervals.rises: McNemar's exact test and Tango's
  interval, paired on the same points).
* `pgd_above_autoattack`: a PGD attack left more of AutoAttack's points correct than AutoAttack did,
  by more than GAP_TOLERANCE beyond noise. AutoAttack is the stronger evaluation, so some gap is
  expected; a large one means PGD was stalled or its gradients masked (Croce & Hein 2020).
* `ce_above_margin`: PGD on the cross-entropy left more points correct than the same PGD on the
  margin, by more than GAP_TOLERANCE beyond noise: the signature of cross-entropy gradients that
  underflowed to 0 on large logits (the margin's cannot).
* `constant_predictions`, `autoattack_warning`, `autoattack_outside_budget`: a pipeline that answers
  one class, AutoAttack's own warnings, a returned point outside the budget.
* `autoattack_randomized_model`: among those warnings, pyautoattack's randomised-defence check
  (`check_randomized`: five passes over a batch disagree), which asks for its version 'rand'.
* `random_foundation`: the model declares modules random at test time (a ViT-MAE foundation with
  foundation.mask_ratio > 0) and the attacks ran without EOT (evaluation.eot_samples 1): each
  gradient is one random draw's, so the robust accuracies are those of a single-draw attack on a
  randomised defence, inflated. With EOT no flag; `randomness` in the details says what ran.

When `integrity` is on, at the cost of extra passes: `nondeterministic_model`; per-point input
gradients at the start and at a random start (`zero_input_gradient`, `nonfinite_input_gradient`);
the attack-strength sweep (Athalye et al.; AdvCL Sec. 5.1; Carlini et al. 2019): accuracy must not
rise with eps or steps (`accuracy_rises_with_eps`, `accuracy_rises_with_steps`) and must reach about
0 when the attack may change the image at will (`unbounded_attack_fails`).

There is no "robust above natural" flag: an attack's per-point outcome is already "correct before
and after the attack" (a naturally wrong point is never robust), so no robust accuracy can exceed
natural accuracy on the same points; a check of it could never fire.
"""

from __future__ import annotations

from typing import Any

import torch

from ..schema.evaluation import eot_samples
from ..schema.results import ATTACKS, PGD_ATTACKS, REFERENCE_ATTACK, SWEEP_POINTS
from ..seeding import derive_seed
from ..survival import PGDSetting, ball, eot_gradient, random_modules, reseed_random_modules, uniform_start
from .batches import Batches, SubsetBatches, robust_correct_settings
from .intervals import rises

SWEEP_EPS_FACTORS = (0.25, 0.5, 1.0, 2.0)
SWEEP_STEPS = (1, 10, 50)
SWEEP_STEP_FACTOR = 2.5  # step size 2.5 * eps / steps (Madry et al.'s rule)
# The sweep's last eps point: 1 is the whole image range, so the ball of every point is every image
# and an attack may turn any point into an image of another class. Any pipeline that does not give
# one answer everywhere therefore has accuracy 0 against a perfect attack there (Carlini et al.
# 2019's check: an unbounded attack should succeed on every point); PGD-10 at the sweep's step rule
# (2.5/10 per step) that leaves points correct is failing, not meeting robustness. Absolute, not a multiple of
# eps: 16 x 8/255 is about 0.5, but 16 x a small eps would not be unbounded at all.
UNBOUNDED_EPS = 1.0
# Flag when more than this share of the sweep's points stays correct at UNBOUNDED_EPS: 0 is
# expected; on the sweep's 64 points 0.05 lets 3 points through (a few points whose 10 steps end in
# a flat corner of the cube) and flags 4 or more.
UNBOUNDED_MAX_ACCURACY = 0.05
# Whether the sweep's settings share batches (trainables/survival.py; the same outcome either way),
# by what bench/bench_strength_sweep.py measured: on 2 CPU cores shared batches were slower (0.86x,
# the embedded pipeline); on an H200 1.69x faster for the embedded pipeline (launch-bound) and
# 1.00-1.03x for ViT-MAE-large at 224 px. Other device kinds: one run per setting.
SWEEP_SHARED_BATCHES = {"cpu": False, "cuda": True}
# Logits of two identical forward passes may differ by float noise on a GPU, not by more.
DETERMINISM_TOLERANCE = 1e-4
CONSTANT_PREDICTION_SHARE = 0.9  # one class for this share of the evaluated points: a degenerate pipeline
# Flag zero_input_gradient when more than this share of the first attacked batch has an input
# gradient of exactly 0 (at the point or at the random start): PGD cannot move such a point, so its
# robustness is assumed, not measured. 5% is the half-width of the 95% interval the evaluation aims
# for (AutoAttack's default point count): an unmeasured share that large would be a bias as big as
# the noise, while a healthy pipeline has essentially none (a ReLU network with every unit dead for
# that point, or a softmax saturated in fp32, is what it takes).
ZERO_GRADIENT_SHARE = 0.05
# A weaker evaluation may leave more points correct than a stronger one: AutoAttack's ensemble
# (100-step APGD, targeted and black-box attacks) finds a few points PGD-10/20 miss on a sound model,
# and on more than 2 classes the cross-entropy and the margin differ by a few points either way.
# Flag only a gap whose 95% lower bound exceeds 5 points: more than a stronger attack usually adds,
# the size of a stalled or masked attack (the saturated-logits case: PGD-10 0.83 -> 0.91).
GAP_TOLERANCE = 0.05
# What pyautoattack's check_randomized warns (checks.py): "it seems to be a randomized defense! ..."
AUTOATTACK_RANDOMIZED_WARNING = "randomized defense"


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
        if any(AUTOATTACK_RANDOMIZED_WARNING in message for message in aa_details["warnings"]):
            flags.add("autoattack_randomized_model")
    if aa_details["outside_budget"]:
        flags.add("autoattack_outside_budget")
    measured = randomness(model, config, aa_details, flags)
    if measured is not None:
        details["randomness"] = measured
    if not config["integrity"]:
        return flags, details  # the checks below cost extra passes; the orderings above were free
    first = torch.arange(min(config["batch_size"], len(batches)))
    details["determinism"] = _determinism(model, batches, first, flags)
    details["input_gradient"] = input_gradients(model, batches, correct["natural"], config, flags)
    details.update(sweeps(model, batches, correct["natural"], config, flags))
    return flags, details


def randomness(model, config, aa_details: dict[str, Any], flags: set[str]) -> dict[str, Any] | None:
    """What of the model is random at test time and how the attacks met it: its declared random
    modules (trainables/survival.py random_modules) with their mask ratios, the EOT passes of the
    PGD attacks and of AutoAttack's APGD. Flags `random_foundation` when such a model was attacked
    without EOT. None for a deterministic model without EOT (its details stay as they were)."""
    modules = random_modules(model)
    samples = eot_samples(config)
    if not modules and samples == 1:
        return None
    if modules and samples == 1:
        flags.add("random_foundation")
    return {
        "random_modules": [type(module).__name__ for module in modules],
        "mask_ratios": [getattr(module, "mask_ratio", None) for module in modules],
        "eot_samples": samples,
        "autoattack_eot_iter": aa_details.get("eot_iter"),
        # Scored by a pass of its own (survival.py), not by the passes the gradients came from.
        "fresh_check": bool(modules) or samples > 1,
    }


def _step_orderings() -> list[tuple[str, str]]:
    """(stronger, weaker) pairs: each PGD attack against the fewest-steps PGD attack on its loss
    (pgd20 vs pgd10, pgd20_margin vs pgd10_margin), and AutoAttack against REFERENCE_ATTACK."""
    pairs = []
    for name in PGD_ATTACKS:
        same_loss = [other for other in PGD_ATTACKS if ATTACKS[other].loss == ATTACKS[name].loss]
        weakest = min(same_loss, key=lambda other: ATTACKS[other].steps)
        if name != weakest:
            pairs.append((name, weakest))
    pairs += [(name, REFERENCE_ATTACK) for name, attack in ATTACKS.items() if attack.family == "autoattack"]
    return pairs


def _margin_twins() -> list[tuple[str, str]]:
    """(cross-entropy PGD, margin PGD) pairs with the same steps and step rule."""
    return [
        (ce, twin)
        for ce in PGD_ATTACKS
        if ATTACKS[ce].loss == "ce"
        for twin in PGD_ATTACKS
        if ATTACKS[twin].loss == "margin"
        and (ATTACKS[twin].steps, ATTACKS[twin].step_fraction) == (ATTACKS[ce].steps, ATTACKS[ce].step_fraction)
    ]


def orderings(correct: dict[str, torch.Tensor], config, flags: set[str]) -> dict[str, Any]:
    """Paired comparisons of the attacks' per-point outcomes (on the points both ran on), flagged
    where no honest evaluation goes (see the module docstring): keyed `<a>_vs_<b>`, each the paired
    difference accuracy(a) - accuracy(b) with its interval (intervals.rises)."""
    comparisons: dict[str, Any] = {}

    def compare(higher: str, lower: str) -> dict[str, Any] | None:
        if higher not in correct or lower not in correct:
            return None
        n = min(len(correct[higher]), len(correct[lower]))  # AutoAttack ran on a prefix of the points
        comparison = rises(correct[higher][:n], correct[lower][:n])
        comparisons[f"{higher}_vs_{lower}"] = comparison
        return comparison

    for stronger, weaker in _step_orderings():
        comparison = compare(stronger, weaker)
        if comparison is not None and comparison["rises"]:
            flags.add(f"{stronger}_above_{weaker}")
    for name in PGD_ATTACKS:
        comparison = compare(name, "autoattack")
        if comparison is not None and comparison["lo"] > GAP_TOLERANCE:
            flags.add("pgd_above_autoattack")
    for ce, twin in _margin_twins():
        comparison = compare(ce, twin)
        if comparison is not None and comparison["lo"] > GAP_TOLERANCE:
            flags.add("ce_above_margin")
    return comparisons


def _determinism(model, batches: Batches, positions: torch.Tensor, flags: set[str]) -> dict[str, float]:
    """A randomised pipeline (e.g. ViT-MAE's random masking left on) weakens single-pass attacks."""
    x, _ = batches.get(positions)
    reseed_random_modules(model, "determinism")  # two draws that differ, the same on every run
    with torch.no_grad():
        first, second = model(x), model(x)
    difference = float((first - second).abs().max())
    scale = float(first.abs().max())
    if not difference <= DETERMINISM_TOLERANCE * (1 + scale):  # `not <=` also catches NaN
        flags.add("nondeterministic_model")
    return {"max_logit_difference": difference}


def input_gradients(model, batches: Batches, natural: torch.Tensor, config, flags: set[str]) -> dict[str, Any]:
    """Per-point input gradients of the attack loss on the first batch PGD attacks (its first
    batch_size naturally correct points), at the points and at a seeded random start in the ball.

    A point whose cross-entropy gradient is exactly 0 never moves under PGD (sign(0) = 0) and counts
    as robust: large logits do it (fp32 softmax saturates past a margin of about 90-100), so do
    rounding and detaching pipelines. Recorded per place: the share of points with an all-zero
    gradient, the share with a non-finite one, and the same zero share for the margin loss (zero
    there too: the pipeline masks gradients; non-zero: the cross-entropy saturated).
    """
    positions = natural.nonzero().flatten()[: config["batch_size"]]
    details: dict[str, Any] = {"points": len(positions), "zero_threshold": ZERO_GRADIENT_SHARE}
    if not len(positions):
        return details  # no point is attacked: nothing to account for
    x, y = batches.get(positions)
    places = {"clean": x}
    if config["eps"] > 0:
        torch.manual_seed(derive_seed(config["seed"], "input-gradient", config["eps"]))
        places["random_start"] = uniform_start(x, config["eps"], *ball(x, config["eps"]))
    samples = eot_samples(config)
    for place, at in places.items():
        reseed_random_modules(model, config["seed"], "input-gradient", place)
        details[place] = measured = _gradient_shares(model, at, y, samples)
        if measured["zero_fraction"] > ZERO_GRADIENT_SHARE:
            flags.add("zero_input_gradient")
        if measured["nonfinite_fraction"] > 0:
            flags.add("nonfinite_input_gradient")
    return details


def _input_gradient(model, x: torch.Tensor, y: torch.Tensor, loss: str, samples: int = 1) -> torch.Tensor:
    """Per point (flattened), the input gradient of the summed attack loss: each point's own; the
    EOT mean over `samples` passes, as the attacks take it."""
    return eot_gradient(model, x.detach().clone(), y, loss, samples).detach().flatten(1)


def _gradient_shares(model, x: torch.Tensor, y: torch.Tensor, samples: int = 1) -> dict[str, Any]:
    # One forward pass per loss, not one with retain_graph: a compiled pipeline (compute.compile)
    # refuses a second backward through the same graph.
    ce, margin = _input_gradient(model, x, y, "ce", samples), _input_gradient(model, x, y, "margin", samples)
    finite = torch.isfinite(ce)
    largest = ce.abs()[finite]
    return {
        "zero_fraction": float((ce == 0).all(dim=1).float().mean()),
        "nonfinite_fraction": float((~finite.all(dim=1)).float().mean()),
        "margin_zero_fraction": float((margin == 0).all(dim=1).float().mean()),
        # None, not NaN: the details are JSON
        "max_abs": float(largest.max()) if largest.numel() else None,
    }


def sweeps(model, batches: Batches, natural: torch.Tensor, config, flags: set[str]) -> dict[str, Any]:
    """PGD-10 (cross-entropy) accuracy on the first points at growing eps, up to UNBOUNDED_EPS, and at
    growing steps: neither may rise, and at UNBOUNDED_EPS it must reach about 0."""
    eps, seed = config["eps"], config["seed"]
    if eps == 0:
        return {"sweep_note": "skipped: eps is 0"}
    subset = SubsetBatches(batches, min(SWEEP_POINTS, len(batches)))
    budgets = sorted({factor * eps for factor in SWEEP_EPS_FACTORS} | {UNBOUNDED_EPS})
    settings = {(budget, 10) for budget in budgets} | {(eps, steps) for steps in SWEEP_STEPS}
    outcome = robust_correct_settings(
        model,
        subset,
        natural[: len(subset)],
        [PGDSetting(budget, steps, SWEEP_STEP_FACTOR * budget / steps) for budget, steps in sorted(settings)],
        random_start=config["random_start"],
        seed_parts=(seed, "sweep"),
        shared_batches=SWEEP_SHARED_BATCHES.get(torch.device(batches.device).type, False),
        eot_samples=eot_samples(config),
    )
    by_eps = [outcome[(budget, 10)] for budget in budgets]
    by_steps = [outcome[(eps, steps)] for steps in SWEEP_STEPS]
    eps_checks = _monotone(by_eps)
    steps_checks = _monotone(by_steps)
    if any(check["rises"] for check in eps_checks.values()):
        flags.add("accuracy_rises_with_eps")
    if any(check["rises"] for check in steps_checks.values()):
        flags.add("accuracy_rises_with_steps")
    unbounded = float(outcome[(UNBOUNDED_EPS, 10)].float().mean())
    if not unbounded <= UNBOUNDED_MAX_ACCURACY:  # `not <=`: a NaN would flag too
        flags.add("unbounded_attack_fails")
    return {
        "sweep_points": len(subset),
        "sweep_eps": [(budget, float(c.float().mean())) for budget, c in zip(budgets, by_eps)],
        "sweep_steps": [(steps, float(c.float().mean())) for steps, c in zip(SWEEP_STEPS, by_steps)],
        "sweep_eps_checks": eps_checks,
        "sweep_steps_checks": steps_checks,
        "sweep_unbounded": {"eps": UNBOUNDED_EPS, "accuracy": unbounded, "bound": UNBOUNDED_MAX_ACCURACY},
    }


def _monotone(series: list[torch.Tensor]) -> dict[str, dict[str, Any]]:
    """Every later (stronger) entry against every earlier one, paired on the same points."""
    return {f"{j}_vs_{i}": rises(series[j], series[i]) for j in range(len(series)) for i in range(j)}
