"""Paired comparisons on hand-built per-example tables with known answers, and in the report.

McNemar's p-values are checked against the exact binomial formula, differences against hand
counts, and the bootstrap interval against its normal approximation.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from store_helpers import add_trial

from orchestrator import paired_difference
from orchestrator.analysis.paired import compare_to_reference
from orchestrator.cli.app import main
from orchestrator.store.parquet import examples_path, write_examples


def outcomes(correct, seed=None, index=None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"index": index if index is not None else range(len(correct)), "correct": [bool(c) for c in correct]}
    )
    return frame if seed is None else frame.assign(seed=seed)


def test_identical_outcomes_differ_by_exactly_zero():
    a = outcomes([1, 0, 1, 1, 0] * 20)
    found = paired_difference(a, a.copy())
    assert (found.difference, found.lo, found.hi, found.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert (found.a_only, found.b_only, found.points, found.seeds) == (0, 0, 100, 1) and not found.excludes_zero


def test_a_dominating_b_gives_the_exact_mcnemar_p_and_a_normal_sized_interval():
    a, b = outcomes([1] * 100), outcomes([1] * 60 + [0] * 40)
    found = paired_difference(a, b, resamples=4000)
    assert found.difference == pytest.approx(0.4) and (found.a_only, found.b_only) == (40, 0)
    assert found.p_value == pytest.approx(2 * 0.5**40)  # two-sided exact binomial, k = 0 of 40
    half = 1.96 * math.sqrt(0.4 * 0.6 / 100)  # the differences are 0/1 here: a proportion's interval
    assert found.lo == pytest.approx(0.4 - half, abs=0.02) and found.hi == pytest.approx(0.4 + half, abs=0.02)
    assert found.excludes_zero
    reverse = paired_difference(b, a, resamples=4000)
    assert reverse.difference == pytest.approx(-0.4) and reverse.p_value == found.p_value and reverse.excludes_zero


def test_mcnemar_counts_only_discordant_points():
    # 5 points only A gets right, 1 only B, 94 concordant: p = P(X <= 1 or X >= 5 | n=6, 1/2) = 14/64.
    a = outcomes([1] * 5 + [0] + [1] * 50 + [0] * 44)
    b = outcomes([0] * 5 + [1] + [1] * 50 + [0] * 44)
    found = paired_difference(a, b)
    assert (found.a_only, found.b_only) == (5, 1)
    assert found.p_value == pytest.approx(14 / 64)
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
    assert found.p_value == pytest.approx(2 * 0.5**12)


def test_seeds_pair_with_their_own_seed_and_are_resampled():
    # Seed 0 of A equals seed 0 of B, seed 1 equals seed 1: nothing differs. Paired across seeds
    # (A seed 0 with B seed 1) they would differ on 50 points.
    half = [1] * 50 + [0] * 50
    a = pd.concat([outcomes(half, seed=0), outcomes([1] * 100, seed=1)])
    b = pd.concat([outcomes(half, seed=0), outcomes([1] * 100, seed=1)])
    found = paired_difference(a, b)
    assert (found.difference, found.lo, found.hi, found.p_value, found.seeds) == (0.0, 0.0, 0.0, 1.0, 2)
    # Now seed 0 differs by 0.2 and seed 1 by 0: mean 0.1, and the seed draw {1, 1} alone gives 0,
    # so with seeds resampled the interval reaches down to (about) 0 and up to (about) 0.2.
    b0 = [1] * 30 + [0] * 70
    a = pd.concat([outcomes([1] * 50 + [0] * 50, seed=0), outcomes(half, seed=1)])
    b = pd.concat([outcomes(b0, seed=0), outcomes(half, seed=1)])
    found = paired_difference(a, b, resamples=4000)
    assert found.difference == pytest.approx(0.1) and (found.a_only, found.b_only) == (20, 0)
    assert found.lo < 0.03 and found.hi > 0.17


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
    a, b = outcomes(rng.integers(0, 2, 300)), outcomes(rng.integers(0, 2, 300))
    assert paired_difference(a, b, seed=7) == paired_difference(a, b, seed=7)


# --- a sweep's rows against a reference --------------------------------------------------------

POINTS = 120


def _store_with_examples(tmp_path):
    """Vanilla and CRoPD (lambda 10), clean and robust heads, two seeds; per-example outcomes
    built so that CRoPD beats Vanilla under PGD-20 by exactly 30 points (robust heads) and
    10 points (clean heads) on every seed, and ties on natural accuracy."""
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
        assert row["pgd20_p"] == pytest.approx(2 * 0.5 ** round(2 * expected * POINTS))
        assert row["natural_diff"] == 0 and row["natural_p"] == 1


def test_report_prints_the_paired_differences_and_takes_another_reference(tmp_path, capsys):
    store = _store_with_examples(tmp_path)
    assert main(["report", str(store)]) == 0
    out = capsys.readouterr().out
    assert "Paired differences against vanilla" in out
    assert "+30.0 [" in out and "p<0.001 *" in out and "reference" in out
    assert (
        main(
            ["report", str(store), "--compare-to", "preprocessor.kind=cropd,preprocessor.lambda=10", "--format", "csv"]
        )
        == 0
    )
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    vanilla_robust = table[(table["preprocessor.kind"] == "vanilla") & (table["head.mode"] == "robust")].iloc[0]
    assert vanilla_robust["vs_cropd_preprocessor.lambda_10_pgd20_diff"] == pytest.approx(-0.30)
    assert main(["report", str(store), "--compare-to", "none"]) == 0
    assert "Paired differences" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "reference, message",
    [
        ("arae", "no finished configuration has arae"),
        ("preprocessor.tau=1", "no setting 'preprocessor.tau'"),
        ("preprocessor.lambda", "no finished configuration"),
        ("kind=", "is not setting=value"),
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
