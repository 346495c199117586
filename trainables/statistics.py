"""The statistics behind every interval and p-value a row or a report gives (numpy and scipy only).

Torch-free, so the command line imports it. What each function computes, and why this one:

* `wilson_interval`: one accuracy's interval, Wilson's score interval (scipy's
  `binomtest(...).proportion_ci(method="wilson")`). Chosen over Clopper-Pearson because its
  coverage is close to nominal on average, where Clopper-Pearson's never falls below 95% and so
  sits well above it, a wider interval than the data need (Newcombe 1998, Stat Med 17:857,
  method 3 against 5; Agresti & Coull 1998), and it is the same score family as the paired
  interval below. Unlike a percentile bootstrap, 0 of 64 gives
  [0, 5.7%], not [0, 0].
* `mcnemar`: McNemar's exact conditional test and its mid-p version from the discordant counts
  (written here from the binomial distribution, scipy.stats.binom: Fagerland, Lydersen & Laake
  2013, BMC Med Res Methodol 13:91, whose mid-p keeps the level in all their 9595 scenarios and
  is nearly as powerful as the asymptotic test, where the exact conditional test is conservative).
* `tango_interval`: the score interval for the difference of paired proportions (Tango 1998, Stat
  Med 17:891), written here (its constrained maximum likelihood estimate is a closed-form root,
  the limits are found with scipy.optimize.brentq). Chosen over Newcombe's method 10 because it
  inverts the score test whose statistic at 0 is McNemar's, so the interval and the test speak
  about the same thing, and it stays sensible with no discordant pair (0 of 64 each way gives
  about +-5.7 points, not [0, 0]).
* `holm`: Holm's step-down adjustment (Holm 1979), written here: scipy has no family-wise
  adjustment (its `false_discovery_control` is Benjamini-Hochberg). Valid under any dependence
  between the comparisons, which share reference rows and test points.
* `sign_flip_test`: for several seeds evaluated on the same test points, the points are the unit:
  the per-point differences (summed over seeds) get random signs, one sign per point for all its
  seeds. Exact and two-sided, as a mid-p: when the values are integers (per-point sums of 0/1
  differences always are) the null distribution of the sum is computed exactly by convolving
  one scaled binomial per distinct magnitude (scipy.signal.convolve), which enumerates all 2^k
  sign patterns at once for any number of points k; with one seed it is McNemar's mid-p test.
  Other values fall back to scipy.stats.permutation_test (exact enumeration while 2^k fits the
  resamples, else a seeded Monte Carlo whose p counts the observed value, the +1 correction).
* `two_level_bootstrap`: the interval of a mean over seeds x points that includes both seed and
  test-point variance: each replicate draws the seeds with replacement and, independently, the
  points with replacement (one draw of points for all seeds, since every seed was evaluated on
  the same points), and averages the drawn sub-table; percentile interval. This is Owen's (2007,
  Ann Appl Stat 1:1) "pigeonhole" bootstrap for crossed factors, slightly conservative in the
  seed x point interaction; with few seeds the seed part inherits the usual (S-1)/S shrinkage of
  a bootstrap over S values. Written here (scipy.stats.bootstrap resamples one level only).
* `seed_mean_interval`: the same question when only each trial's own interval is at hand (no
  per-point outcomes): the test-point part (each seed's interval, root mean square of its
  distances to the seed's mean) and the seed part (Student's t half-width over the seed means)
  are added in quadrature, limit by limit (the MOVER of Zou & Donner 2008, Stat Med 27:1693).
  Slightly conservative: the spread of the seed means already holds some point-level noise.
  Nothing here is new mathematics: the binomial, normal and t distributions, brentq, convolve and
  permutation_test are scipy's; the formulas around them (Tango's statistic, Holm's steps, the
  lattice convolution, the two-level resampling, the quadrature sum) are written out here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize, signal, stats

from .schema.results import CONFIDENCE  # torch-free, like this module

# Beyond this many lattice values (2 x the sum of |values| + 1; 10,000 points x 5 seeds need at most
# 100,001) the exact sign-flip distribution is not built (memory); larger inputs go to Monte Carlo.
EXACT_SUPPORT_LIMIT = 2_000_000
MONTE_CARLO_FLIPS = 100_000  # Monte Carlo standard error of a p near 0.001: 0.0001
_CHUNK = 200  # bootstrap replicates drawn at a time
_CELLS = 4_000_000  # at most this many (seed, point) values gathered at a time


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval for a proportion successes/trials; (nan, nan) when trials is 0."""
    if trials <= 0:
        return math.nan, math.nan
    found = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence, method="wilson")
    return float(found.low), float(found.high)


@dataclass(frozen=True)
class McNemar:
    """McNemar's test of two classifiers scored on the same points, from the discordant counts.

    `a_only` / `b_only`: the points only A / only B got right. `p_exact`: the two-sided exact
    conditional p (a binomial test of a_only against 1/2 given a_only + b_only). `p_mid`: its
    mid-p version (the observed outcome counted half). `p_greater`: the one-sided exact p that A
    is right more often than B.
    """

    a_only: int
    b_only: int
    p_exact: float
    p_mid: float
    p_greater: float


def mcnemar(a_only: int, b_only: int) -> McNemar:
    """McNemar's exact conditional test and its mid-p (Fagerland, Lydersen & Laake 2013).

    Two-sided exact p = min(1, 2 P(X <= min)), X ~ Binomial(a_only + b_only, 1/2); mid-p = that
    minus P(X = min), and 1 - P(X = a_only) / 2 when a_only = b_only. With no discordant point
    both are 1: there is no evidence either way (the mid-p formula would give 1/2, half the
    probability of the only possible outcome, which would read as weak evidence).
    """
    a_only, b_only = int(a_only), int(b_only)
    if a_only < 0 or b_only < 0:
        raise ValueError(f"mcnemar: discordant counts must be >= 0, got {a_only} and {b_only}")
    discordant = a_only + b_only
    if discordant == 0:
        return McNemar(0, 0, 1.0, 1.0, 1.0)
    smaller = min(a_only, b_only)
    exact = min(1.0, 2 * float(stats.binom.cdf(smaller, discordant, 0.5)))
    if a_only == b_only:
        mid = 1 - 0.5 * float(stats.binom.pmf(a_only, discordant, 0.5))
    else:
        mid = exact - float(stats.binom.pmf(smaller, discordant, 0.5))
    greater = float(stats.binom.sf(a_only - 1, discordant, 0.5))  # P(X >= a_only)
    return McNemar(a_only, b_only, exact, mid, greater)


def _tango_statistic(delta: float, a_only: int, b_only: int, n: int) -> float:
    """Tango's score statistic for H0: p(A right) - p(B right) = delta (his equations 3-5)."""
    # The maximum likelihood estimate of P(only B right) under the constraint: the positive root
    # of 2n x^2 + B x + C = 0.
    b_coef = -a_only - b_only + (2 * n - a_only + b_only) * delta
    c_coef = -b_only * delta * (1 - delta)
    b_only_tilde = (math.sqrt(max(b_coef * b_coef - 8 * n * c_coef, 0.0)) - b_coef) / (4 * n)
    variance = n * (2 * b_only_tilde + delta * (1 - delta))
    numerator = a_only - b_only - n * delta
    if variance <= 0:  # only where the numerator is 0 too (delta = the estimate 0, no discordant point)
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def tango_interval(a_only: int, b_only: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Tango's (1998) score interval for accuracy(A) - accuracy(B) on n paired points.

    `a_only` / `b_only` are the points only A / only B got right. The limits are the differences
    delta where the score statistic equals -z and +z; they always lie in [-1, 1].
    """
    a_only, b_only, n = int(a_only), int(b_only), int(n)
    if n <= 0 or a_only < 0 or b_only < 0 or a_only + b_only > n:
        raise ValueError(f"tango_interval: need 0 <= a_only + b_only <= n, got {a_only}, {b_only}, {n}")
    z = _z(confidence)
    estimate = (a_only - b_only) / n
    edge = 1e-12  # the statistic is infinite at exactly -1 and 1

    def lower(delta):
        return _tango_statistic(delta, a_only, b_only, n) - z

    def upper(delta):
        return _tango_statistic(delta, a_only, b_only, n) + z

    low = -1.0 if estimate <= -1 + edge else optimize.brentq(lower, -1 + edge, estimate, xtol=1e-12)
    high = 1.0 if estimate >= 1 - edge else optimize.brentq(upper, estimate, 1 - edge, xtol=1e-12)
    return float(low), float(high)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order; NaN stays NaN and is not counted.

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)):
    rejecting where the adjusted p is below alpha is Holm's procedure at family-wise level alpha.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = len(present)
    if m == 0:
        return adjusted
    order = present[np.argsort(p[present], kind="stable")]
    stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


@dataclass(frozen=True)
class SignFlip:
    """A sign-flip test's result: `p_mid` (two-sided mid-p: P(|T| > |t|) + P(|T| = |t|) / 2),
    `p_exact` (P(|T| >= |t|)), `method` ('exact' or 'monte carlo') and `points` (non-zero values)."""

    p_mid: float
    p_exact: float
    method: str
    points: int


def sign_flip_test(
    values: Sequence[float], *, resamples: int = MONTE_CARLO_FLIPS, seed: int | Sequence[int] = 0
) -> SignFlip:
    """Two-sided sign-flip test that the values are symmetric about 0 (statistic: their sum).

    Zeros carry no sign and are dropped. Integer values (per-point sums of 0/1 differences over
    seeds) get the exact null distribution by convolution; others scipy.stats.permutation_test
    (exact while 2^k <= resamples, else `resamples` seeded flips, p with the +1 correction; its
    p_mid is then the same as p_exact, there is no mid-p for a sampled distribution).
    """
    x = np.asarray(values, dtype=float).ravel()
    if not np.isfinite(x).all():
        raise ValueError("sign_flip_test: the values must be finite")
    x = x[x != 0]
    if len(x) == 0:
        return SignFlip(1.0, 1.0, "exact", 0)
    magnitudes = np.abs(x)
    if np.array_equal(magnitudes, np.round(magnitudes)) and 2 * magnitudes.sum() + 1 <= EXACT_SUPPORT_LIMIT:
        return _exact_sign_flip(x.astype(np.int64))
    found = stats.permutation_test(
        (x,),
        np.sum,
        permutation_type="samples",
        n_resamples=resamples,
        alternative="two-sided",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    exact = len(x) <= math.log2(resamples)
    p = float(found.pvalue)
    return SignFlip(p, p, "exact" if exact else "monte carlo", len(x))


def _exact_sign_flip(x: np.ndarray) -> SignFlip:
    """The exact sign-flip distribution of sum(sign_i * |x_i|) over all 2^k sign patterns.

    Values of one magnitude m contribute m * (2 Binomial(c_m, 1/2) - c_m); the sum's
    distribution is the convolution of these few lattice distributions (one per magnitude).
    """
    magnitudes, counts = np.unique(np.abs(x), return_counts=True)
    total = int(np.abs(x).sum())
    pmf = np.ones(1)  # distribution of sum + (partial total), on 0, 1, ..., partial total * 2
    for magnitude, count in zip(magnitudes.tolist(), counts.tolist()):
        part = np.zeros(2 * magnitude * count + 1)
        part[:: 2 * magnitude] = stats.binom.pmf(np.arange(count + 1), count, 0.5)
        pmf = np.clip(signal.convolve(pmf, part, method="auto"), 0.0, None)  # FFT may leave -1e-17
    pmf /= pmf.sum()
    distance = np.abs(np.arange(len(pmf)) - total)  # |T| for each lattice value
    observed = abs(int(x.sum()))
    beyond, equal = float(pmf[distance > observed].sum()), float(pmf[distance == observed].sum())
    return SignFlip(min(1.0, beyond + equal / 2), min(1.0, beyond + equal), "exact", len(x))


def two_level_bootstrap(
    values: np.ndarray, *, resamples: int, seed: int | Sequence[int], confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile interval of the mean of `values` (seeds x points), seeds and points resampled.

    Each replicate draws the rows (seeds) with replacement and, independently, the columns
    (points) with replacement, and averages the drawn sub-table: one draw of points serves every
    drawn seed, since all seeds were evaluated on the same points. With one row only the points
    are resampled (the ordinary paired bootstrap).
    """
    table = np.atleast_2d(np.asarray(values, dtype=float))
    seeds, points = table.shape
    if seeds == 0 or points == 0:
        raise ValueError("two_level_bootstrap: no values")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, min(_CHUNK, _CELLS // (seeds * points)))  # bounded memory for 10,000-point test sets
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        drawn_points = rng.integers(0, points, size=(count, points))
        per_seed = table[:, drawn_points].sum(axis=2)  # (seeds, count): each seed's sum over the drawn points
        drawn_seeds = rng.integers(0, seeds, size=(count, seeds))
        seed_weights = (drawn_seeds[:, :, None] == np.arange(seeds)).sum(axis=1)  # (count, seeds): times drawn
        means[start : start + count] = (seed_weights.T * per_seed).sum(axis=0) / (seeds * points)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def seed_mean_interval(
    means: Sequence[float], lows: Sequence[float], highs: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Interval of the mean of several seeds' accuracies from each seed's own interval.

    Lower limit: mean - sqrt(d_low^2 + h^2), upper: mean + sqrt(d_high^2 + h^2), where d_low and
    d_high are the root mean squares of each seed's distance from its accuracy to its own limits
    (the test-point part: the points are shared, so it does not shrink with more seeds) and h is
    Student's t half-width of the mean over seeds (the seed part). Clipped to [0, 1]. A seed
    without an interval (NaN limits) is left out of the test-point part; with none, only the seed
    part remains (a time or a count has no test-point variance). One seed: its own interval.
    """
    means, lows, highs = (np.asarray(v, dtype=float) for v in (means, lows, highs))
    if len(means) == 0:
        return math.nan, math.nan
    if len(means) == 1:
        return float(lows[0]), float(highs[0])
    mean = float(means.mean())
    has_interval = ~(np.isnan(lows) | np.isnan(highs))
    d_low = math.sqrt(float(np.mean((means - lows)[has_interval] ** 2))) if has_interval.any() else 0.0
    d_high = math.sqrt(float(np.mean((highs - means)[has_interval] ** 2))) if has_interval.any() else 0.0
    seed_half = float(stats.t.ppf(0.5 + confidence / 2, len(means) - 1)) * means.std(ddof=1) / math.sqrt(len(means))
    low, high = mean - math.hypot(d_low, seed_half), mean + math.hypot(d_high, seed_half)
    return (max(0.0, low), min(1.0, high)) if has_interval.any() else (low, high)
