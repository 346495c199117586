"""The AutoAttack adapter: pyautoattack run on the evaluated points, its results verified, its side effects contained.

pyautoattack is imported only when AutoAttack is asked for (a heavy import). What this adapter
adds around it: the standard or a small-task ensemble by the number of classes, the input tied to
the logits, its warnings captured for the result (never printed), its `sys.settrace(None)` undone,
and every returned point re-classified and checked against the budget.

A model random at test time (foundation.mask_ratio > 0) keeps the standard ensemble (never version
'rand' behind the user's back): its random modules are reseeded from the evaluation seed, APGD-CE
and APGD-T average `evaluation.eot_samples` gradients (pyautoattack's `eot_iter`; FAB has no EOT,
Square needs none), and pyautoattack's own randomised-defence check warns, which integrity.py
records. A point counts as robust by AutoAttack's own checks, each a pass of its own after an
attack (for a deterministic model we re-classify the returned points too).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from typing import Any, Iterator

import torch

from ..schema.evaluation import eot_samples
from ..seeding import derive_seed
from ..survival import needs_fresh_check, predict, reseed_random_modules
from .batches import Batches

# Standard AutoAttack's targeted attacks need >= 4 classes (the targeted DLR loss reads the
# 4th-largest logit); below that the paper ran APGD-CE, FAB and Square only.
STANDARD_AA_MIN_CLASSES = 4
SMALL_TASK_AA_ATTACKS = ["apgd-ce", "fab", "square"]
STANDARD_AA_TARGETS = 9
BUDGET_TOLERANCE = 1e-5


def not_run_details() -> dict[str, Any]:
    """AutoAttack's details when it did not run: the same keys, so result tables keep their columns."""
    return {"version": None, "list": [], "acc_natural": math.nan, "outside_budget": False}


def autoattack_correct(model, batches: Batches, natural: torch.Tensor, config, num_classes: int):
    """Per point of the first autoattack_examples: correct before and after AutoAttack; and its details."""
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
    reseed_random_modules(model, config["seed"], "autoattack")
    with autoattack_logging(config["verbose"]) as warnings, _keep_trace_function():
        x_adv, y_adv = attack.run_standard_evaluation(x, y, batch_size=config["batch_size"])
    x_adv, y_adv = x_adv.to(x.device), y_adv.to(y.device)
    # Trust but verify: re-classify the returned points and check they respect the budget. Not for
    # a random model (or EOT): AutoAttack scored each of its attacks' outputs by a pass of its own,
    # and one more draw (at the clean image, for a point it left robust) would count the model's own
    # random errors as attack successes (trainables/survival.py says why).
    correct = (y_adv == y) & natural[positions].to(y.device)
    if not needs_fresh_check(model, eot_samples(config)):
        correct &= predict(model, x_adv) == y
    outside = bool(((x_adv - x).abs().amax() > config["eps"] + BUDGET_TOLERANCE) or x_adv.min() < 0 or x_adv.max() > 1)
    details = {
        "version": attack.version,
        "list": list(attack.attacks_to_run),
        "acc_natural": same_points,
        "warnings": warnings,
        "outside_budget": outside,
        "eot_iter": attack.apgd.eot_iter,
    }
    return correct.cpu(), details


class _ConnectedToInput(torch.nn.Module):
    """The pipeline with logits tied to the input by a zero term, for the reason in survival.attack_loss:
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
    _set_eot(attack, eot_samples(config))
    return attack


def _set_eot(attack, samples: int) -> None:
    """EOT in AutoAttack's gradient attacks that support it: APGD-CE and APGD-T average `samples`
    gradients per iteration (pyautoattack's eot_iter, which version 'rand' sets to 20). 1: as
    pyautoattack's standard version."""
    attack.apgd.eot_iter = samples
    attack.apgd_targeted.eot_iter = samples


class _CaptureWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def autoattack_logging(verbose: bool) -> Iterator[list[str]]:
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
