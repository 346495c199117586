"""Attacks that large logits cannot stall, the per-point worst case, and integrity flags that fire (issue 32).

The saturated-logits case is the issue's "done means": one small 2-class network and the same
network with its logits multiplied by 1024. Decisions are identical, but in fp32 the cross-entropy's
input gradient is exactly 0 past a logit margin of about 90-100, so PGD on the cross-entropy stalls
on the large scale and overstates robustness; PGD on the margin, the worst case over every attack,
and the gradient accounting must see through it. Everything seeded, on the CPU, a few seconds.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainables.evaluation import evaluate, worst_case
from trainables.evaluation.integrity import GAP_TOLERANCE, UNBOUNDED_EPS, UNBOUNDED_MAX_ACCURACY, orderings
from trainables.schema.evaluation import resolve_evaluation_config
from trainables.survival import ATTACK_LOSSES, margin, pgd_survives

EPS = 0.03
# 2**10, not the 1000: a power of two scales fp32 logits and every gradient exactly, so the
# margin's gradient has exactly the small scale's signs and margin PGD takes the very same steps
# (with 1000 this network gives the same outcomes too, but only up to rounding of near-zero gradient
# components, which another BLAS could round the other way).
LARGE = 1024.0
AUTOATTACK_POINTS = 40


def _two_class_images(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two noisy 1x8x8 prototypes in [0, 1]: about 96% separable by a small network."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    prototypes = 0.4 + 0.2 * torch.rand(2, 1, 8, 8, generator=generator)
    images = (prototypes[labels] + 0.25 * torch.randn(n, 1, 8, 8, generator=generator)).clamp(0, 1)
    return images, labels


class _Scaled(torch.nn.Module):
    """The same classifier with its logits multiplied by `scale`: the same decisions everywhere."""

    def __init__(self, net: torch.nn.Module, scale: float):
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.scale


@pytest.fixture(scope="module")
def two_class():
    images, labels = _two_class_images()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        optimiser.zero_grad()
        F.cross_entropy(net(images), labels).backward()
        optimiser.step()
    return net.eval(), images, labels


@pytest.fixture(scope="module")
def two_scales(two_class):
    """The default evaluation (every attack, integrity checks) at both scales, AutoAttack on a prefix."""
    net, images, labels = two_class
    config = {"eps": EPS, "autoattack_examples": AUTOATTACK_POINTS}
    return {
        scale: evaluate(_Scaled(net, scale), images, labels, config, num_classes=2, default_eps=EPS)
        for scale in (1.0, LARGE)
    }


def test_cross_entropy_pgd_stalls_on_large_logits_while_margin_pgd_and_the_worst_case_do_not(two_scales):
    small, large = two_scales[1.0], two_scales[LARGE]
    outcomes = {scale: result["examples"]["correct"] for scale, result in two_scales.items()}
    assert outcomes[1.0]["natural"] == outcomes[LARGE]["natural"]  # identical decisions
    assert 0.9 < small["acc_natural"] < 1 and 0.3 < small["acc_pgd10"] < 0.8  # PGD breaks some points, not all
    # Cross-entropy PGD overstates robustness on the large scale: its gradient underflowed to 0.
    assert large["acc_pgd10"] >= small["acc_pgd10"] + 0.25
    assert large["acc_pgd20"] >= small["acc_pgd20"] + 0.25
    # The margin's gradient is the small scale's times 1024: the same steps, the same points broken.
    for name in ("pgd10_margin", "pgd20_margin", "worst"):
        assert outcomes[LARGE][name] == outcomes[1.0][name], name
    assert large["acc_worst"] == small["acc_worst"] <= small["acc_pgd10_margin"]
    assert large["acc_worst"] <= large["acc_pgd10"] - 0.25  # the honest headline the CE columns miss


def test_the_gradient_accounting_and_the_gap_flags_fire_on_the_large_scale_only(two_scales):
    small, large = two_scales[1.0], two_scales[LARGE]
    assert small["integrity_flags"] == []
    fired = set(large["integrity_flags"])
    # zero CE gradients at the points and at the random start; PGD far above both margin PGD and
    # AutoAttack; the unbounded sweep point left points standing (CE PGD there stalls as well)
    assert {"zero_input_gradient", "ce_above_margin", "pgd_above_autoattack", "unbounded_attack_fails"} <= fired
    assert "nonfinite_input_gradient" not in fired
    gradients = {scale: result["integrity_details"]["input_gradient"] for scale, result in two_scales.items()}
    for place in ("clean", "random_start"):
        assert gradients[1.0][place]["zero_fraction"] == 0.0
        assert gradients[LARGE][place]["zero_fraction"] > 0.9
        assert gradients[LARGE][place]["margin_zero_fraction"] == 0.0  # saturation, not a masked pipeline
    comparisons = large["integrity_details"]["comparisons"]
    assert comparisons["pgd10_vs_autoattack"]["lo"] > GAP_TOLERANCE
    assert comparisons["pgd10_margin_vs_autoattack"]["lo"] <= GAP_TOLERANCE  # margin PGD is not above it
    assert small["sweep_eps"][-1] == (UNBOUNDED_EPS, 0.0)
    assert large["sweep_eps"][-1][0] == UNBOUNDED_EPS and large["sweep_eps"][-1][1] > UNBOUNDED_MAX_ACCURACY


def test_the_worst_case_is_the_and_of_every_outcome_including_autoattacks_prefix(two_scales):
    for result in two_scales.values():
        correct = result["examples"]["correct"]
        attacks = ["pgd10", "pgd20", "pgd10_margin", "pgd20_margin", "autoattack"]
        assert set(correct) == {"natural", *attacks, "worst"}
        assert len(correct["autoattack"]) == AUTOATTACK_POINTS < len(correct["natural"]) == len(correct["worst"])
        for i, worst in enumerate(correct["worst"]):
            assert worst == all(correct[name][i] for name in ("natural", *attacks) if i < len(correct[name]))
        assert result["n_worst"] == result["n_natural"]
        assert result["acc_worst_lo"] <= result["acc_worst"] <= result["acc_worst_hi"]
        assert "time_worst_s" not in result  # computed from the outcomes, not attacked


def test_worst_case_of_constructed_outcomes():
    as_bool = lambda values: torch.tensor(values, dtype=torch.bool)  # noqa: E731
    correct = {
        "natural": as_bool([1, 1, 1, 1, 0, 1]),
        "pgd10": as_bool([1, 0, 1, 1, 0, 1]),
        "pgd10_margin": as_bool([1, 1, 1, 0, 0, 1]),
        "autoattack": as_bool([0, 1]),  # its prefix of the points
    }
    assert worst_case(correct).tolist() == [False, False, True, False, False, True]
    assert worst_case({"natural": as_bool([1, 0])}) is None  # no attack ran: no worst case, not natural renamed


def test_no_attack_leaves_the_worst_case_unmeasured(two_class):
    net, images, labels = two_class
    result = evaluate(net, images, labels, {"eps": EPS, "attacks": []}, num_classes=2, default_eps=EPS)
    assert result["n_worst"] == 0 and result["acc_worst"] != result["acc_worst"]  # NaN, never natural renamed
    assert "worst" not in result["examples"]["correct"]


def test_margin_is_the_runner_up_minus_the_true_logit_with_unit_gradients():
    logits = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 5.0, 3.0]], requires_grad=True)
    y = torch.tensor([0, 2, 1])
    values = margin(logits, y)
    assert values.tolist() == [-1.0, 2.0, -2.0]  # positive exactly where misclassified
    (grad,) = torch.autograd.grad(ATTACK_LOSSES["margin"](logits, y), logits)
    assert grad.tolist() == [[-1.0, 1.0, 0.0], [1.0, 0.0, -1.0], [0.0, -1.0, 1.0]]
    (scaled,) = torch.autograd.grad(ATTACK_LOSSES["margin"](1e4 * logits, y), logits)
    assert torch.equal(scaled, 1e4 * grad)  # no saturation at any scale
    (ce,) = torch.autograd.grad(ATTACK_LOSSES["ce"](1e4 * logits, y), logits)
    assert ce[2].abs().sum() == 0  # the CE's gradient at a margin of 2e4: exactly 0 in fp32


class _Recording(torch.nn.Module):
    """Keeps every input the attack queries, to check it never leaves the eps-ball or [0, 1]."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.model(x)


def test_margin_pgd_breaks_points_cross_entropy_pgd_cannot_and_stays_in_the_ball(two_class):
    net, images, labels = two_class
    x, y = images[:64], labels[:64]
    large = _Scaled(net, LARGE)
    outcome = {}
    for loss in ("ce", "margin"):
        recording = _Recording(large)
        torch.manual_seed(3)
        outcome[loss] = pgd_survives(
            recording, x, y, eps=EPS, steps=10, step_size=EPS / 5, random_start=True, loss=loss
        )
        # Early stopping shrinks the batch: match each queried row to its point by position among the rest.
        for queried in recording.seen:
            distance = (queried[:, None] - x[None]).flatten(2).abs().amax(dim=2).min(dim=1).values
            assert float(distance.max()) <= EPS + 1e-6
            assert queried.min() >= 0 and queried.max() <= 1
    broken_by_margin_only = outcome["ce"] & ~outcome["margin"]
    assert int(broken_by_margin_only.sum()) >= 10
    assert not (outcome["margin"] & ~outcome["ce"]).any()  # on this model the margin breaks a superset


def test_an_unknown_attack_loss_is_refused(two_class):
    net, images, labels = two_class
    with pytest.raises(ValueError, match="unknown attack loss 'dlr'"):
        pgd_survives(net, images[:4], labels[:4], eps=EPS, steps=1, step_size=EPS, random_start=False, loss="dlr")


def _orderings(**outcomes) -> tuple[set[str], dict]:
    config = resolve_evaluation_config({"bootstrap_resamples": 1000}, num_test=100, default_eps=EPS)
    flags: set[str] = set()
    correct = {name: torch.tensor(values, dtype=torch.bool) for name, values in outcomes.items()}
    return flags, orderings(correct, config, flags)


def test_pgd_above_autoattack_fires_on_a_large_gap_not_on_the_few_points_autoattack_usually_adds():
    natural = [True] * 500
    pgd = [True] * 240 + [False] * 260
    # AutoAttack ran on the first 400 points; on them PGD leaves 240, AutoAttack 140: a 25-point gap
    flags, comparisons = _orderings(natural=natural, pgd10=pgd, autoattack=[True] * 140 + [False] * 260)
    assert "pgd_above_autoattack" in flags
    assert comparisons["pgd10_vs_autoattack"]["difference"] == pytest.approx(0.25)
    # 12 of the 400 points (3 points) more broken by AutoAttack: beyond noise (every discordant pair
    # goes one way), yet what a stronger attack adds on a sound model; recorded, not flagged
    flags, comparisons = _orderings(natural=natural, pgd10=pgd, autoattack=[True] * 228 + [False] * 172)
    assert comparisons["pgd10_vs_autoattack"]["rises"] and "pgd_above_autoattack" not in flags
    # AutoAttack above PGD-10: AutoAttack failed
    flags, _ = _orderings(natural=natural, pgd10=[True] * 100 + [False] * 400, autoattack=[True] * 200 + [False] * 200)
    assert flags == {"autoattack_above_pgd10"}


def test_step_orderings_compare_attacks_on_the_same_loss_only():
    natural = [True] * 100
    few, many = [True] * 30 + [False] * 70, [True] * 60 + [False] * 40
    flags, comparisons = _orderings(natural=natural, pgd10_margin=few, pgd20_margin=many)
    assert flags == {"pgd20_margin_above_pgd10_margin"}
    # a margin attack above the cross-entropy's is no broken ordering (on more classes either can win)...
    flags, comparisons = _orderings(natural=natural, pgd10=few, pgd10_margin=many)
    assert flags == set() and comparisons["pgd10_vs_pgd10_margin"]["difference"] == pytest.approx(-0.3)
    # ...but cross-entropy far above the margin is the stalled-gradient signature
    flags, _ = _orderings(natural=natural, pgd10=many, pgd10_margin=few)
    assert flags == {"ce_above_margin"}


class _Quantise(torch.nn.Module):
    """Rounding to 8-bit levels: invisible to accuracy, zero gradient everywhere (gradient masking)."""

    def forward(self, x):
        return torch.round(x * 255) / 255


def test_the_unbounded_sweep_point_flags_a_pipeline_gradients_cannot_break(two_class):
    net, images, labels = two_class
    config = {"eps": EPS, "attacks": ["pgd10"], "n_examples": 128}
    masked = evaluate(torch.nn.Sequential(_Quantise(), net), images, labels, config, num_classes=2, default_eps=EPS)
    healthy = evaluate(net, images, labels, config, num_classes=2, default_eps=EPS)
    assert "unbounded_attack_fails" in masked["integrity_flags"]
    assert masked["sweep_eps"][-1][0] == UNBOUNDED_EPS and masked["sweep_eps"][-1][1] > 0.2
    assert "unbounded_attack_fails" not in healthy["integrity_flags"] and healthy["sweep_eps"][-1][1] == 0.0
    details = masked["integrity_details"]["sweep_unbounded"]
    assert details["accuracy"] == masked["sweep_eps"][-1][1] and details["eps"] == UNBOUNDED_EPS


class _PartlySaturated(torch.nn.Module):
    """The network with its logits times 2**16 on the points whose first pixel is bright (a flag the
    images carry), as is: the CE gradient is exactly 0 on those points only."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        logits = self.net(x)
        bright = x.flatten(1)[:, :1] > 0.5
        return torch.where(bright, logits * 2.0**16, logits)


@pytest.mark.parametrize("saturated_points, flagged", [(3, False), (16, True)], ids=["3-of-64", "16-of-64"])
def test_zero_input_gradient_fires_above_its_share_of_points(two_class, saturated_points, flagged):
    net, images, labels = two_class
    images, labels = images[:64].clone(), labels[:64]
    # The saturated points are those farthest on their right side of the boundary: a random start
    # within eps must not carry one across it (a misclassified point's CE gradient is not 0).
    bright = images.clone()
    bright[:, 0, 0, 0] = 1.0
    with torch.no_grad():
        logits = net(bright)
    margin = logits.gather(1, labels[:, None]).squeeze(1) - logits.gather(1, 1 - labels[:, None]).squeeze(1)
    safest = torch.argsort(margin, descending=True)[:saturated_points]
    images[:, 0, 0, 0] = 0.0
    images[safest, 0, 0, 0] = 1.0  # eps 0.03 keeps the pixel on its side of 0.5
    config = {"eps": EPS, "attacks": ["pgd10"], "batch_size": 64}
    result = evaluate(_PartlySaturated(net), images, labels, config, num_classes=2, default_eps=EPS)
    gradients = result["integrity_details"]["input_gradient"]
    natural = torch.tensor(result["examples"]["correct"]["natural"])  # in evaluation order, a permutation
    saturated = torch.isin(torch.tensor(result["examples"]["index"]), safest)
    expected = float((natural & saturated).sum()) / float(natural.sum())  # among the attacked points
    for place in ("clean", "random_start"):
        assert gradients[place]["zero_fraction"] == pytest.approx(expected)
    assert ("zero_input_gradient" in result["integrity_flags"]) == flagged
