"""Bold in a report is a choice on the validation split: none with one candidate, none where all tie."""

from __future__ import annotations

import pandas as pd

from orchestrator.analysis.selection import best_rows


def _table(values: dict[str, float | None], flags: dict[str, str] | None = None):
    table = pd.DataFrame(
        {
            "config_hashes": list(values),
            "integrity_flags": [(flags or {}).get(key) for key in values],
        }
    )
    trials = pd.DataFrame({"config_hash": list(values), "val_acc_pgd20": list(values.values())})
    return table, trials


def test_the_best_on_validation_is_bold_and_ties_at_the_top_are_all_bold():
    table, trials = _table({"a": 0.2, "b": 0.5, "c": 0.5})
    assert best_rows(table, trials, ["acc_pgd20"])["acc_pgd20"].tolist() == [False, True, True]


def test_one_candidate_or_all_tied_is_no_choice_and_gets_no_bold():
    for values in ({"a": 0.4}, {"a": 0.0, "b": 0.0, "c": 0.0}, {"a": 0.3, "b": None}):
        table, trials = _table(values)
        assert not best_rows(table, trials, ["acc_pgd20"])["acc_pgd20"].any(), values
    # A flagged row does not compete: the other one alone is no choice either.
    table, trials = _table({"a": 0.9, "b": 0.1}, {"a": "stalled_attack"})
    assert not best_rows(table, trials, ["acc_pgd20"])["acc_pgd20"].any()
