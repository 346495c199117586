"""The adversarial NT-Xent against a hand computation; FGSM/PGD stay in the eps-ball and [0,1]."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.attacks import fgsm, pgd
from trainables.errors import ConfigError
from trainables.losses import adversarial_nt_xent


def _cosine(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def _paper_loss_by_hand(clean, adv, tau):
    """CRoPD's l_con with plain Python floats: anchor x_i, positive x_i_adv,
    negatives X u X_adv minus {x_i, x_i_adv}."""
    total = 0.0
    for i, anchor in enumerate(clean):
        negatives = [clean[j] for j in range(len(clean)) if j != i] + [adv[j] for j in range(len(adv)) if j != i]
        numerator = math.exp(_cosine(adv[i], anchor) / tau)
        denominator = sum(math.exp(_cosine(anchor, neg) / tau) for neg in negatives)
        total += -math.log(numerator / denominator)
    return total / len(clean)


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_adversarial_nt_xent_matches_hand_computation(tau):
    generator = torch.Generator().manual_seed(3)
    clean = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    adv = clean + 0.3 * torch.randn(4, 5, generator=generator, dtype=torch.float64)
    ours = adversarial_nt_xent(clean, adv, tau).item()
    assert ours == pytest.approx(_paper_loss_by_hand(clean.tolist(), adv.tolist(), tau), rel=1e-10)


def test_adversarial_nt_xent_rewards_aligned_pairs():
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(6, 8, generator=generator)
    aligned = adversarial_nt_xent(clean, clean * 2.0, 0.5)  # cosine 1 with its own positive
    shuffled = adversarial_nt_xent(clean, clean.roll(1, dims=0), 0.5)
    assert aligned < shuffled


def test_adversarial_nt_xent_needs_negatives():
    with pytest.raises(ValueError, match="at least 2"):
        adversarial_nt_xent(torch.randn(1, 4), torch.randn(1, 4), 0.5)


def _linear_loss(weight):
    return lambda x: (x * weight).sum()


@pytest.mark.parametrize("random_start", [False, True])
def test_fgsm_stays_within_eps_and_image_range(random_start):
    torch.manual_seed(0)
    x = torch.rand(8, 3, 16, 16)
    x[0] = 0.0  # pixels on both edges of [0,1] must stay inside it
    x[1] = 1.0
    weight = torch.randn_like(x)
    eps = 8 / 255
    x_adv = fgsm(_linear_loss(weight), x, eps=eps, random_start=random_start)
    assert (x_adv - x).abs().max() <= eps + 1e-7
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # a linear loss is maximised by moving every free pixel by eps along sign(weight)
    free = (x > eps) & (x < 1 - eps)
    if not random_start:
        assert torch.allclose((x_adv - x)[free], (eps * weight.sign())[free], atol=1e-6)
    assert _linear_loss(weight)(x_adv) > _linear_loss(weight)(x)


def test_pgd_stays_within_eps_and_range_and_climbs():
    torch.manual_seed(1)
    x = torch.rand(4, 3, 8, 8)
    target = torch.rand(4, 3, 8, 8)
    loss_of = lambda z: ((z - target) ** 2).sum()  # noqa: E731 - a non-linear loss with a unique ascent direction
    eps = 0.05
    x_adv = pgd(loss_of, x, eps=eps, steps=20, step_size=eps / 10, random_start=True)
    assert (x_adv - x).abs().max() <= eps + 1e-7
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert loss_of(x_adv) > loss_of(x)


def test_attack_budget_is_checked():
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(ConfigError, match="eps"):
        fgsm(_linear_loss(torch.ones_like(x)), x, eps=-0.1)
    with pytest.raises(ConfigError, match="steps"):
        pgd(_linear_loss(torch.ones_like(x)), x, eps=0.1, steps=0, step_size=0.01, random_start=False)
    with pytest.raises(ConfigError, match="step_size"):
        pgd(_linear_loss(torch.ones_like(x)), x, eps=0.1, steps=1, step_size=0.0, random_start=False)
