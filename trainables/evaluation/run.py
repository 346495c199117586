"""The evaluation's entry point: every asked-for attack of the registry on the whole pipeline, then the row's metrics.

`evaluate` resolves the section, runs natural accuracy and each attack (schema/results.py's ATTACKS,
in table order, each by its family's runner), takes the per-point worst case over them, then the
Wilson intervals and integrity checks.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator, Mapping

import torch

from .. import stage_progress
from ..schema.evaluation import eot_samples, resolve_evaluation_config
from ..schema.fields import is_int
from ..schema.results import (
    ACCURACY_NAMES,
    ATTACKS,
    NATURAL,
    PGD_ATTACKS,
    WORST,
    Attack,
    step_size_column,
    time_column,
)
from ..survival import is_random, random_modules
from .autoattack import autoattack_correct, not_run_details
from .batches import Batches, evaluation_order, given_predictions, natural_predictions, robust_correct
from .integrity import integrity
from .intervals import metric

# AutoAttack's details that are no row columns (integrity.py records them).
AUTOATTACK_DETAILS_ONLY = ("warnings", "eot_iter")
# (steps, step size as a fraction of eps) of each PGD attack: the papers' settings.
PGD_SETTINGS = {name: (ATTACKS[name].steps, ATTACKS[name].step_fraction) for name in PGD_ATTACKS}


def evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: Mapping[str, Any] | None,
    *,
    num_classes: int,
    default_eps: float,
    device: str | torch.device = "cpu",
    natural_logits: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Attack the whole pipeline `model` (images in [0,1] -> logits) and return metrics and integrity flags.

    `natural_logits`: the pipeline's clean logits of every test image, when the caller has them
    (a trial computes them from shared features: trainables/shared_features.py); else computed here.

    Points evaluated: the first n_examples of a seeded order of the test set whose every prefix is
    stratified by class (batches.evaluation_order); AutoAttack runs on the first
    autoattack_examples of those.
    """
    config = resolve_evaluation_config(config, num_test=len(images), default_eps=default_eps)
    _check_inputs(images, labels, num_classes)
    started = time.perf_counter()
    device = torch.device(device)
    # fork_rng: the seeded attacks (and AutoAttack's own manual_seed calls) leave the caller's RNG
    # alone; the same for the generators of a model's random modules, which the evaluation reseeds.
    with (
        _eval_mode(model),
        torch.random.fork_rng(devices=_cuda_indices(device)),
        _kept_module_generators(model),
        torch.enable_grad(),
    ):
        result = _evaluate(model, images, labels, config, num_classes, device, natural_logits)
    result[time_column("evaluation")] = time.perf_counter() - started
    return result


def _check_inputs(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (B, C, H, W), got {tuple(images.shape)} {images.dtype}")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError("images must lie in [0, 1]: the attacks clip to that range")
    if not is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the evaluation; each submodule gets its own previous mode back (they may differ)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.train(training)


@contextlib.contextmanager
def _kept_module_generators(model: torch.nn.Module) -> Iterator[None]:
    """The random modules' generators (trainables/survival.py random_modules) as they were, afterwards."""
    generators = [module.generator for module in random_modules(model) if hasattr(module, "generator")]
    states = [generator.get_state() for generator in generators]
    try:
        yield
    finally:
        for generator, state in zip(generators, states):
            generator.set_state(state)


def _cuda_indices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _evaluate(model, images, labels, config, num_classes, device, natural_logits=None) -> dict[str, Any]:
    order = evaluation_order(labels, config["n_examples"], config["seed"])
    batches = Batches(images, labels, order, config["batch_size"], device)
    correct, predicted, aa_details, timings = _run_attacks(model, batches, config, num_classes, natural_logits)
    worst = worst_case(correct)
    if worst is not None:
        correct[WORST] = worst

    result: dict[str, Any] = {"eps": config["eps"], "attacks": list(config["attacks"])}
    result.update({step_size_column(name): pgd_setting(name, config)[1] for name in PGD_ATTACKS})
    for name in ACCURACY_NAMES:
        result.update(metric(name, correct.get(name)))
    result["examples"] = per_example_outcomes(batches, correct)
    # Its warnings and EOT passes go to integrity_details (integrity.py), not to columns of their own.
    result.update(
        {f"autoattack_{key}": value for key, value in aa_details.items() if key not in AUTOATTACK_DETAILS_ONLY}
    )

    tic = time.perf_counter()
    stage_progress.report("evaluation", "integrity checks (attack-strength sweep)", force=True)
    flags, details = integrity(model, batches, correct, config, aa_details, predicted)
    timings["integrity"] = time.perf_counter() - tic
    result["integrity_flags"] = sorted(flags)
    result["integrity_checked"] = config["integrity"]
    result["sweep_eps"] = details.pop("sweep_eps", [])
    result["sweep_steps"] = details.pop("sweep_steps", [])
    result["integrity_details"] = details
    result.update({time_column(name): seconds for name, seconds in timings.items()})
    return result


def _run_attacks(model, batches: Batches, config, num_classes: int, natural_logits=None):
    """Per-point correctness under each asked-for attack (natural always), AutoAttack's details, timings."""
    timings = {}
    tic = time.perf_counter()
    # A model random at test time gets one fresh, seeded draw per point here: the caller's logits
    # (from features computed once, with whatever draws were current) would not be reproducible.
    if natural_logits is None or is_random(model):
        predicted = natural_predictions(model, batches, num_classes, seed=config["seed"])
    else:
        predicted = given_predictions(natural_logits, batches, num_classes)
    natural = predicted == batches.labels[batches.order].long().cpu()
    timings["natural"] = time.perf_counter() - tic
    correct: dict[str, torch.Tensor] = {"natural": natural}
    # Same keys whether or not AutoAttack ran, so result tables keep their columns.
    aa_details: dict[str, Any] = not_run_details()
    for attack in ATTACKS.values():
        if attack.name not in config["attacks"]:
            continue
        tic = time.perf_counter()
        outcome = FAMILY_RUNNERS[attack.family](model, batches, natural, attack, config, num_classes)
        if outcome is None:  # asked for, but nothing to run (autoattack_examples: 0)
            continue
        correct[attack.name], details = outcome
        if attack.family == "autoattack":
            aa_details = details
        timings[attack.name] = time.perf_counter() - tic
    return correct, predicted, aa_details, timings


def _run_pgd(model, batches: Batches, natural: torch.Tensor, attack: Attack, config, num_classes: int):
    steps, step_size = pgd_setting(attack.name, config)
    robust = robust_correct(
        model,
        batches,
        natural,
        label=attack.label,
        loss=attack.loss,
        eps=config["eps"],
        steps=steps,
        step_size=step_size,
        random_start=config["random_start"],
        seed_parts=(config["seed"], attack.name),
        eot_samples=eot_samples(config),
    )
    return robust, None


def _run_autoattack(model, batches: Batches, natural: torch.Tensor, attack: Attack, config, num_classes: int):
    if config["autoattack_examples"] <= 0:
        return None
    stage_progress.report("evaluation", f"AutoAttack on {config['autoattack_examples']} points", force=True)
    return autoattack_correct(model, batches, natural, config, num_classes)


# How each family of schema/results.py's attacks runs: (model, batches, natural, attack, config,
# num_classes) -> None (not run) or (per-point correctness, details). A new family adds its runner here.
FAMILY_RUNNERS: dict[str, Callable[..., Any]] = {"pgd": _run_pgd, "autoattack": _run_autoattack}


def pgd_setting(name: str, config) -> tuple[int, float]:
    """(steps, step size) of a PGD attack: the papers' fraction of eps unless the config sets the step."""
    steps, fraction = PGD_SETTINGS[name]
    given = (config.get("pgd_step_size") or {}).get(name)
    return steps, float(given) if given is not None else config["eps"] * fraction


def worst_case(correct: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """Per evaluated point: correct naturally and under every attack that ran on it; None when no attack ran.

    An attack run on a prefix of the points (AutoAttack on the first autoattack_examples) counts on
    that prefix only, so beyond it the worst case is over the other attacks. From the per-point
    outcomes the attacks already recorded: nothing is attacked again. Without any attack there is no
    worst case to report (it would be natural accuracy under another name).
    """
    attacks = [name for name in ATTACKS if name in correct]
    if not attacks:
        return None
    worst = correct[NATURAL].clone()
    for name in attacks:
        outcome = correct[name]
        worst[: len(outcome)] &= outcome
    return worst


def per_example_outcomes(batches: Batches, correct: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Every evaluated point in evaluation order: its index in the test set, its label, and per
    accuracy (natural, each attack run, the worst case over them) whether the pipeline was right.
    Two trials evaluated with the same evaluation seed and counts saw the same points, so they can be
    compared point by point (paired), not only by their marginal accuracies. An attack run on a
    prefix of the points (AutoAttack) has a shorter list; the worst case covers every point.
    """
    return {
        "index": batches.order.tolist(),
        "label": batches.labels[batches.order].tolist(),
        "correct": {name: outcome.tolist() for name, outcome in correct.items()},
    }
