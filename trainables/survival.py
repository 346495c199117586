"""PGD that stops attacking a point once it is broken, for one attack setting or several at once.

The evaluation asks one question per point: does every PGD iterate (the start, each step, the
last) keep the point correctly classified? Any iterate lies in the eps-ball, so one that fools the
model is a valid adversarial example, and the point counts as broken whatever later iterates do.
So a point leaves the batch as soon as one iterate fools the model: attacking it further would
cost passes and change nothing. The others follow exactly the path they would in the whole batch
(the random start is drawn for the whole batch first, and in eval mode a point's logits do not
depend on its batch mates).

The same property lets several settings (eps, steps, step size) share a batch: each point carries
its own budget, step size and step count, and leaves the batch when it is broken or has taken its
steps. The attack-strength sweep runs its eps levels and step counts this way (survives_settings),
with the same random starts as one run per setting, so the outcome is the same either way: bit for
bit on a CPU (tests/trainables/test_evaluation.py). On a GPU, the kernels chosen for a batch size can move a
logit in its last bits, so a point on the decision boundary can come out the other way: 1 of 64
points at one eps level through ViT-MAE-large on an H200 (bench/results/gpu-h200-2026-11-26-
strength-sweep.json). The early stopping above changes batch sizes too and shares that caveat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from .schema.evaluation import check_attack_budget


@dataclass(frozen=True)
class PGDSetting:
    eps: float
    steps: int
    step_size: float


@dataclass
class _Attack:
    """Per point: the start, the eps-ball's bounds (within [0, 1]), the step size and step count."""

    start: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    step_size: torch.Tensor  # (N, 1, 1, 1)
    steps: torch.Tensor  # (N,)

    @classmethod
    def starting(cls, x: torch.Tensor, setting: PGDSetting, random_start: bool) -> "_Attack":
        """The attack of `setting` on x; the random start (if any) drawn here, from the global RNG."""
        eps = setting.eps
        low, high = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)
        start = x.clone()
        if random_start:
            start = (start + torch.empty_like(x).uniform_(-eps, eps)).clamp_(low, high)
        n = len(x)
        step_size = torch.full((n, 1, 1, 1), setting.step_size, dtype=x.dtype, device=x.device)
        steps = torch.full((n,), setting.steps, dtype=torch.long, device=x.device)
        return cls(start, low, high, step_size, steps)

    @classmethod
    def cat(cls, attacks: list["_Attack"]) -> "_Attack":
        return cls(*(torch.cat([getattr(a, name) for a in attacks]) for name in cls.__dataclass_fields__))

    def take(self, index: slice) -> "_Attack":
        return _Attack(*(getattr(self, name)[index] for name in self.__dataclass_fields__))


def predict(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def attack_loss(logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy, always connected to the input.

    Summed, not averaged: dividing by the batch size can underflow small gradients to 0, and
    sign(0) = 0 would silently stall the attack on those points. The `0 * x` term turns a pipeline
    that detaches its input (no gradient at all) into an all-zero gradient instead of an autograd
    error, so the evaluation finishes and the integrity check flags it.
    """
    return F.cross_entropy(logits, y, reduction="sum") + 0.0 * x.sum()


def pgd_survives(model, x, y, *, eps, steps, step_size, random_start) -> torch.Tensor:
    """True where every PGD iterate (start, each step, final) is still classified correctly."""
    check_attack_budget(eps, steps, step_size)
    x = x.detach()
    if eps == 0:
        return predict(model, x) == y
    return _survives(model, y, _Attack.starting(x, PGDSetting(eps, steps, step_size), random_start))


def _survives(model, y: torch.Tensor, attack: _Attack) -> torch.Tensor:
    x_adv = attack.start.clone()
    survives = torch.ones(len(y), dtype=torch.bool, device=y.device)
    active = torch.arange(len(y), device=y.device)  # points neither fooled nor done
    for t in range(int(attack.steps.max()) + 1):
        done = attack.steps[active] == t  # at their last iterate: checked, not stepped
        if done.all():
            survives[active] &= predict(model, x_adv[active]) == y[active]
            break
        current = x_adv[active].requires_grad_(True)
        logits = model(current)
        holds = logits.detach().argmax(dim=1) == y[active]
        survives[active[~holds]] = False
        stepping = holds & ~done
        if not stepping.any():
            break
        # Summed loss: a point's gradient is its own, so the other points' rows are simply unused.
        (grad,) = torch.autograd.grad(attack_loss(logits, y[active], current), current)
        active = active[stepping]
        moved = current.detach()[stepping] + attack.step_size[active] * grad[stepping].sign()
        x_adv[active] = moved.clamp_(attack.low[active], attack.high[active])
    return survives


def survives_settings(
    model,
    chunks: Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]],
    settings: list[PGDSetting],
    *,
    random_start: bool,
    seed_of: Callable[[PGDSetting, int], int],
    batch_size: int,
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Every setting on every chunk (batch number, positions, x, y), run as shared batches of
    `batch_size` points: per setting, a list of (positions, survives) pairs.

    Each (setting, chunk) draws its random start after torch.manual_seed(seed_of(setting, batch
    number)), as one pgd_survives call per setting and chunk would: the outcome is the same.
    """
    pieces, attacks, labels = [], [], []
    for number, positions, x, y in chunks:
        x = x.detach()
        for index, setting in enumerate(settings):
            check_attack_budget(setting.eps, setting.steps, setting.step_size)
            torch.manual_seed(seed_of(setting, number))
            attacks.append(_Attack.starting(x, setting, random_start))
            labels.append(y)
            pieces.append((index, positions))
    outcome: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in settings]
    if not pieces:
        return outcome
    attack, y = _Attack.cat(attacks), torch.cat(labels)
    survives = torch.cat(
        [
            _survives(model, y[start : start + batch_size], attack.take(slice(start, start + batch_size)))
            for start in range(0, len(y), batch_size)
        ]
    )
    offset = 0
    for index, positions in pieces:
        outcome[index].append((positions, survives[offset : offset + len(positions)]))
        offset += len(positions)
    return outcome
