"""Which configuration a table calls "best": chosen on the validation split, never on the test set,
and never one whose evaluation raised an integrity flag.

A test column's best row is the configuration whose validation twin (acc_pgd20 -> val_acc_pgd20,
the same attack on the validation split, trainables/schema/results.py) has the highest mean over
its seeds; its test number is then only reported. A flagged row (its robust numbers may not be
robustness: a stalled attack, a pipeline that answers one class) is never best, in a report or a
Pareto front. A column whose twin the sweep did not measure (AutoAttack, which the validation split
is not attacked with by default; trials from before validation splits) has no best row.
"""

from __future__ import annotations

import math

import pandas as pd

from trainables.schema.results import validation_twin


def flagged(table: pd.DataFrame) -> pd.Series:
    """Per row: whether any of its trials raised an integrity flag."""
    flags = table.get("integrity_flags", pd.Series(None, index=table.index, dtype=object))
    return flags.fillna("").astype(str).str.len() > 0


def validation_means(table: pd.DataFrame, trials: pd.DataFrame, column: str) -> pd.Series:
    """Per table row (a configuration): the mean over its trials of `column` (a validation metric), NaN if none."""
    if column not in trials:
        return pd.Series(math.nan, index=table.index)
    by_hash = trials.set_index("config_hash")[column]
    by_hash = by_hash[~by_hash.index.duplicated()]
    return table["config_hashes"].map(
        lambda hashes: pd.to_numeric(by_hash.reindex(str(hashes).split(",")), errors="coerce").mean()
    )


def best_rows(table: pd.DataFrame, trials: pd.DataFrame, metrics: list[str]) -> dict[str, pd.Series]:
    """Per test metric, a boolean per row: the unflagged configuration(s) best on the validation twin
    (ties all marked); all False where the twin was not measured, where fewer than two unflagged
    configurations measured it, or where they all tie."""
    clean = ~flagged(table)
    best = {}
    for metric in metrics:
        twin = validation_twin(metric)
        means = validation_means(table, trials, twin) if twin else pd.Series(math.nan, index=table.index)
        eligible = means.where(clean)
        # A choice needs a choice: no bold with one candidate, nor where every candidate ties (a
        # partial report once bolded 0.0 +- 0.0 in every row).
        chosen = eligible.notna().sum() >= 2 and eligible.nunique() > 1
        best[metric] = (eligible == eligible.max()) & eligible.notna() & chosen
    return best


def selection_note(table: pd.DataFrame, trials: pd.DataFrame, metrics: list[str], labels: dict[str, str]) -> str:
    """The sentence under a table saying how its bold rows were chosen (and which columns have none)."""
    unmeasured = [
        labels.get(m, m)
        for m in metrics
        if not (validation_twin(m) and validation_means(table, trials, validation_twin(m)).notna().any())
    ]
    if len(unmeasured) == len(metrics):
        return "No row in bold: these trials have no validation metrics to select on (only test metrics)."
    note = (
        "Bold: per column the configuration best on the validation split (the same attack on held-out "
        "training images), never selected on test numbers"
    )
    if flagged(table).any():
        note += "; rows with integrity flags are never bold (their robust accuracy may not be robustness)"
    if unmeasured:
        note += f"; no bold in {', '.join(unmeasured)} (not measured on the validation split)"
    return note + "; none where fewer than two configurations compete or all tie."
