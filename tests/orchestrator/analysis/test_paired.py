"""Paired comparisons on hand-built per-example tables with known answers, and in the report.

p-values are checked against the binomial formulas written out here (McNemar's mid-p; with several
seeds, the sign-flip test on points, which is McNemar's mid-p of the points when all seeds agree),
intervals against Tango's score interval computed by trainables.statistics (itself checked against
published numbers in tests/trainables/test_statistics.py), and the `*` against its one rule.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from store_helpers import add_trial

from orchestrator import paired_difference
from orchestrator.analysis.paired import ONE_SEED_METHOD, SEEDS_METHOD, adjust_family, compare_to_reference
from orchestrator.cli.app import main
from orchestrator.store.parquet import examples_path, write_examples
from trainables.statistics import tango_interval


def outcomes(correct, seed=None, index=None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"index": index if index is not None else range(len(correct)), "correct": [bool(c) for c in correct]}
    )
    return frame if seed is None else frame.assign(seed=seed)


def test_identical_outcomes_differ_by_zero_with_an_interval_of_the_test_points_width():
    a = outcomes([1, 0, 1, 1, 0] * 20)
    found = paired_difference(a, a.copy())
    assert (found.difference, found.p_value, found.method) == (0.0, 1.0, ONE_SEED_METHOD)
    # No discordant point of 100: Tango's interval is +-z^2 / (n + z^2), not [0, 0].
    z2 = 1.959963984540054**2
    assert (found.lo, found.hi) == pytest.approx((-z2 / (100 + z2), z2 / (100 + z2)))
    assert (found.a_only, found.b_only, found.points, found.seeds) == (0, 0, 100, 1) and not found.excludes_zero


def test_a_dominating_b_gives_mcnemars_mid_p_and_tangos_interval():
    a, b = outcomes([1] * 100), outcomes([1] * 60 + [0] * 40)
    found = paired_difference(a, b)
    assert found.difference == pytest.approx(0.4) and (found.a_only, found.b_only) == (40, 0)
    # mid-p = 2 P(X <= 0) - P(X = 0) = 0.5^40 for X ~ Binomial(40, 1/2)
    assert found.p_value == pytest.approx(0.5**40)
    assert (found.lo, found.hi) == pytest.approx(tango_interval(40, 0, 100))
    assert found.lo < 0.4 < found.hi and found.excludes_zero
    reverse = paired_difference(b, a)
    assert reverse.difference == pytest.approx(-0.4) and reverse.p_value == found.p_value
    assert (reverse.lo, reverse.hi) == pytest.approx((-found.hi, -found.lo))


def test_mcnemar_counts_only_discordant_points():
    # 5 points only A gets right, 1 only B, 94 concordant: exact p = P(X <= 1 or X >= 5 | n=6, 1/2)
    # = 14/64; the mid-p takes half of the observed outcomes' probability: 14/64 - 6/64.
    a = outcomes([1] * 5 + [0] + [1] * 50 + [0] * 44)
    b = outcomes([0] * 5 + [1] + [1] * 50 + [0] * 44)
    found = paired_difference(a, b)
    assert (found.a_only, found.b_only) == (5, 1)
    assert found.p_value == pytest.approx(8 / 64)
    assert found.difference == pytest.approx(0.04)


def test_pairing_separates_what_overlapping_marginal_intervals_cannot():
    # B right on 100 of 200 points, A on the same 100 plus 12: marginal 95% intervals of about
    # +-7 points overlap, but every disagreement favours A.
    b = outcomes([1] * 100 + [0] * 100)
    a = outcomes([1] * 112 + [0] * 88)
    marginal = 1.96 * math.sqrt(0.5 * 0.5 / 200)
    assert 0.56 - marginal < 0.50 + marginal  # the marginal intervals overlap
    found = paired_difference(a, b)
    assert found.difference == pytest.approx(0.06) and found.excludes_zero and found.lo > 0
    assert found.p_value == pytest.approx(0.5**12)


def test_seeds_pair_with_their_own_seed_and_points_are_the_unit():
    # Seed 0 of A equals seed 0 of B, seed 1 equals seed 1: nothing differs. Paired across seeds
    # (A seed 0 with B seed 1) they would differ on 50 points.
    half = [1] * 50 + [0] * 50
    a = pd.concat([outcomes(half, seed=0), outcomes([1] * 100, seed=1)])
    b = pd.concat([outcomes(half, seed=0), outcomes([1] * 100, seed=1)])
    found = paired_difference(a, b)
    assert (found.difference, found.lo, found.hi, found.p_value, found.seeds) == (0.0, 0.0, 0.0, 1.0, 2)
    assert found.method == SEEDS_METHOD
    # Now seed 0 differs by 0.2 and seed 1 by 0: mean 0.1, and the seed draw {1, 1} alone gives 0,
    # so with seeds resampled the interval reaches down to (about) 0 and up to (about) 0.2.
    b0 = [1] * 30 + [0] * 70
    a = pd.concat([outcomes([1] * 50 + [0] * 50, seed=0), outcomes(half, seed=1)])
    b = pd.concat([outcomes(b0, seed=0), outcomes(half, seed=1)])
    found = paired_difference(a, b, resamples=4000)
    assert found.difference == pytest.approx(0.1) and (found.a_only, found.b_only) == (20, 0)
    assert found.lo < 0.03 and found.hi > 0.17
    assert found.p_value == pytest.approx(0.5**20)  # 20 points, all one way: the sign-flip mid-p


def test_the_same_points_in_every_seed_are_not_counted_as_new_evidence():
    """Three seeds that agree, 4 points only A gets right: pooling the (seed, point) pairs would see
    12 discordant pairs all one way (McNemar mid-p 0.5^12, 'p<0.001'); the points are 4, and 4 of 4
    one way has mid-p 2/16 - 1/16 = 0.0625, exactly one seed's McNemar mid-p."""
    a_right, b_right = [1] * 4 + [1] * 30 + [0] * 30, [0] * 4 + [1] * 30 + [0] * 30
    a = pd.concat([outcomes(a_right, seed=s) for s in range(3)])
    b = pd.concat([outcomes(b_right, seed=s) for s in range(3)])
    found = paired_difference(a, b)
    assert found.p_value == pytest.approx(1 / 16)
    assert found.p_value == pytest.approx(paired_difference(outcomes(a_right), outcomes(b_right)).p_value)
    assert (found.a_only, found.b_only, found.points, found.seeds) == (4, 0, 64, 3)


def test_only_points_and_seeds_both_evaluated_are_compared():
    a = pd.concat([outcomes([1] * 100, seed=0), outcomes([1] * 100, seed=1)])
    b = outcomes([0] * 50, seed=0)  # AutoAttack on the first 50 points, for seed 0 only
    found = paired_difference(a, b)
    assert (found.points, found.seeds, found.difference, found.a_only) == (50, 1, 1.0, 50)
    with pytest.raises(ValueError, match="no test point"):
        paired_difference(outcomes([1] * 10, index=range(10)), outcomes([1] * 10, index=range(10, 20)))
    with pytest.raises(ValueError, match="twice"):
        paired_difference(pd.concat([outcomes([1]), outcomes([0])]), outcomes([1]))


def test_the_interval_is_reproducible_from_its_seed():
    rng = np.random.default_rng(3)
    a = pd.concat([outcomes(rng.integers(0, 2, 300), seed=s) for s in range(3)])
    b = pd.concat([outcomes(rng.integers(0, 2, 300), seed=s) for s in range(3)])
    assert paired_difference(a, b, seed=7) == paired_difference(a, b, seed=7)
    assert paired_difference(a, b, seed=7).lo != paired_difference(a, b, seed=8).lo


def test_the_star_needs_the_interval_and_the_holm_adjusted_p():
    """One rule: `significant` when the interval excludes 0 AND the Holm-adjusted p < 0.05."""
    a, b = outcomes([1] * 4 + [0] * 96), outcomes([0] * 100)
    four = paired_difference(a, b)  # 4 points, all one way: Tango's interval excludes 0, mid-p 0.0625
    assert four.excludes_zero and four.p_value == pytest.approx(0.0625)
    many = paired_difference(outcomes([1] * 12 + [0] * 88), outcomes([0] * 100))  # 12:0, mid-p 0.5^12
    compared = pd.DataFrame(
        [
            {"config_hashes": "four", "x_diff": four.difference, "x_lo": four.lo, "x_hi": four.hi, "x_p": four.p_value},
            {"config_hashes": "many", "x_diff": many.difference, "x_lo": many.lo, "x_hi": many.hi, "x_p": many.p_value},
            {"config_hashes": "ref", "x_diff": math.nan, "x_lo": math.nan, "x_hi": math.nan, "x_p": math.nan},
            # p small but the interval crosses 0 (a seed bootstrap can): never starred either
            {"config_hashes": "wide", "x_diff": 0.05, "x_lo": -0.01, "x_hi": 0.11, "x_p": 0.001},
        ]
    )
    adjusted = adjust_family(compared, ["x"]).set_index("config_hashes")
    # Holm over the 3 p-values present: 0.5^12 * 3, then max(that, 0.001 * 2), then 0.0625 * 1.
    assert adjusted.loc["many", "x_p_adjusted"] == pytest.approx(3 * 0.5**12)
    assert adjusted.loc["wide", "x_p_adjusted"] == pytest.approx(0.002)
    assert adjusted.loc["four", "x_p_adjusted"] == pytest.approx(0.0625)
    assert adjusted.loc["many", "x_significant"]
    assert not adjusted.loc["four", "x_significant"]  # the interval excludes 0, but p = 0.0625
    assert not adjusted.loc["wide", "x_significant"]  # p small, but the interval crosses 0
    assert pd.isna(adjusted.loc["ref", "x_significant"])  # no comparison, not counted by Holm


# --- a sweep's rows against a reference --------------------------------------------------------

POINTS = 120


def _store_with_examples(tmp_path, provenance=lambda kind, seed: {}):
    """Vanilla and CRoPD (lambda 10), clean and robust heads, two seeds; per-example outcomes
    built so that CRoPD beats Vanilla under PGD-20 by exactly 30 points (robust heads) and
    10 points (clean heads) on every seed, and ties on natural accuracy. `provenance(kind, seed)`:
    the foundation digest and compute columns of those rows."""
    sweep_dir = tmp_path / "hand"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text("{}")
    robust_right = {
        ("vanilla", "clean"): 30,
        ("cropd", "clean"): 42,
        ("vanilla", "robust"): 40,
        ("cropd", "robust"): 76,
    }
    minute = 0
    for seed in (0, 1):
        for (kind, head), pgd_right in robust_right.items():
            key = add_trial(
                sweep_dir,
                kind=kind,
                lam=10 if kind == "cropd" else None,
                seed=seed,
                head=head,
                natural=0.9,
                pgd20=pgd_right / POINTS,
                minute=minute,
                extra_metrics=provenance(kind, seed),
            )
            minute += 1
            natural = [True] * 108 + [False] * 12
            pgd = [True] * pgd_right + [False] * (POINTS - pgd_right)
            write_examples(
                sweep_dir,
                key,
                {"index": list(range(POINTS)), "label": [0] * POINTS, "correct": {"natural": natural, "pgd20": pgd}},
                {"sweep": "hand", "trial_id": f"t-{key[:6]}", "config_hash": key},
            )
    return sweep_dir


def test_each_configuration_is_compared_with_the_reference_of_its_own_head(tmp_path):
    from orchestrator.analysis.frames import finished_trials, load_examples

    store = _store_with_examples(tmp_path)
    trials = finished_trials(store)
    examples = load_examples(store, trials["config_hash"])
    assert len(examples) == 8 * 2 * POINTS and set(examples["attack"]) == {"natural", "pgd20"}
    compared = compare_to_reference(trials, examples, {"preprocessor.kind": "vanilla"}, ["natural", "pgd20"])
    kinds = trials.set_index("config_hash")[["preprocessor.kind", "head.mode"]]
    for _, row in compared.iterrows():
        kind, head = kinds.loc[row["config_hashes"].split(",")[0]]
        if kind == "vanilla":
            assert row["reference"] == "self"
            continue
        reference_kind, reference_head = kinds.loc[row["reference"].split(",")[0]]
        assert (reference_kind, reference_head) == ("vanilla", head)
        expected = 0.30 if head == "robust" else 0.10
        assert (
            row["pgd20_diff"] == pytest.approx(expected) and row["pgd20_seeds"] == 2 and row["pgd20_points"] == POINTS
        )
        # Both seeds differ on the same points: the points are the unit, 36 (or 12) of them all one
        # way, sign-flip mid-p 0.5^36 (0.5^12), not the pooled pairs' 0.5^72.
        assert row["pgd20_p"] == pytest.approx(0.5 ** round(expected * POINTS))
        assert (row["pgd20_a_only"], row["pgd20_b_only"], row["pgd20_method"]) == (
            round(expected * POINTS),
            0,
            SEEDS_METHOD,
        )
        assert row["natural_diff"] == 0 and row["natural_p"] == 1 and not row["natural_significant"]
        # Holm over the table's 4 comparisons (2 rows x 2 attacks): 0.5^36 x 4, 0.5^12 x 3, then the 1s.
        assert row["pgd20_p_adjusted"] == pytest.approx((4 if head == "robust" else 3) * row["pgd20_p"])
        assert row["pgd20_significant"] and row["natural_p_adjusted"] == 1


def test_report_prints_the_paired_differences_and_takes_another_reference(tmp_path, capsys):
    store = _store_with_examples(tmp_path)
    assert main(["report", str(store)]) == 0
    out = capsys.readouterr().out
    assert "Paired differences against vanilla" in out
    assert "+30.0 [" in out and "36:0 p<0.001 (Holm <0.001) *" in out and "reference" in out
    assert "+0.0 [+0.0, +0.0] 0:0 p=1.000 (Holm 1.000) (" in out  # natural: a tie, never starred
    assert "the family of all 4 comparisons in this table" in out and "sign-flip" in out
    assert (
        main(
            ["report", str(store), "--compare-to", "preprocessor.kind=cropd,preprocessor.lambda=10", "--format", "csv"]
        )
        == 0
    )
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    vanilla_robust = table[(table["preprocessor.kind"] == "vanilla") & (table["head.mode"] == "robust")].iloc[0]
    assert vanilla_robust["vs_cropd_preprocessor.lambda_10_pgd20_diff"] == pytest.approx(-0.30)
    assert vanilla_robust["vs_cropd_preprocessor.lambda_10_pgd20_b_only"] == 36
    assert vanilla_robust["vs_cropd_preprocessor.lambda_10_pgd20_significant"]
    assert vanilla_robust["vs_cropd_preprocessor.lambda_10_pgd20_p_adjusted"] == pytest.approx(4 * 0.5**36)
    assert main(["report", str(store), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    (vanilla,) = document["comparisons"]
    assert (vanilla["adjustment"], vanilla["family"]) == ("holm", 4)
    cells = [row["metrics"]["acc_pgd20"] for row in vanilla["rows"] if row["metrics"]["acc_pgd20"]]
    assert {(cell["a_only"], cell["b_only"], cell["significant"], cell["method"]) for cell in cells} == {
        (36, 0, True, SEEDS_METHOD),
        (12, 0, True, SEEDS_METHOD),
    }
    assert main(["report", str(store), "--compare-to", "none"]) == 0
    assert "Paired differences" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "reference, message",
    [
        ("arae", "no finished configuration has arae"),
        ("preprocessor.tau=1", "no setting 'preprocessor.tau'"),
        ("preprocessor.lambda", "no finished configuration"),
        ("kind=", "is not setting=value"),
        # Columns of every row that are not settings: once a KeyError traceback.
        ("seed=0", "seed is not a setting that tells configurations apart"),
        ("sweep=paired", "sweep is not a setting that tells configurations apart"),
    ],
)
def test_a_bad_reference_is_one_line_and_exit_2(tmp_path, capsys, reference, message):
    store = _store_with_examples(tmp_path)
    assert main(["report", str(store), "--compare-to", reference]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_a_sweep_without_per_example_outcomes_still_reports_and_says_why_there_is_no_comparison(tmp_path, capsys):
    store = _store_with_examples(tmp_path)
    for path in examples_path(store, "x").parent.glob("*.parquet"):
        path.unlink()
    assert main(["report", str(store)]) == 0
    captured = capsys.readouterr()
    assert "Paired differences" not in captured.out and "no per-example outcomes" in captured.err


# --- rows on different foundations or compute ----------------------------------------------------


def _machine(digest: str, capability: str = "AVX512") -> dict:
    return {"foundation_digest": digest, "device_name": "cpu", "cpu_capability": capability}


def test_a_report_refuses_seeds_of_one_configuration_on_two_foundations(tmp_path, capsys):
    """Seed 1 ran where the embedded foundation was built again, on another CPU: another model."""
    store = _store_with_examples(tmp_path, lambda kind, seed: _machine("aaaa" if seed == 0 else "bbbb"))
    assert main(["report", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert "one configuration but 2 foundations (weights digests aaaa, bbbb)" in err and "\n" not in err


def test_a_paired_difference_across_two_foundations_is_refused(tmp_path, capsys):
    store = _store_with_examples(tmp_path, lambda kind, seed: _machine("aaaa" if kind == "vanilla" else "bbbb"))
    assert main(["report", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("orchestrator: error: --compare-to: trial ") and "would measure the foundations" in err
    assert "\n" not in err
    # Without a comparison the table itself is fine: every configuration has one foundation.
    assert main(["report", str(store), "--compare-to", "none"]) == 0


def test_rows_from_different_cpus_report_with_a_warning(tmp_path, capsys):
    store = _store_with_examples(tmp_path, lambda kind, seed: _machine("aaaa", "AVX512" if seed == 0 else "AVX2"))
    assert main(["report", str(store)]) == 0
    captured = capsys.readouterr()
    assert "Paired differences against vanilla" in captured.out
    assert "rows come from different compute" in captured.err
    assert "cpu AVX512" in captured.err and "cpu AVX2" in captured.err
    (tmp_path / "same").mkdir()
    same = _store_with_examples(tmp_path / "same", lambda kind, seed: _machine("aaaa"))
    assert main(["report", str(same)]) == 0
    assert "different compute" not in capsys.readouterr().err


def test_a_setting_left_out_at_its_default_pairs_with_its_own_twin_not_every_value(tmp_path, capsys):
    """An unmasked trial's config leaves foundation.mask_ratio out (0, its default: hashes stay); read
    back as null it would agree with 0.75 too, and CRoPD masked would have two Vanilla twins."""
    sweep_dir = tmp_path / "masking"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text("{}")
    right = {("vanilla", None): 30, ("cropd", None): 60, ("vanilla", 0.75): 80, ("cropd", 0.75): 84}
    for minute, ((kind, mask), count) in enumerate(right.items()):
        key = add_trial(
            sweep_dir,
            kind=kind,
            lam=10 if kind == "cropd" else None,
            natural=0.9,
            pgd20=count / POINTS,
            minute=minute,
            foundation={"name": "embedded", **({"mask_ratio": mask} if mask is not None else {})},
        )
        write_examples(
            sweep_dir,
            key,
            {
                "index": list(range(POINTS)),
                "label": [0] * POINTS,
                "correct": {"natural": [True] * POINTS, "pgd20": [True] * count + [False] * (POINTS - count)},
            },
            {"sweep": "hand", "trial_id": f"t-{key[:6]}", "config_hash": key},
        )
    assert main(["report", str(sweep_dir), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert sorted(table["foundation.mask_ratio"]) == [0, 0, 0.75, 0.75]  # the default, not null
    cropd = table[table["preprocessor.kind"] == "cropd"].set_index("foundation.mask_ratio")
    assert cropd.loc[0, "vs_vanilla_pgd20_diff"] == pytest.approx(0.25)
    assert cropd.loc[0.75, "vs_vanilla_pgd20_diff"] == pytest.approx(4 / POINTS)
