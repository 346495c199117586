"""Paired comparisons: two configurations evaluated on the same test points, compared on those points.

Overlapping marginal intervals say little when two pipelines are scored on the same points: most
points are easy (or hopeless) for both, and only the points where they disagree carry the
difference. `paired_difference` gives the difference in accuracy with a paired bootstrap interval
and McNemar's exact test; `compare_to_reference` does it for every configuration of a sweep
against a reference configuration (Vanilla, say), attack by attack, from the per-example outcomes
that every trial writes (results/examples/).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from orchestrator.analysis.frames import configurations
from orchestrator.store.rows import SEED_COLUMNS
from trainables.errors import UserError
from trainables.schema.preprocessor import REFERENCE_KINDS
from trainables.schema.results import ACCURACY_NAMES, CONFIDENCE, accuracy_column

RESAMPLES = 1000  # the paper's bootstrap count
_CHUNK = 200  # bootstrap replicates drawn at a time: bounded memory for 10,000-point test sets


@dataclass(frozen=True)
class PairedDifference:
    """accuracy(A) - accuracy(B) on the same points, as fractions in [-1, 1].

    `a_only` / `b_only` count the (seed, point) pairs only A / only B got right: McNemar's
    discordant pairs, the only ones that move the difference.
    """

    difference: float
    lo: float
    hi: float
    p_value: float
    a_only: int
    b_only: int
    points: int
    seeds: int

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


def paired_difference(
    a, b, *, resamples: int = RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE
) -> PairedDifference:
    """Compare two configurations under one attack on the test points both were evaluated on.

    `a` and `b` are per-example outcomes (a DataFrame, or anything pandas turns into one) with
    columns `index` (the point's index in the test set) and `correct` (bool), and `seed` when a
    configuration was trained with several seeds: seed s of A is paired with seed s of B, and
    only seeds both have count. Points are those every paired seed evaluated in both.

    The interval is a paired percentile bootstrap over `resamples` replicates: each replicate
    draws the test points with replacement and, with several seeds, the seeds with replacement,
    and averages the per-point differences. Stratified by seed: a pair is never formed across
    seeds, and one draw of points serves every seed, since all seeds were evaluated on the same
    points (independent draws per seed would treat them as separate test sets and understate
    the interval). The p-value is McNemar's exact test: a two-sided binomial test of the
    discordant pairs against 1/2, pooled over seeds.
    """
    from scipy import stats

    pairs = _paired_outcomes(pd.DataFrame(a), pd.DataFrame(b))
    seeds, points = pairs.index.get_level_values("seed").unique(), pairs.index.get_level_values("index").unique()
    a_right = pairs["correct_a"].unstack("index").loc[seeds, points].to_numpy(dtype=np.int8)
    b_right = pairs["correct_b"].unstack("index").loc[seeds, points].to_numpy(dtype=np.int8)
    differences = (a_right - b_right).astype(np.float64)  # (seeds, points) in {-1, 0, 1}
    low, high = _bootstrap_interval(differences, resamples, seed, confidence)
    a_only, b_only = int(((a_right == 1) & (b_right == 0)).sum()), int(((a_right == 0) & (b_right == 1)).sum())
    discordant = a_only + b_only
    p_value = 1.0 if discordant == 0 else float(stats.binomtest(min(a_only, b_only), discordant, 0.5).pvalue)
    return PairedDifference(float(differences.mean()), low, high, p_value, a_only, b_only, len(points), len(seeds))


def _paired_outcomes(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Both outcomes per (seed, index) over the points every shared seed evaluated in both."""
    for name, frame in (("a", a), ("b", b)):
        missing = {"index", "correct"} - set(frame.columns)
        if missing:
            raise ValueError(f"paired_difference: {name} lacks the column(s) {sorted(missing)}")
        if frame.duplicated([c for c in ("seed", "index") if c in frame.columns]).any():
            raise ValueError(f"paired_difference: {name} lists a (seed, index) twice")
    columns = ["seed", "index", "correct"]
    a, b = (frame.assign(seed=frame["seed"] if "seed" in frame.columns else 0)[columns] for frame in (a, b))
    pairs = a.merge(b, on=["seed", "index"], suffixes=("_a", "_b"))
    counts = pairs.groupby("index")["seed"].nunique()
    common = counts.index[counts == pairs["seed"].nunique()]
    pairs = pairs[pairs["index"].isin(common)]
    if pairs.empty:
        raise ValueError("paired_difference: no test point was evaluated for both configurations (under one seed)")
    return pairs.set_index(["seed", "index"]).sort_index()


def _bootstrap_interval(differences: np.ndarray, resamples: int, seed: int, confidence: float) -> tuple[float, float]:
    """Percentile interval of the mean of `differences` (seeds x points) under joint resampling."""
    seeds, points = differences.shape
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        count = min(_CHUNK, resamples - start)
        point_weights = rng.multinomial(points, np.full(points, 1 / points), size=count)  # (count, points)
        seed_weights = (
            rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=count)
            if seeds > 1
            else np.ones((count, 1), dtype=np.int64)
        )
        per_seed = differences @ point_weights.T  # (seeds, count): each seed's sum over the drawn points
        means[start : start + count] = (seed_weights.T * per_seed).sum(axis=0) / (seeds * points)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


# --- a sweep's configurations against a reference -----------------------------------------------


# acc_pgd20 -> pgd20, for every accuracy a row reports.
_ACCURACY_OF_COLUMN = {accuracy_column(name): name for name in ACCURACY_NAMES}


def attack_of(metric: str) -> str:
    """acc_pgd20 -> pgd20: per-example outcomes are named by attack, results columns by metric."""
    if metric not in _ACCURACY_OF_COLUMN:
        raise ValueError(f"{metric!r} is not an accuracy column: one of {list(_ACCURACY_OF_COLUMN)}")
    return _ACCURACY_OF_COLUMN[metric]


def parse_reference(text: str) -> dict[str, str]:
    """`--compare-to`: a pre-processor kind (`vanilla`) or settings
    (`preprocessor.kind=cropd,preprocessor.lambda=1`)."""
    text = text.strip()
    if not text:
        raise UserError(
            "--compare-to: empty; give a pre-processor kind (vanilla) or settings "
            "(preprocessor.kind=cropd,head.mode=clean)"
        )
    if "=" not in text:
        return {"preprocessor.kind": text}
    selector = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"--compare-to: {part!r} is not setting=value (e.g. preprocessor.lambda=1)")
        selector[key.strip()] = value.strip()
    return selector


def default_reference(trials: pd.DataFrame) -> dict[str, str] | None:
    """The first of the registry's REFERENCE_KINDS the sweep has (Vanilla, else Identity), else none."""
    kinds = set(trials.get("preprocessor.kind", pd.Series(dtype=object)).dropna())
    for kind in REFERENCE_KINDS:
        if kind in kinds:
            return {"preprocessor.kind": kind}
    return None


def reference_text(selector: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" if key != "preprocessor.kind" else value for key, value in selector.items())


def _matches(value, wanted: str) -> bool:
    if pd.isna(value):
        return wanted.lower() in ("null", "none", "-")
    if isinstance(value, bool):
        return wanted.lower() == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return float(wanted) == float(value)
        except ValueError:
            return False
    return str(value) == wanted


def _agree(x, y) -> bool:
    """Two settings agree when equal, or when either configuration does not have the setting
    (null: Vanilla has no lambda, Identity no architecture)."""
    if pd.isna(x) or pd.isna(y):
        return True
    return str(x) == str(y) or (isinstance(x, (int, float)) and isinstance(y, (int, float)) and float(x) == float(y))


def compare_to_reference(
    trials: pd.DataFrame,
    examples: pd.DataFrame,
    selector: dict[str, str],
    attacks: Iterable[str],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """For each configuration of `trials`: its paired difference to the reference configuration
    under each attack ('natural', 'pgd10', ...).

    The reference of a configuration is the configuration that matches `selector` and agrees
    with it on every other setting (a setting null in either one agrees: Vanilla has no lambda),
    so each head mode, data fraction or dataset is compared with its own Vanilla. Returns one
    row per configuration (its `config_hashes` as in aggregate_seeds) with `reference`
    ('self' for the reference rows, the reference's hashes, or None when no single one matches)
    and per attack `<attack>_diff`, `_lo`, `_hi`, `_p`, `_points`, `_seeds`.
    """
    for key in selector:
        if key not in trials.columns:
            raise UserError(f"--compare-to: no setting {key!r} in these results")
    groups = configurations(trials)
    is_reference = [all(_matches(settings[key], wanted) for key, wanted in selector.items()) for settings, _ in groups]
    if not any(is_reference):
        raise UserError(f"--compare-to: no finished configuration has {reference_text(selector)}")
    outcomes = _outcomes_by_trial(trials, examples)
    rows = []
    for (settings, index), reference_row in zip(groups, is_reference):
        row: dict[str, Any] = {"config_hashes": ",".join(trials.loc[index, "config_hash"])}
        if reference_row:
            row["reference"] = "self"
            rows.append(row)
            continue
        candidates = [
            j
            for j, (other, _) in enumerate(groups)
            if is_reference[j] and all(_agree(settings[key], other[key]) for key in settings if key not in selector)
        ]
        if len(candidates) != 1:
            row["reference"] = None
        else:
            reference_index = groups[candidates[0]][1]
            row["reference"] = ",".join(trials.loc[reference_index, "config_hash"])
            for attack in attacks:
                found = _difference(outcomes, trials.loc[index], trials.loc[reference_index], attack, resamples, seed)
                if found is not None:
                    row.update(
                        {
                            f"{attack}_{name}": value
                            for name, value in (
                                ("diff", found.difference),
                                ("lo", found.lo),
                                ("hi", found.hi),
                                ("p", found.p_value),
                                ("points", found.points),
                                ("seeds", found.seeds),
                            )
                        }
                    )
        rows.append(row)
    return pd.DataFrame(rows)


def _outcomes_by_trial(trials: pd.DataFrame, examples: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(config hash, attack) -> that trial's outcomes, with its seed as a column.

    Trials pair by the `seed` column (the data seed, which a spec's `seeds` or grid `seed` sets
    together with the pre-processor and head seeds): not by all three, since a kind without a
    trained pre-processor (Identity) has no pre-processor seed.
    """
    seed_column = SEED_COLUMNS[0]
    seed_of = (
        trials.set_index("config_hash")[seed_column].astype("string").fillna("")
        if seed_column in trials
        else pd.Series("", index=trials["config_hash"])
    )
    found = {}
    for (key, attack), frame in examples.groupby(["config_hash", "attack"], sort=False):
        if key in seed_of.index:
            found[(key, attack)] = frame[["index", "correct"]].assign(seed=seed_of[key])
    return found


def _difference(outcomes, group: pd.DataFrame, reference: pd.DataFrame, attack: str, resamples: int, seed: int):
    def stacked(trials: pd.DataFrame):
        frames = [outcomes[(key, attack)] for key in trials["config_hash"] if (key, attack) in outcomes]
        return pd.concat(frames, ignore_index=True) if frames else None

    a, b = stacked(group), stacked(reference)
    if a is None or b is None:
        return None
    try:
        return paired_difference(a, b, resamples=resamples, seed=seed)
    except ValueError:  # no (seed, point) in common: other seeds, or other test subsets
        return None


def sweep_comparisons(
    target, trials: pd.DataFrame, references: list[str] | None, metrics: Iterable[str], *, resamples: int = RESAMPLES
) -> list[tuple[str, pd.DataFrame]] | None:
    """The report's comparisons: for each `--compare-to` text (None: the default reference), its
    name and compare_to_reference's frame; [] when none is asked for (or none applies), None
    when some is but the results hold no per-example outcomes (a sweep from before they existed)."""
    from orchestrator.analysis.frames import load_examples

    if references is None:
        selectors = [default_reference(trials)]
    else:
        selectors = [None if text.strip().lower() == "none" else parse_reference(text) for text in references]
    selectors = [selector for selector in selectors if selector is not None]
    if not selectors:
        return []
    examples = load_examples(target, trials["config_hash"])
    if examples.empty:
        return None
    attacks = [attack_of(metric) for metric in metrics]
    return [
        (reference_text(selector), compare_to_reference(trials, examples, selector, attacks, resamples=resamples))
        for selector in selectors
    ]
