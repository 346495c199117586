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

A model random at test time (a foundation with foundation.mask_ratio > 0: `random_modules`) and
Expectation over Transformation (evaluation.eot_samples = k > 1) change how a point is attacked and
scored, and only then (`_survives_eot`): each step's gradient is the mean over k forward/backward
passes, each with its own random draws (`eot_gradient`); every point takes all its steps; and its
last iterate is scored by one FRESH pass (`predict`, no gradient), never by the passes the
gradients came from, which are the draws the attack has just adapted to. That is EOT-PGD as
Athalye et al. run it, and a single-draw PGD (k = 1) as a pipeline that ignored the randomness ran it.

Not "any iterate on a fresh draw": a random model misclassifies a point now and then on its own,
and scoring every iterate by a fresh draw counts those draws as attack successes. On the shipped
digits pipeline at mask ratio 0.75 (a single draw right on 73% of 64 test points) with PGD-10 at
eps 0.0002, where the unmasked pipeline keeps its natural 94%, that rule left 14-20% robust for
k = 1, 4, 8; this one 61-80%. Nor an early stop where the attack's own passes say a point is
fooled: at k = 1 that stops on a lucky draw, weaker than the plain PGD it stands for. At eps 1/255
this rule gives 33% (k = 1), 6% (k = 4) and 2% (k = 8), and the unmasked pipeline 2%.

Cost: k passes per step and point, plus one check per point. A point's draws depend on its batch
mates (a mask is drawn per row of the batch), so the bit-for-bit equalities above (shared batches,
early stopping) hold for deterministic models only; the outcome is still reproducible, as callers
reseed the random modules per batch (`reseed_random_modules`). With a deterministic model and
k = 1 nothing changes: one pass per iterate, any iterate counts, as above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from .schema.evaluation import check_attack_budget
from .seeding import derive_seed


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
    """The predicted classes, by a pass of its own: for a random model, a fresh draw."""
    with torch.no_grad():
        return model(x).argmax(dim=1)


def random_modules(model) -> list[torch.nn.Module]:
    """The submodules of `model` that draw new randomness on every pass at test time (a ViT-MAE
    foundation with foundation.mask_ratio > 0). A module says so by a true `random_at_test_time`
    and can be reseeded by `reseed(seed)`; other randomness (dropout left on) is not declared, and
    the evaluation's determinism check is what finds it."""
    modules = getattr(model, "modules", None)
    if modules is None:
        return []
    return [module for module in modules() if getattr(module, "random_at_test_time", False)]


def is_random(model) -> bool:
    """Whether `model` has a declared random module (see `random_modules`)."""
    return bool(random_modules(model))


def reseed_random_modules(model, *seed_parts: object) -> None:
    """Reseed every random module of `model` from `seed_parts` (each module its own stream), so the
    draws that follow depend on the seed alone, not on what ran before. Nothing for a deterministic model."""
    for index, module in enumerate(random_modules(model)):
        module.reseed(derive_seed(*seed_parts, "random-module", index))


def eot_gradient(model, x: torch.Tensor, y: torch.Tensor, loss: str = "ce", samples: int = 1) -> torch.Tensor:
    """Expectation over Transformation: the input gradient of the summed attack loss, averaged over
    `samples` forward/backward passes, each with the model's own fresh random draws.

    One backward per pass rather than one graph over a batch repeated k times: memory stays one
    pass's. With samples 1 this is the one pass's gradient, unchanged.
    """
    total = None
    for _ in range(samples):
        current = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(attack_loss(model(current), y, current, loss), current)
        total = grad if total is None else total.add_(grad)
    return total if samples == 1 else total / samples


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


def pgd_survives(
    model, x, y, *, eps, steps, step_size, random_start, loss: str = "ce", eot_samples: int = 1
) -> torch.Tensor:
    """True where every PGD iterate (start, each step, final) on `loss` is still classified correctly.

    `eot_samples`: passes each step's gradient is averaged over (EOT). With more than 1, or a model
    with random modules, the last iterate is scored by a fresh pass (see the module docstring); the
    caller seeds those modules (`reseed_random_modules`) as it seeds the random start.
    """
    check_attack_budget(eps, steps, step_size)
    _check_loss(loss)
    _check_eot(eot_samples)
    x = x.detach()
    if eps == 0:
        return predict(model, x) == y
    attack = _Attack.starting(x, PGDSetting(eps, steps, step_size), random_start)
    return _survives(model, y, attack, loss, eot_samples, fresh_check=needs_fresh_check(model, eot_samples))


def needs_fresh_check(model, eot_samples: int) -> bool:
    """Whether a point's score needs a pass of its own: the model is random, or EOT says it may be."""
    return eot_samples > 1 or is_random(model)


def _check_eot(eot_samples: int) -> None:
    if not isinstance(eot_samples, int) or isinstance(eot_samples, bool) or eot_samples < 1:
        raise ValueError(f"eot_samples must be an integer >= 1, got {eot_samples!r}")


def _check_loss(loss: str) -> None:
    if loss not in ATTACK_LOSSES:
        raise ValueError(f"unknown attack loss {loss!r}: one of {list(ATTACK_LOSSES)}")


def _survives(
    model, y: torch.Tensor, attack: _Attack, loss: str = "ce", eot_samples: int = 1, *, fresh_check: bool = False
) -> torch.Tensor:
    if fresh_check:
        return _survives_eot(model, y, attack, loss, eot_samples)
    # Deterministic model, one pass per iterate: its logits both check the point and give the gradient.
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


def _survives_eot(model, y: torch.Tensor, attack: _Attack, loss: str, eot_samples: int) -> torch.Tensor:
    """_survives for a random model or EOT (module docstring): every point takes all its steps on
    the mean gradient of `eot_samples` passes, and its last iterate is scored by one fresh pass."""
    x_adv = attack.start.clone()
    survives = torch.ones(len(y), dtype=torch.bool, device=y.device)
    active = torch.arange(len(y), device=y.device)  # points with steps left
    for t in range(int(attack.steps.max()) + 1):
        last = attack.steps[active] == t
        scored = active[last]
        if len(scored):  # the check: a pass of its own, so a draw no gradient was computed with
            survives[scored] = predict(model, x_adv[scored]) == y[scored]
        active = active[~last]
        if not len(active):
            break
        grad = eot_gradient(model, x_adv[active], y[active], loss, eot_samples)
        moved = x_adv[active] + attack.step_size[active] * grad.sign()
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
    eot_samples: int = 1,
    draw_seed: int = 0,
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Every setting on every chunk (batch number, positions, x, y), run as shared batches of
    `batch_size` points: per setting, a list of (positions, survives) pairs.

    Each (setting, chunk) draws its random start after torch.manual_seed(seed_of(setting, batch
    number)), as one pgd_survives call per setting and chunk would: the outcome is the same (for a
    deterministic model; a random one's modules are reseeded from `draw_seed` per shared batch).
    """
    _check_eot(eot_samples)
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
    fresh_check = needs_fresh_check(model, eot_samples)

    def shared_batch(start: int) -> torch.Tensor:
        reseed_random_modules(model, draw_seed, start)
        window = slice(start, start + batch_size)
        return _survives(model, y[window], attack.take(window), "ce", eot_samples, fresh_check=fresh_check)

    survives = torch.cat([shared_batch(start) for start in range(0, len(y), batch_size)])
    offset = 0
    for index, positions in pieces:
        outcome[index].append((positions, survives[offset : offset + len(positions)]))
        offset += len(positions)
    return outcome
