"""White-box robustness of a whole images->logits pipeline: natural, PGD-10/20 and AutoAttack accuracy.

Each accuracy comes with a seeded 95% bootstrap interval; integrity checks are recorded as flags, never hidden.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from . import stage_progress
from .schema.evaluation import ATTACKS, SECTION, resolve_evaluation_config
from .schema.fields import is_int
from .seeding import derive_seed
from .survival import PGDSetting, attack_loss, pgd_survives, predict, survives_settings

# The paper's PGD settings: (steps, step size as a fraction of eps).
PGD_SETTINGS = {"pgd10": (10, 1 / 5), "pgd20": (20, 1 / 10)}
# Standard AutoAttack's targeted attacks need >= 4 classes (the targeted DLR loss reads the
# 4th-largest logit); below that the paper ran APGD-CE, FAB and Square only.
STANDARD_AA_MIN_CLASSES = 4
SMALL_TASK_AA_ATTACKS = ["apgd-ce", "fab", "square"]
STANDARD_AA_TARGETS = 9
# Attack-strength sweep (Athalye et al.; AdvCL Sec. 5.1): accuracy must not rise with eps or steps.
SWEEP_POINTS = 64
SWEEP_EPS_FACTORS = (0.25, 0.5, 1.0, 2.0)
SWEEP_STEPS = (1, 10, 50)
SWEEP_STEP_FACTOR = 2.5  # step size 2.5 * eps / steps (Madry et al.'s rule)
# Whether the sweep's settings share batches (trainables/survival.py; the same outcome either way),
# by what bench/bench_strength_sweep.py measured: on 2 CPU cores shared batches were slower (0.86x,
# the embedded pipeline); on an H200 1.69x faster for the embedded pipeline (launch-bound) and
# 1.00-1.03x for ViT-MAE-large at 224 px. Other device kinds: one run per setting.
SWEEP_SHARED_BATCHES = {"cpu": False, "cuda": True}
CONFIDENCE = 0.95
# Logits of two identical forward passes may differ by float noise on a GPU, not by more.
DETERMINISM_TOLERANCE = 1e-4
CONSTANT_PREDICTION_SHARE = 0.9  # one class for this share of the evaluated points: a degenerate pipeline
BUDGET_TOLERANCE = 1e-5


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

    Points evaluated: the first n_examples of a seeded permutation of the test set (test sets stored
    class by class would otherwise give a biased subset); AutoAttack runs on the first
    autoattack_examples of those.
    """
    config = resolve_evaluation_config(config, num_test=len(images), default_eps=default_eps)
    _check_inputs(images, labels, num_classes)
    started = time.perf_counter()
    device = torch.device(device)
    # fork_rng: the seeded attacks (and AutoAttack's own manual_seed calls) leave the caller's RNG alone.
    with _eval_mode(model), torch.random.fork_rng(devices=_cuda_indices(device)), torch.enable_grad():
        result = _evaluate(model, images, labels, config, num_classes, device, natural_logits)
    result["time_evaluation_s"] = time.perf_counter() - started
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


def _cuda_indices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _evaluate(model, images, labels, config, num_classes, device, natural_logits=None) -> dict[str, Any]:
    order = _evaluation_order(len(images), config["n_examples"], config["seed"])
    batches = _Batches(images, labels, order, config["batch_size"], device)
    correct, predicted, aa_details, timings = _run_attacks(model, batches, config, num_classes, natural_logits)

    result: dict[str, Any] = {"eps": config["eps"], "attacks": list(config["attacks"])}
    result.update({f"{name}_step_size": pgd_setting(name, config)[1] for name in PGD_SETTINGS})
    for name in ("natural", *ATTACKS):
        result.update(_metric(name, correct.get(name), config["bootstrap_resamples"], config["seed"]))
    result["examples"] = per_example_outcomes(batches, correct)
    result.update({f"autoattack_{key}": value for key, value in aa_details.items() if key != "warnings"})

    tic = time.perf_counter()
    stage_progress.report("evaluation", "integrity checks (attack-strength sweep)", force=True)
    flags, details = _integrity(model, batches, correct, config, aa_details, predicted)
    timings["integrity"] = time.perf_counter() - tic
    result["integrity_flags"] = sorted(flags)
    result["integrity_checked"] = config["integrity"]
    result["sweep_eps"] = details.pop("sweep_eps", [])
    result["sweep_steps"] = details.pop("sweep_steps", [])
    result["integrity_details"] = details
    result.update({f"time_{name}_s": seconds for name, seconds in timings.items()})
    return result


def _run_attacks(model, batches: _Batches, config, num_classes: int, natural_logits=None):
    """Per-point correctness under each asked-for attack (natural always), AutoAttack's details, timings."""
    eps, timings = config["eps"], {}
    tic = time.perf_counter()
    if natural_logits is None:
        predicted = _natural_predictions(model, batches, num_classes)
    else:
        predicted = _given_predictions(natural_logits, batches, num_classes)
    natural = predicted == batches.labels[batches.order].long().cpu()
    timings["natural"] = time.perf_counter() - tic
    correct: dict[str, torch.Tensor] = {"natural": natural}
    for name in ("pgd10", "pgd20"):
        if name in config["attacks"]:
            tic = time.perf_counter()
            steps, step_size = pgd_setting(name, config)
            correct[name] = _robust_correct(
                model,
                batches,
                natural,
                label=name.upper().replace("PGD", "PGD-"),
                eps=eps,
                steps=steps,
                step_size=step_size,
                random_start=config["random_start"],
                seed_parts=(config["seed"], name),
            )
            timings[name] = time.perf_counter() - tic
    # Same keys whether or not AutoAttack ran, so result tables keep their columns.
    aa_details: dict[str, Any] = {"version": None, "list": [], "acc_natural": math.nan, "outside_budget": False}
    if "autoattack" in config["attacks"] and config["autoattack_examples"] > 0:
        stage_progress.report("evaluation", f"AutoAttack on {config['autoattack_examples']} points", force=True)
        tic = time.perf_counter()
        correct["autoattack"], aa_details = _autoattack_correct(model, batches, natural, config, num_classes)
        timings["autoattack"] = time.perf_counter() - tic
    return correct, predicted, aa_details, timings


def pgd_setting(name: str, config) -> tuple[int, float]:
    """(steps, step size) of pgd10 / pgd20: the papers' fraction of eps unless the config sets the step."""
    steps, fraction = PGD_SETTINGS[name]
    given = (config.get("pgd_step_size") or {}).get(name)
    return steps, float(given) if given is not None else config["eps"] * fraction


def per_example_outcomes(batches: _Batches, correct: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Every evaluated point in evaluation order: its index in the test set, its label, and per
    attack run whether the pipeline was right. Two trials evaluated with the same evaluation seed
    and counts saw the same points, so they can be compared point by point (paired), not only by
    their marginal accuracies. An attack run on a prefix of the points (AutoAttack) has a shorter list.
    """
    return {
        "index": batches.order.tolist(),
        "label": batches.labels[batches.order].tolist(),
        "correct": {name: outcome.tolist() for name, outcome in correct.items()},
    }


def _evaluation_order(num_test: int, n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(derive_seed(seed, SECTION, "subset"))
    return torch.randperm(num_test, generator=generator)[:n]


class _Batches:
    """The evaluated points, fetched by position in batches; never copies the whole test set."""

    def __init__(self, images, labels, order, batch_size, device):
        self.images, self.labels, self.order = images, torch.as_tensor(labels), order
        self.batch_size, self.device = batch_size, device

    def __len__(self) -> int:
        return len(self.order)

    def get(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.order[positions]
        x = self.images[index].detach().to(self.device)
        return x, self.labels[index].to(self.device, torch.long)

    def chunks(self, positions: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        for batch_number, start in enumerate(range(0, len(positions), self.batch_size)):
            yield batch_number, positions[start : start + self.batch_size]


def _natural_predictions(model, batches: _Batches, num_classes: int) -> torch.Tensor:
    """The predicted class of every evaluated point, unattacked."""
    predicted = torch.zeros(len(batches), dtype=torch.int64)
    for _, positions in batches.chunks(torch.arange(len(batches))):
        x, _ = batches.get(positions)
        with torch.no_grad():
            logits = model(x)
        if logits.dim() != 2 or logits.shape[1] != num_classes:
            raise ValueError(f"the model gives logits of shape {tuple(logits.shape)}, expected (B, {num_classes})")
        predicted[positions] = logits.argmax(dim=1).cpu()
    return predicted


def _given_predictions(logits: torch.Tensor, batches: _Batches, num_classes: int) -> torch.Tensor:
    if tuple(logits.shape) != (len(batches.images), num_classes):
        raise ValueError(
            f"natural_logits of shape {tuple(logits.shape)}, expected ({len(batches.images)}, {num_classes})"
        )
    return logits[batches.order.to(logits.device)].argmax(dim=1).cpu()


def _robust_correct(
    model,
    batches: _Batches,
    natural: torch.Tensor,
    *,
    eps,
    steps,
    step_size,
    random_start,
    seed_parts: tuple,
    label: str,
) -> torch.Tensor:
    """Per evaluated point: classified correctly before and after PGD on the cross-entropy.

    A naturally misclassified point counts as not robust without an attack, which is exactly the
    worst case an attack on it could reach; so skipping it loses no strength.
    """
    robust = torch.zeros(len(batches), dtype=torch.bool)
    attacked = natural.nonzero().flatten()
    total = -(-len(attacked) // batches.batch_size)
    for batch_number, positions in batches.chunks(attacked):
        stage_progress.report("evaluation", f"{label}: batch {batch_number + 1}/{total}", force=batch_number == 0)
        x, y = batches.get(positions)
        # Seeded per batch, so a result never depends on how many batches ran before it.
        torch.manual_seed(derive_seed(*seed_parts, eps, steps, batch_number))
        robust[positions] = pgd_survives(
            model, x, y, eps=eps, steps=steps, step_size=step_size, random_start=random_start
        ).cpu()
    return robust


def _robust_correct_settings(
    model,
    batches: _Batches,
    natural: torch.Tensor,
    settings: list[PGDSetting],
    *,
    random_start: bool,
    seed_parts: tuple,
    shared_batches: bool,
) -> dict[tuple[float, int], torch.Tensor]:
    """_robust_correct for each setting, keyed by (eps, steps): one run per setting, or all settings
    in shared batches (trainables/survival.py); the same random starts, so the same outcome."""
    if not shared_batches:
        return {
            (s.eps, s.steps): _robust_correct(
                model,
                batches,
                natural,
                eps=s.eps,
                steps=s.steps,
                step_size=s.step_size,
                random_start=random_start,
                seed_parts=seed_parts,
                label=f"strength sweep, eps {s.eps:.4g}, {s.steps} steps",
            )
            for s in settings
        }
    stage_progress.report("evaluation", f"strength sweep, {len(settings)} settings in shared batches", force=True)
    chunks = (
        (number, positions, *batches.get(positions))
        for number, positions in batches.chunks(natural.nonzero().flatten())
    )
    pieces = survives_settings(
        model,
        chunks,
        settings,
        random_start=random_start,
        seed_of=lambda s, number: derive_seed(*seed_parts, s.eps, s.steps, number),
        batch_size=batches.batch_size,
    )
    outcome = {}
    for setting, parts in zip(settings, pieces):
        robust = torch.zeros(len(batches), dtype=torch.bool)
        for positions, survives in parts:
            robust[positions] = survives.cpu()
        outcome[(setting.eps, setting.steps)] = robust
    return outcome


def _autoattack_correct(model, batches: _Batches, natural: torch.Tensor, config, num_classes: int):
    positions = torch.arange(config["autoattack_examples"])
    # Natural accuracy on these same points: the fair reference for a small AutoAttack subset.
    same_points = float(natural[positions].float().mean())
    if config["eps"] == 0:  # nothing to perturb: robust exactly where natural
        return natural[positions].clone(), {
            "version": None,
            "list": [],
            "acc_natural": same_points,
            "outside_budget": False,
            "warnings": [],
        }
    x, y = batches.get(positions)
    attack = _make_autoattack(_ConnectedToInput(model), config, num_classes, batches.device)
    with _autoattack_logging(config["verbose"]) as warnings, _keep_trace_function():
        x_adv, y_adv = attack.run_standard_evaluation(x, y, batch_size=config["batch_size"])
    x_adv, y_adv = x_adv.to(x.device), y_adv.to(y.device)
    # Trust but verify: re-classify the returned points and check they respect the budget.
    correct = (y_adv == y) & (predict(model, x_adv) == y) & natural[positions].to(y.device)
    outside = bool(((x_adv - x).abs().amax() > config["eps"] + BUDGET_TOLERANCE) or x_adv.min() < 0 or x_adv.max() > 1)
    details = {
        "version": attack.version,
        "list": list(attack.attacks_to_run),
        "acc_natural": same_points,
        "warnings": warnings,
        "outside_budget": outside,
    }
    return correct.cpu(), details


class _ConnectedToInput(torch.nn.Module):
    """The pipeline with logits tied to the input by a zero term, for the reason in `_attack_loss`:
    AutoAttack would otherwise crash on a pipeline that detaches its input."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + 0.0 * x.flatten(1).sum(dim=1, keepdim=True)


def _make_autoattack(model, config, num_classes: int, device: torch.device):
    from pyautoattack import AutoAttack  # heavy import, only when AutoAttack is asked for

    seed = derive_seed(config["seed"], "autoattack")
    if num_classes >= STANDARD_AA_MIN_CLASSES:
        attack = AutoAttack(model, eps=config["eps"], norm="Linf", seed=seed, version="standard", device=device)
        # pyautoattack 0.2.0 (like upstream) fixes 9 target classes; with fewer than 10 classes
        # APGD-T/FAB-T then crash with an IndexError as soon as any point survives APGD-CE.
        targets = min(STANDARD_AA_TARGETS, num_classes - 1)
        attack.apgd_targeted.n_target_classes = targets
        attack.fab.n_target_classes = targets
    else:
        attack = AutoAttack(
            model,
            attacks=list(SMALL_TASK_AA_ATTACKS),
            eps=config["eps"],
            norm="Linf",
            seed=seed,
            version="custom",
            device=device,
        )
        # The standard version's budgets (1 restart each, Square 5000 queries) for the attacks that
        # work with 2 classes; 'custom' would otherwise keep the constructor's 5 restarts, 5x the cost.
        attack.apgd.n_restarts = 1
        attack.fab.n_restarts = 1
        attack.square.n_queries = 5000
    return attack


class _CaptureWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _autoattack_logging(verbose: bool) -> Iterator[list[str]]:
    """Keep AutoAttack's warnings (its own masking checks) for the result; its progress only if verbose."""
    logger = logging.getLogger("auto-attack")
    handler = _CaptureWarnings()
    saved = (logger.propagate, logger.level)
    logger.addHandler(handler)
    if verbose:
        logger.setLevel(logging.DEBUG)
    else:
        logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate, logger.level = saved[0], saved[1]


@contextlib.contextmanager
def _keep_trace_function() -> Iterator[None]:
    """pyautoattack's dynamic-defence check ends with sys.settrace(None), which would switch off
    coverage or a debugger; it also keeps its call counts in a module global across runs."""
    from pyautoattack import checks

    for name in checks.funcs:
        checks.funcs[name] = 0  # a previous model's count must not flag this one
    previous = sys.gettrace()
    try:
        yield
    finally:
        sys.settrace(previous)


# --- bootstrap -----------------------------------------------------------------------------------


def _bootstrap_means(values: np.ndarray, resamples: int, seed_parts: tuple) -> np.ndarray:
    """Means of `resamples` seeded resamples (with replacement, same size) of `values`."""
    rng = np.random.default_rng(derive_seed(*seed_parts))
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(len(values), 1))  # bounded memory for large test sets
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        means[start:stop] = values[rng.integers(0, len(values), size=(stop - start, len(values)))].mean(axis=1)
    return means


def _interval(values: np.ndarray, resamples: int, seed_parts: tuple) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(_bootstrap_means(values, resamples, seed_parts), [tail, 100 - tail])
    return float(low), float(high)


def _metric(name: str, correct: torch.Tensor | None, resamples: int, seed: int) -> dict[str, Any]:
    if correct is None:  # not run: NaN, so a missing attack never reads as 0% robust
        return {f"acc_{name}": math.nan, f"acc_{name}_lo": math.nan, f"acc_{name}_hi": math.nan, f"n_{name}": 0}
    values = correct.numpy().astype(np.float64)
    low, high = _interval(values, resamples, (seed, "bootstrap", name))
    return {
        f"acc_{name}": float(values.mean()),
        f"acc_{name}_lo": low,
        f"acc_{name}_hi": high,
        f"n_{name}": len(values),
    }


def _rises(
    higher_budget: torch.Tensor, lower_budget: torch.Tensor, resamples: int, seed_parts: tuple
) -> dict[str, Any]:
    """Paired bootstrap of accuracy(stronger attack) - accuracy(weaker) on the same points.

    `rises` when the whole 95% interval is above 0: more than resampling noise.
    """
    difference = higher_budget.numpy().astype(np.float64) - lower_budget.numpy().astype(np.float64)
    low, high = _interval(difference, resamples, seed_parts)
    return {"difference": float(difference.mean()), "lo": low, "hi": high, "rises": low > 0}


# --- integrity -----------------------------------------------------------------------------------


def _integrity(
    model,
    batches: _Batches,
    correct: dict[str, torch.Tensor],
    config,
    aa_details: dict[str, Any],
    predicted: torch.Tensor,
):
    """Flags (short names) and the measurements behind them."""
    flags: set[str] = set()
    details: dict[str, Any] = {"comparisons": _orderings(correct, config, flags)}
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
    details.update(_sweeps(model, batches, correct["natural"], config, flags))
    return flags, details


def _orderings(correct: dict[str, torch.Tensor], config, flags: set[str]) -> dict[str, Any]:
    """Orderings no honest evaluation can violate: robust <= natural, stronger attack <= PGD-10."""
    resamples, seed = config["bootstrap_resamples"], config["seed"]
    natural, comparisons = correct["natural"], {}
    for name in ATTACKS:
        if name in correct:
            same_points = natural[: len(correct[name])]  # AutoAttack ran on a prefix of the points
            if correct[name].float().mean() > same_points.float().mean():
                flags.add("robust_above_natural")
    if "pgd10" in correct:
        for name in ("pgd20", "autoattack"):
            if name in correct:
                reference = correct["pgd10"][: len(correct[name])]
                comparisons[f"{name}_vs_pgd10"] = _rises(correct[name], reference, resamples, (seed, "compare", name))
                if comparisons[f"{name}_vs_pgd10"]["rises"]:
                    flags.add(f"{name}_above_pgd10")
    return comparisons


def _determinism(model, batches: _Batches, positions: torch.Tensor, flags: set[str]) -> dict[str, float]:
    """A randomised pipeline (e.g. ViT-MAE's random masking left on) weakens single-pass attacks."""
    x, _ = batches.get(positions)
    with torch.no_grad():
        first, second = model(x), model(x)
    difference = float((first - second).abs().max())
    scale = float(first.abs().max())
    if not difference <= DETERMINISM_TOLERANCE * (1 + scale):  # `not <=` also catches NaN
        flags.add("nondeterministic_model")
    return {"max_logit_difference": difference}


def _gradient_check(model, batches: _Batches, positions: torch.Tensor, flags: set[str]) -> dict[str, float]:
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


def _sweeps(model, batches: _Batches, natural: torch.Tensor, config, flags: set[str]) -> dict[str, Any]:
    """PGD accuracy on the first points at growing eps and growing steps: neither may rise."""
    eps, resamples, seed = config["eps"], config["bootstrap_resamples"], config["seed"]
    if eps == 0:
        return {"sweep_note": "skipped: eps is 0"}
    subset = _SubsetBatches(batches, min(SWEEP_POINTS, len(batches)))
    settings = {(factor * eps, 10) for factor in SWEEP_EPS_FACTORS} | {(eps, steps) for steps in SWEEP_STEPS}
    outcome = _robust_correct_settings(
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
        f"{j}_vs_{i}": _rises(series[j], series[i], resamples, (*seed_parts, i, j))
        for j in range(len(series))
        for i in range(j)
    }


class _SubsetBatches(_Batches):
    """The first `n` evaluated points, with the same batching."""

    def __init__(self, batches: _Batches, n: int):
        super().__init__(batches.images, batches.labels, batches.order[:n], batches.batch_size, batches.device)
