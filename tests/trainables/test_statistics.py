"""trainables/statistics.py against published worked examples, and against independent computations.

Published numbers (each printed to 4 or 6 decimals; the tests match them to that precision):

* Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (Chapman & Hall/CRC
  2017), as printed by the authors' R package contingencytables (github.com/ocbe-uio/contingencytables,
  tests/testthat/test-ch2.R and test-ch8.R):
  - Chapter 2, Ligarden et al. (2010), 13 of 16: "The Wilson score CI: estimate = 0.8125
    (95% CI 0.5699 to 0.9341)".
  - Chapter 8, Cavo et al. (2012), complete response before and after consolidation therapy,
    the paired table [[59, 6], [16, 80]] (n12 = 6, n21 = 16, N = 161): "The McNemar exact
    conditional test: P = 0.052479", "The McNemar mid-P test: P = 0.034690", "Tango asymptotic
    score CI: estimate = -0.0621 (95% CI -0.1240 to -0.0054)". The same exact conditional and
    mid-p example is Fagerland, Lydersen & Laake 2013 (BMC Med Res Methodol 13:91), whose mid-p
    formula (their supplementary "How to calculate the McNemar mid-p test") mcnemar implements.

No printed example was found for Holm's adjustment, the sign-flip test with several seeds, the
two-level bootstrap or the seed-mean interval: those are tested against independent computations
(Holm's sequential rejection as Holm 1979 states it, brute-force enumeration of all sign patterns,
closed forms, and a seeded coverage simulation).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.special import expit

from trainables.evaluation.intervals import metric, rises
from trainables.schema.results import CONFIDENCE
from trainables.statistics import (
    holm,
    mcnemar,
    seed_mean_interval,
    sign_flip_test,
    tango_interval,
    two_level_bootstrap,
    wilson_interval,
)

# Cavo et al. (2012): 6 pairs responded only before, 16 only after, of 161.
CAVO = {"a_only": 6, "b_only": 16, "n": 161}


def test_wilson_reproduces_the_printed_ligarden_interval():
    low, high = wilson_interval(13, 16)
    assert (round(low, 4), round(high, 4)) == (0.5699, 0.9341)


def test_wilson_never_collapses_to_a_point_at_0_or_all():
    # 0 of 64: Wilson's upper limit z^2 / (n + z^2) (the closed form at 0 successes), not 0.
    z2 = 1.959963984540054**2
    assert wilson_interval(0, 64) == pytest.approx((0.0, z2 / (64 + z2)))
    assert wilson_interval(64, 64) == pytest.approx((64 / (64 + z2), 1.0))
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_mcnemar_reproduces_the_printed_cavo_p_values():
    found = mcnemar(CAVO["a_only"], CAVO["b_only"])
    assert round(found.p_exact, 6) == 0.052479
    assert round(found.p_mid, 6) == 0.034690
    assert mcnemar(16, 6).p_mid == found.p_mid  # two-sided: the order of the counts does not matter


def test_mcnemar_special_cases_follow_the_formulas():
    # Equal counts: mid-p = 1 - P(X = b) / 2 (Fagerland et al. 2013's supplementary, equation 2's case).
    assert mcnemar(3, 3).p_mid == pytest.approx(1 - 0.5 * math.comb(6, 3) / 2**6)
    assert mcnemar(3, 3).p_exact == 1.0
    # One-sided exact: P(X >= 4 | 4 discordant) = 1/16.
    assert mcnemar(4, 0).p_greater == pytest.approx(1 / 16) and mcnemar(0, 4).p_greater == 1.0
    assert (mcnemar(0, 0).p_exact, mcnemar(0, 0).p_mid) == (1.0, 1.0)  # no discordant point: no evidence
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar(-1, 2)


def test_tango_reproduces_the_printed_cavo_interval():
    low, high = tango_interval(**CAVO)
    assert (round(low, 4), round(high, 4)) == (-0.1240, -0.0054)
    assert round((CAVO["a_only"] - CAVO["b_only"]) / CAVO["n"], 4) == -0.0621
    assert tango_interval(16, 6, 161) == pytest.approx((-high, -low))  # swapping A and B mirrors it


def test_tango_is_sensible_at_the_edges():
    z2 = 1.959963984540054**2
    # No discordant point: +-z^2 / (n + z^2), the score interval's closed form there.
    assert tango_interval(0, 0, 64) == pytest.approx((-z2 / (64 + z2), z2 / (64 + z2)))
    assert tango_interval(64, 0, 64)[1] == 1.0 and tango_interval(0, 64, 64)[0] == -1.0
    with pytest.raises(ValueError, match="a_only \\+ b_only <= n"):
        tango_interval(5, 5, 8)


def test_the_sign_flip_test_of_one_seed_is_mcnemars_mid_p_on_the_cavo_data():
    per_point = [1] * CAVO["a_only"] + [-1] * CAVO["b_only"] + [0] * (CAVO["n"] - 22)
    found = sign_flip_test(per_point)
    assert round(found.p_mid, 6) == 0.034690 and round(found.p_exact, 6) == 0.052479
    assert (found.method, found.points) == ("exact", 22)


@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_the_exact_sign_flip_distribution_equals_enumerating_every_sign_pattern(seeds):
    rng = np.random.default_rng(seeds)
    per_point = rng.integers(-seeds, seeds + 1, size=13)  # per-point sums of 0/1 differences over seeds
    found = sign_flip_test(per_point)
    kept = np.abs(per_point[per_point != 0])
    observed = abs(int(per_point.sum()))
    sums = np.array([abs(int(np.dot(signs, kept))) for signs in itertools.product((-1, 1), repeat=len(kept))])
    assert found.p_exact == pytest.approx(float((sums >= observed).mean()), abs=1e-12)
    assert found.p_mid == pytest.approx(float((sums > observed).mean() + (sums == observed).mean() / 2), abs=1e-12)


def test_the_exact_sign_flip_test_scales_to_a_large_test_set():
    rng = np.random.default_rng(1)
    per_point = rng.choice([-3, -2, -1, 0, 1, 2, 3], size=10_000, p=[0.04, 0.04, 0.05, 0.7, 0.05, 0.06, 0.06])
    found = sign_flip_test(per_point)
    assert found.method == "exact" and 0 <= found.p_mid <= found.p_exact <= 1
    # Near the normal approximation of the sum under random signs: z = sum / sqrt(sum of squares).
    z = abs(per_point.sum()) / math.sqrt(float((per_point.astype(float) ** 2).sum()))
    assert found.p_exact == pytest.approx(math.erfc(z / math.sqrt(2)), rel=0.1)


def test_non_integer_values_fall_back_to_a_seeded_monte_carlo_with_the_plus_one_correction():
    rng = np.random.default_rng(2)
    integers = rng.choice([-2, -1, 1, 2, 3], size=40)
    exact = sign_flip_test(integers)
    sampled = sign_flip_test(integers * 0.37, resamples=20_000, seed=5)  # same test, off the integer lattice
    assert sampled.method == "monte carlo" and sampled == sign_flip_test(integers * 0.37, resamples=20_000, seed=5)
    assert sampled.p_exact == pytest.approx(exact.p_exact, abs=4 * math.sqrt(exact.p_exact / 20_000) + 1e-4)
    # Every value one way: the observed sum is the most extreme; the p counts it (+1), never 0.
    assert sign_flip_test(np.full(40, 0.37), resamples=999, seed=0).p_exact == pytest.approx(2 / 1000)
    assert sign_flip_test([0, 0.0]).p_mid == 1.0


def _holm_rejections(p_values, alpha):
    """Holm (1979) as stated: order the p-values, reject H_(i) while p_(i) <= alpha / (m - i + 1)."""
    order = np.argsort(p_values, kind="stable")
    rejected = np.zeros(len(p_values), dtype=bool)
    for step, index in enumerate(order):
        if p_values[index] > alpha / (len(p_values) - step):
            break
        rejected[index] = True
    return rejected


def test_holm_adjusted_p_values_by_hand_and_against_the_sequential_procedure():
    # By hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; monotone: 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.2, math.nan, 0.01])  # NaN is not a comparison: m = 2
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([0.9, 0.8]).tolist() == [1.0, 1.0] and holm([]).size == 0
    rng = np.random.default_rng(4)
    for _ in range(50):
        p = rng.uniform(0, 0.1, size=rng.integers(1, 12)) ** 2
        for alpha in (0.01, 0.05):
            assert ((holm(p) <= alpha) == _holm_rejections(p, alpha)).all()


def test_the_two_level_bootstrap_with_one_seed_is_the_paired_bootstrap():
    values = np.array([[1] * 30 + [0] * 70], dtype=float)  # a proportion 0.3 on 100 points
    low, high = two_level_bootstrap(values, resamples=4000, seed=0)
    half = 1.959963984540054 * math.sqrt(0.3 * 0.7 / 100)
    assert low == pytest.approx(0.3 - half, abs=0.015) and high == pytest.approx(0.3 + half, abs=0.015)
    assert two_level_bootstrap(values, resamples=500, seed=1) == two_level_bootstrap(values, resamples=500, seed=1)


def test_the_two_level_bootstrap_resamples_seeds_as_well_as_points():
    # Each seed constant over the points: all variation is between seeds. A point-only bootstrap
    # gives a zero-width interval; resampling seeds spans the seed means.
    values = np.repeat(np.array([[0.2], [0.5], [0.8]]), 50, axis=1)
    low, high = two_level_bootstrap(values, resamples=2000, seed=0)
    assert low < 0.3 and high > 0.7
    assert two_level_bootstrap(values.mean(axis=0, keepdims=True), resamples=200, seed=0) == pytest.approx((0.5, 0.5))


def test_the_two_level_bootstrap_covers_a_crossed_seed_and_point_model():
    """Seeded simulation: 3 seeds x 150 shared points, Bernoulli outcomes with a random point effect
    and a random seed effect (logit scale). The two-level interval covers the population mean close
    to its 95%; a bootstrap of the points alone (the seeds averaged first) misses it far more often."""
    rng = np.random.default_rng(0)
    seeds, points, point_sd, seed_sd = 3, 150, 1.5, 0.5
    truth = float(expit(0.3 + point_sd * rng.standard_normal(400_000) + seed_sd * rng.standard_normal(400_000)).mean())
    both = points_only = 0
    repeats = 100
    for repeat in range(repeats):
        logits = 0.3 + point_sd * rng.standard_normal(points)[None, :] + seed_sd * rng.standard_normal(seeds)[:, None]
        outcomes = (rng.random((seeds, points)) < expit(logits)).astype(float)
        low, high = two_level_bootstrap(outcomes, resamples=500, seed=repeat)
        both += low <= truth <= high
        low, high = two_level_bootstrap(outcomes.mean(axis=0, keepdims=True), resamples=500, seed=repeat)
        points_only += low <= truth <= high
    # Measured: 0.90 and 0.70. With 3 seeds the seed part carries the bootstrap's (S-1)/S shrinkage.
    assert both / repeats >= 0.85
    assert both / repeats - points_only / repeats >= 0.15


def test_seed_mean_interval_adds_the_test_point_and_seed_parts_in_quadrature():
    lows, highs = [0.50, 0.55], [0.70, 0.72]
    t_975_1 = 12.706204736174707
    seed_half = t_975_1 * np.std([0.6, 0.64], ddof=1) / math.sqrt(2)
    d_low = math.sqrt((0.1**2 + 0.09**2) / 2)
    d_high = math.sqrt((0.1**2 + 0.08**2) / 2)
    assert seed_mean_interval([0.6, 0.64], lows, highs) == pytest.approx(
        (0.62 - math.hypot(d_low, seed_half), min(1.0, 0.62 + math.hypot(d_high, seed_half)))
    )
    # Seeds that agree (an Identity row): the test-point interval, not zero width.
    assert seed_mean_interval([0.6] * 3, [0.5] * 3, [0.7] * 3) == pytest.approx((0.5, 0.7))
    assert seed_mean_interval([0.6], [0.5], [0.7]) == (0.5, 0.7)
    # No per-trial interval (a time): only the seed part, not clipped to [0, 1].
    low, high = seed_mean_interval([10.0, 12.0], [math.nan] * 2, [math.nan] * 2)
    assert (low, high) == pytest.approx((11 - t_975_1, 11 + t_975_1))


def test_a_trials_accuracy_interval_is_wilsons_and_0_of_64_is_not_a_point():
    found = metric("natural", torch.zeros(64, dtype=torch.bool))
    assert (found["acc_natural"], found["acc_natural_lo"], found["n_natural"]) == (0.0, 0.0, 64)
    assert found["acc_natural_hi"] == pytest.approx(0.0566, abs=1e-4)
    thirteen = metric("pgd10", torch.tensor([True] * 13 + [False] * 3))
    assert (round(thirteen["acc_pgd10_lo"], 4), round(thirteen["acc_pgd10_hi"], 4)) == (0.5699, 0.9341)
    assert math.isnan(metric("pgd20", None)["acc_pgd20"])
    assert CONFIDENCE == 0.95  # the level the printed intervals above are at


def test_a_stronger_attack_rises_only_beyond_mcnemars_exact_test():
    """4 points of 64 all one way: the old percentile bootstrap called that a rise, p = 0.0625 does
    not; 6 of 64 all one way (p = 1/64 < 0.025, Tango's interval above 0) does."""
    weaker = torch.zeros(64, dtype=torch.bool)
    four, six = weaker.clone(), weaker.clone()
    four[:4], six[:6] = True, True
    found = rises(four, weaker)
    assert found["p"] == pytest.approx(1 / 16) and found["lo"] > 0 and not found["rises"]
    assert (found["difference"], found["a_only"], found["b_only"]) == (4 / 64, 4, 0)
    found = rises(six, weaker)
    assert found["p"] == pytest.approx(1 / 64) and found["rises"]
    assert (found["lo"], found["hi"]) == pytest.approx(tango_interval(6, 0, 64))
    assert not rises(weaker, six)["rises"]  # a fall is not a rise
