"""Paired comparisons: two configurations evaluated on the same test points, compared on those points.

Overlapping marginal intervals say little when two pipelines are scored on the same points: most
points are easy (or hopeless) for both, and only the points where they disagree carry the
difference. `paired_difference` gives the difference in accuracy with an interval and a p-value
that treat the test point as the unit; `compare_to_reference` does it for every configuration of
a sweep against a reference configuration (Vanilla, say), attack by attack, from the per-example
outcomes that every trial writes (results/examples/), and adjusts the p-values of its whole table
with Holm's method. The statistics themselves are trainables/statistics.py.

* One seed: McNemar's mid-p test on the discordant points and Tango's score interval.
* Several seeds (every seed evaluated on the same points): the points are the unit, not the
  (seed, point) pairs, which recur in every seed and are not independent. p: an exact sign-flip
  test on the per-point differences summed over seeds (mid-p; with one seed it is McNemar's
  mid-p). Interval: a bootstrap that resamples seeds and points jointly (two_level_bootstrap),
  so it holds seed-to-seed as well as test-point variation.
* A difference is `significant` (the report's `*`) when its interval excludes 0 AND its
  Holm-adjusted p over the table's comparisons is below 1 - CONFIDENCE: one rule, so an interval
  and a p-value never disagree silently.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from orchestrator.analysis.frames import configurations
from orchestrator.analysis.provenance import check_one_foundation_per_configuration, check_same_foundation
from orchestrator.analysis.several_sweeps import describe_differences, settings_of_sweeps
from orchestrator.store.rows import SEED_COLUMNS
from trainables.errors import UserError
from trainables.schema.preprocessor import REFERENCE_KINDS
from trainables.schema.results import ACCURACY_NAMES, CONFIDENCE, accuracy_column
from trainables.statistics import holm, mcnemar, sign_flip_test, tango_interval, two_level_bootstrap

RESAMPLES = 2000  # bootstrap replicates of the several-seed interval (percentile limits need more than 1000)
ALPHA = 1 - CONFIDENCE  # the family-wise level of the `*`
ONE_SEED_METHOD = "McNemar mid-p, Tango score interval"
SEEDS_METHOD = "sign-flip mid-p over points, seed x point bootstrap"


@dataclass(frozen=True)
class PairedDifference:
    """accuracy(A) - accuracy(B) on the same points, as fractions in [-1, 1].

    `a_only` / `b_only`: with one seed the points only A / only B got right (McNemar's discordant
    points, the only ones that move the difference); with several, the points whose mean over
    seeds favours A / B. `p_value`: the two-sided mid-p of `method` (before any adjustment for
    the other comparisons of a table).
    """

    difference: float
    lo: float
    hi: float
    p_value: float
    a_only: int
    b_only: int
    points: int
    seeds: int
    method: str = ONE_SEED_METHOD

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

    One seed: McNemar's mid-p test and Tango's score interval from the discordant counts (no
    resampling; `resamples` and `seed` unused). Several seeds: the exact sign-flip test (mid-p)
    on the per-point differences summed over seeds, and the percentile interval of a bootstrap
    over `resamples` replicates that draws the seeds and, independently, the points with
    replacement (one draw of points for all seeds), seeded by `seed`.
    """
    pairs = _paired_outcomes(pd.DataFrame(a), pd.DataFrame(b))
    seeds, points = pairs.index.get_level_values("seed").unique(), pairs.index.get_level_values("index").unique()
    a_right = pairs["correct_a"].unstack("index").loc[seeds, points].to_numpy(dtype=np.int8)
    b_right = pairs["correct_b"].unstack("index").loc[seeds, points].to_numpy(dtype=np.int8)
    differences = (a_right - b_right).astype(np.int64)  # (seeds, points) in {-1, 0, 1}
    difference = float(differences.mean())
    if len(seeds) == 1:
        a_only, b_only = int((differences == 1).sum()), int((differences == -1).sum())
        low, high = tango_interval(a_only, b_only, len(points), confidence)
        p_value = mcnemar(a_only, b_only).p_mid
        method = ONE_SEED_METHOD
    else:
        per_point = differences.sum(axis=0)  # the mean over seeds times the number of seeds: integers
        a_only, b_only = int((per_point > 0).sum()), int((per_point < 0).sum())
        low, high = two_level_bootstrap(differences, resamples=resamples, seed=seed, confidence=confidence)
        p_value = sign_flip_test(per_point).p_mid
        method = SEEDS_METHOD
    return PairedDifference(difference, low, high, p_value, a_only, b_only, len(points), len(seeds), method)


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


def adjust_family(compared: pd.DataFrame, attacks: Iterable[str]) -> pd.DataFrame:
    """Holm-adjust every `<attack>_p` of `compared` as one family and mark what is significant.

    The family is every (configuration, attack) cell that has a p-value: a report's comparison
    table against one reference. Adds `<attack>_p_adjusted` and `<attack>_significant` (the
    interval excludes 0 and the adjusted p is below ALPHA).
    """
    attacks = [attack for attack in attacks if f"{attack}_p" in compared.columns]
    if not attacks:
        return compared
    p_values = compared[[f"{attack}_p" for attack in attacks]].to_numpy(dtype=float)
    adjusted = holm(p_values.ravel()).reshape(p_values.shape)
    for j, attack in enumerate(attacks):
        compared[f"{attack}_p_adjusted"] = adjusted[:, j]
        excludes_zero = (compared[f"{attack}_lo"] > 0) | (compared[f"{attack}_hi"] < 0)
        significant = excludes_zero & (compared[f"{attack}_p_adjusted"] < ALPHA)
        compared[f"{attack}_significant"] = significant.where(compared[f"{attack}_p"].notna())
    return compared


def family_size(compared: pd.DataFrame) -> int:
    """How many comparisons the Holm adjustment of `compared` counted (its cells with a p-value)."""
    columns = [c for c in compared.columns if c.endswith("_p_adjusted")]
    return int(compared[columns].notna().to_numpy().sum()) if columns else 0


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


def default_reference(trials: pd.DataFrame, planned_kinds: Iterable[str] | None = None) -> dict[str, str] | None:
    """The first of the registry's REFERENCE_KINDS the sweep has (Vanilla, else Identity), else none.

    `planned_kinds`: the kinds the sweep's plan holds, when known; the reference is chosen among
    them, so it stays the same while trials finish (a running sweep once compared against Identity
    until its first Vanilla trial finished, then silently against Vanilla)."""
    kinds = set(planned_kinds or ()) or set(trials.get("preprocessor.kind", pd.Series(dtype=object)).dropna())
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
    and per attack `<attack>_diff`, `_lo`, `_hi`, `_p` (paired_difference's), then
    `_p_adjusted` and `_significant` (Holm over every cell of this frame: adjust_family), `_a_only`,
    `_b_only`, `_points`, `_seeds` and `_method`.
    """
    attacks = list(attacks)
    for key in selector:
        if key not in trials.columns:
            raise UserError(f"--compare-to: no setting {key!r} in these results")
    groups = configurations(trials)
    settings_columns = set(groups[0][0]) if groups else set()
    for key in selector:
        if key not in settings_columns:  # seed, sweep, a metric: in every row, but no configuration's
            raise UserError(
                f"--compare-to: {key} is not a setting that tells configurations apart (each seed is paired "
                "with its own); give one that is, e.g. preprocessor.kind=vanilla"
            )
    check_one_foundation_per_configuration(trials, groups)
    is_reference = [all(_matches(settings[key], wanted) for key, wanted in selector.items()) for settings, _ in groups]
    if not any(is_reference):
        raise UserError(f"--compare-to: no finished configuration has {reference_text(selector)}")
    # Against another sweep: the settings that tell the sweeps apart (the one the two studies
    # differ in) are what is compared, so a row's twin need not agree on them.
    set_aside = settings_of_sweeps(trials, sorted(settings_columns - set(selector))) if "sweep" in selector else []
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
            if is_reference[j]
            and all(
                _agree(settings[key], other[key]) for key in settings if key not in selector and key not in set_aside
            )
        ]
        if len(candidates) != 1:
            row["reference"] = None
        else:
            reference_index = groups[candidates[0]][1]
            check_same_foundation(trials.loc[index], trials.loc[reference_index], selector)
            row["reference"] = ",".join(trials.loc[reference_index, "config_hash"])
            for attack in attacks:
                found = _difference(
                    outcomes,
                    trials.loc[index],
                    trials.loc[reference_index],
                    attack,
                    resamples,
                    seed,
                    "sweep" in selector,
                )
                if found is not None:
                    row.update(
                        {
                            f"{attack}_diff": found.difference,
                            f"{attack}_lo": found.lo,
                            f"{attack}_hi": found.hi,
                            f"{attack}_p": found.p_value,
                            f"{attack}_a_only": found.a_only,
                            f"{attack}_b_only": found.b_only,
                            f"{attack}_points": found.points,
                            f"{attack}_seeds": found.seeds,
                            f"{attack}_method": found.method,
                        }
                    )
        rows.append(row)
    compared = adjust_family(pd.DataFrame(rows), attacks)
    compared.attrs["set_aside"] = describe_differences(trials, set_aside)  # for the report's caption
    return compared


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
            found[(key, attack)] = frame[["index", "label", "correct"]].assign(seed=seed_of[key])
    return found


def _difference(
    outcomes,
    group: pd.DataFrame,
    reference: pd.DataFrame,
    attack: str,
    resamples: int,
    seed: int,
    across_sweeps: bool = False,
):
    """The paired difference of `group` against `reference` under `attack`, None where either has
    no outcomes or (within a sweep) they share no (seed, point). Refused in one line where the two
    call one test point by different labels (other data), or, across sweeps, share no point."""

    def stacked(trials: pd.DataFrame):
        frames = [outcomes[(key, attack)] for key in trials["config_hash"] if (key, attack) in outcomes]
        return pd.concat(frames, ignore_index=True) if frames else None

    a, b = stacked(group), stacked(reference)
    if a is None or b is None:
        return None
    row, other = group["config_hash"].iloc[0], reference["config_hash"].iloc[0]
    labels = a.drop_duplicates("index").merge(b.drop_duplicates("index"), on="index", suffixes=("_a", "_b"))
    clash = labels[labels["label_a"] != labels["label_b"]]
    if len(clash):
        first = clash.iloc[0]
        raise UserError(
            f"--compare-to: test point {int(first['index'])} has label {int(first['label_a'])} for {row} and "
            f"{int(first['label_b'])} for its reference {other}: they were evaluated on different data; "
            "no paired comparison"
        )
    try:
        return paired_difference(a, b, resamples=resamples, seed=seed)
    except ValueError:  # no (seed, point) in common: other seeds, or other test subsets
        if across_sweeps:
            raise UserError(
                f"--compare-to: {row} and its reference {other} share no test point under {attack} "
                "(other test points or other seeds): no paired comparison across these sweeps"
            ) from None
        return None


def sweep_comparisons(
    target,
    trials: pd.DataFrame,
    references: list[str] | None,
    metrics: Iterable[str],
    *,
    resamples: int = RESAMPLES,
    planned_kinds: Iterable[str] | None = None,
) -> list[tuple[str, pd.DataFrame]] | None:
    """The report's comparisons: for each `--compare-to` text (None: the default reference), its
    name and compare_to_reference's frame; [] when none is asked for (or none applies), None
    when some is but the results hold no per-example outcomes (a sweep from before they existed)."""
    from orchestrator.analysis.several_sweeps import examples_of

    targets = list(target) if isinstance(target, (list, tuple)) else [target]
    if references is None:
        selectors = [default_reference(trials, planned_kinds)]
        finished = set(trials.get("preprocessor.kind", pd.Series(dtype=object)).dropna())
        if selectors[0] is not None and selectors[0]["preprocessor.kind"] not in finished:
            print(
                f"orchestrator: the reference {reference_text(selectors[0])} has no finished trial yet: "
                "no paired comparison against it until it has",
                file=sys.stderr,
            )
            selectors = []
        if len(targets) > 1:  # several sweeps: each row also against its twin in the first one given
            selectors.append({"sweep": str(trials["sweep"].iloc[0])})
    else:
        selectors = [None if text.strip().lower() == "none" else parse_reference(text) for text in references]
    selectors = [selector for selector in selectors if selector is not None]
    if not selectors:
        return []
    examples = examples_of(targets, trials)
    if examples.empty:
        return None
    attacks = [attack_of(metric) for metric in metrics]
    return [
        (reference_text(selector), compare_to_reference(trials, examples, selector, attacks, resamples=resamples))
        for selector in selectors
    ]
