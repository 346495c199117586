"""L-inf attacks on any differentiable loss of the input: FGSM and PGD.

Attacks take a closure `loss_of(x) -> scalar` so the same code perturbs a contrastive loss
(pre-processor training), a latent distance (ARAE) or a classifier's cross-entropy (evaluation).
"""

from __future__ import annotations

from typing import Callable

import torch

from .schema.evaluation import check_attack_budget

LossOf = Callable[[torch.Tensor], torch.Tensor]


def _ball(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel bounds of the eps-ball intersected with [0, 1], computed once per attack."""
    return (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)


def _input_gradient(loss_of: LossOf, x_adv: torch.Tensor, samples: int = 1) -> torch.Tensor:
    """The gradient of `loss_of` at x_adv; with samples k > 1 the mean over k calls (Expectation
    over Transformation: each call of a random model draws afresh, one backward per call)."""
    total = None
    for _ in range(samples):
        current = x_adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_of(current), current)
        total = grad if total is None else total.add_(grad)
    return total if samples == 1 else total / samples


def pgd(
    loss_of: LossOf,
    x: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    random_start: bool,
    eot_samples: int = 1,
) -> torch.Tensor:
    """Projected gradient ascent on `loss_of` in the L-inf ball of radius eps, inside [0, 1].

    Randomness (the uniform start) comes from torch's global RNG, which callers seed.
    `eot_samples`: calls of `loss_of` each step's gradient is averaged over (EOT against a model
    random at test time; 1: one call, as without EOT). Only the ascent: a caller that scores the
    result classifies it by a pass of its own.
    """
    check_attack_budget(eps, steps, step_size)
    if not isinstance(eot_samples, int) or isinstance(eot_samples, bool) or eot_samples < 1:
        raise ValueError(f"eot_samples must be an integer >= 1, got {eot_samples!r}")
    x = x.detach()
    if eps == 0:
        return x.clone()
    low, high = _ball(x, eps)
    x_adv = x.clone()
    if random_start:
        x_adv = (x_adv + torch.empty_like(x).uniform_(-eps, eps)).clamp_(low, high)
    for _ in range(steps):
        grad = _input_gradient(loss_of, x_adv, eot_samples)
        # one in-place clamp with tensor bounds: the projection onto ball and image range
        x_adv = x_adv.detach().add_(grad.sign(), alpha=step_size).clamp_(low, high)
    return x_adv.detach()


def fgsm(loss_of: LossOf, x: torch.Tensor, *, eps: float, random_start: bool = False) -> torch.Tensor:
    """One signed-gradient step of size eps (from a uniform random start if asked), projected."""
    return pgd(loss_of, x, eps=eps, steps=1, step_size=eps if eps > 0 else 1.0, random_start=random_start)
