"""L-inf attacks on any differentiable loss of the input: FGSM and PGD.

Attacks take a closure `loss_of(x) -> scalar` so the same code perturbs a contrastive loss
(pre-processor training), a latent distance (ARAE) or a classifier's cross-entropy (evaluation).
"""
from __future__ import annotations

from typing import Callable

import torch

from .errors import ConfigError

LossOf = Callable[[torch.Tensor], torch.Tensor]


def check_attack_budget(eps: float, steps: int = 1, step_size: float | None = None, *, field: str = "attack") -> None:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0:
        raise ConfigError(f"{field}.eps", "a number >= 0", eps)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"{field}.steps", "an integer >= 1", steps)
    if step_size is not None and (not isinstance(step_size, (int, float)) or isinstance(step_size, bool) or step_size <= 0):
        raise ConfigError(f"{field}.step_size", "a number > 0", step_size)


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Back into the eps-ball around x and into the image range [0, 1]."""
    return torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0.0, 1.0)


def _input_gradient(loss_of: LossOf, x_adv: torch.Tensor) -> torch.Tensor:
    x_adv = x_adv.detach().requires_grad_(True)
    loss = loss_of(x_adv)
    (grad,) = torch.autograd.grad(loss, x_adv)
    return grad


def pgd(loss_of: LossOf, x: torch.Tensor, *, eps: float, steps: int, step_size: float, random_start: bool) -> torch.Tensor:
    """Projected gradient ascent on `loss_of` in the L-inf ball of radius eps, inside [0, 1].

    Randomness (the uniform start) comes from torch's global RNG, which callers seed.
    """
    check_attack_budget(eps, steps, step_size)
    x = x.detach()
    if eps == 0:
        return x.clone()
    x_adv = x.clone()
    if random_start:
        x_adv = _project(x_adv + torch.empty_like(x).uniform_(-eps, eps), x, eps)
    for _ in range(steps):
        grad = _input_gradient(loss_of, x_adv)
        x_adv = _project(x_adv.detach() + step_size * grad.sign(), x, eps)
    return x_adv.detach()


def fgsm(loss_of: LossOf, x: torch.Tensor, *, eps: float, random_start: bool = False) -> torch.Tensor:
    """One signed-gradient step of size eps (from a uniform random start if asked), projected."""
    return pgd(loss_of, x, eps=eps, steps=1, step_size=eps if eps > 0 else 1.0, random_start=random_start)
