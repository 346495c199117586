"""Which rows a report may put together: one foundation per comparison, and a warning across compute.

Every trial row records the digest of the foundation weights it used and what computed it
(trainables/provenance.py). An embedded foundation pre-trained on two CPUs is two models, so rows
of one configuration on two foundations are not seeds of one experiment, and a paired difference
between rows on two foundations measures the foundations: both are refused in one line. Rows from
different hardware or torch versions are allowed (a cluster mixes nodes) but said, since CPU
float results depend on the instruction set.
"""

from __future__ import annotations

import sys

import pandas as pd

from trainables.errors import UserError

DIGEST = "foundation_digest"
COMPUTE_COLUMNS = ("device_name", "cpu_capability", "version.torch")


def digests(trials: pd.DataFrame) -> list[str]:
    """The foundation digests of `trials`, in first-seen order (rows from before digests: none)."""
    if DIGEST not in trials.columns:
        return []
    return list(dict.fromkeys(trials[DIGEST].dropna().astype(str)))


def check_one_foundation_per_configuration(trials: pd.DataFrame, groups) -> None:
    """Refuse when the rows of one configuration (`groups`: frames.configurations) used more than
    one foundation: their mean and interval would mix two models."""
    for _, index in groups:
        found = digests(trials.loc[index])
        if len(found) > 1:
            hashes = ", ".join(trials.loc[index, "config_hash"].astype(str))
            raise UserError(
                f"report: the trials {hashes} have one configuration but {len(found)} foundations "
                f"(weights digests {', '.join(found)}): an embedded foundation built on another machine is "
                "another model; report them apart (--where \"foundation_digest = '...'\")"
            )


def check_same_foundation(row: pd.DataFrame, reference: pd.DataFrame, selector: dict) -> None:
    """Refuse to pair `row` with `reference` when their foundations differ and the comparison is
    not about the foundation (no `foundation.*` setting in `selector`)."""
    if any(str(key).startswith("foundation") for key in selector):
        return
    mine, theirs = digests(row), digests(reference)
    if mine and theirs and mine != theirs:
        raise UserError(
            f"--compare-to: trial {row['config_hash'].iloc[0]} used foundation {', '.join(mine)} and its "
            f"reference {reference['config_hash'].iloc[0]} used {', '.join(theirs)}: a paired difference "
            "would measure the foundations; run both on one foundation"
        )


def compute_note(trials: pd.DataFrame) -> str | None:
    """A one-line warning when `trials` come from more than one kind of compute, else None."""
    columns = [column for column in COMPUTE_COLUMNS if column in trials.columns]
    if not columns:
        return None
    kinds = trials[columns].astype("string").fillna("?").agg(" ".join, axis=1).value_counts(sort=False)
    if len(kinds) < 2:
        return None
    listed = "; ".join(f"{kind} ({count} rows)" for kind, count in kinds.items())
    return (
        f"warning: these rows come from different compute ({' '.join(columns)}): {listed}; CPU results "
        "depend on the instruction set and the torch version, so differences between them may be the hardware's"
    )


def warn_about_compute(trials: pd.DataFrame) -> None:
    note = compute_note(trials)
    if note is not None:
        print(f"orchestrator: {note}", file=sys.stderr)
