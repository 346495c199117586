"""PGD that stops attacking a point once it is broken, for one attack setting or several at once.

The evaluation asks one question per point: does every PGD iterate (the start, each step, the
last) keep the point correctly classified? Any iterate lies in the eps-ball, so one that fools the
model is a valid adversarial example, and the point counts as broken whatever later iterates do.
So a point leaves the batch as soon as one iterate fools the model: attacking it further would
cost passes and change nothing. The others follow exactly the path they would in the whole batch
(the random start is drawn for the whole batch first, and in eval mode a point's logits do not
depend on its batch mates).

The loss PGD ascends is the attack's (schema/results.py): the summed cross-entropy or the summed
Carlini-Wagner margin (ATTACK_LOSSES); the early stopping, seeding and random start are the same
for both.

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


def ball(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel bounds of the L-inf eps-ball around x, intersected with the image range [0, 1]."""
    return (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)


def uniform_start(x: torch.Tensor, eps: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """PGD's random start: x plus uniform noise in [-eps, eps], projected into [low, high]; drawn
    from torch's global RNG, which callers seed."""
    return (x + torch.empty_like(x).uniform_(-eps, eps)).clamp_(low, high)


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
        low, high = ball(x, eps)
        start = uniform_start(x, eps, low, high) if random_start else x.clone()
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


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="sum")


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per point, the Carlini-Wagner margin max_{j != y} z_j - z_y: positive exactly where the point
    is misclassified (ties aside).

    Unlike the cross-entropy, its gradient does not shrink with the logits' scale: it is +1 on the
    runner-up logit and -1 on the true one however large the margin, so logits scaled up (a head
    trained long on nearly separable features) cannot underflow it to 0 and stall PGD. The
    cross-entropy's gradient, softmax - one-hot, is exactly 0 in fp32 once the margin passes about
    90-100 (exp(-margin) underflows). With 2 classes the two gradients point the same way (up to
    rounding) wherever the cross-entropy's is not 0.
    """
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return others.amax(dim=1) - true


def _margin_sum(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return margin(logits, y).sum()


# The losses a PGD attack may ascend, by the names of schema/results.py PGD_LOSSES.
ATTACK_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": _cross_entropy,
    "margin": _margin_sum,
}


def attack_loss(logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """The attack's loss (ATTACK_LOSSES: summed cross-entropy or summed margin), always connected to the input.

    Summed, not averaged: dividing by the batch size can underflow small gradients to 0, and
    sign(0) = 0 would silently stall the attack on those points; summed, each point's input gradient
    is its own (in eval mode a point's logits do not depend on its batch mates). The `0 * x` term
    turns a pipeline that detaches its input (no gradient at all) into an all-zero gradient instead
    of an autograd error, so the evaluation finishes and the integrity check flags it.
    """
    return ATTACK_LOSSES[loss](logits, y) + 0.0 * x.sum()


def pgd_survives(model, x, y, *, eps, steps, step_size, random_start, loss: str = "ce") -> torch.Tensor:
    """True where every PGD iterate (start, each step, final) on `loss` is still classified correctly."""
    check_attack_budget(eps, steps, step_size)
    _check_loss(loss)
    x = x.detach()
    if eps == 0:
        return predict(model, x) == y
    return _survives(model, y, _Attack.starting(x, PGDSetting(eps, steps, step_size), random_start), loss)


def _check_loss(loss: str) -> None:
    if loss not in ATTACK_LOSSES:
        raise ValueError(f"unknown attack loss {loss!r}: one of {list(ATTACK_LOSSES)}")


def _survives(model, y: torch.Tensor, attack: _Attack, loss: str = "ce") -> torch.Tensor:
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
        (grad,) = torch.autograd.grad(attack_loss(logits, y[active], current, loss), current)
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
