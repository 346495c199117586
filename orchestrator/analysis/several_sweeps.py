"""Results of several sweeps as one frame: `orchestrator report S1 S2 …` and render_report([...]).

Each sweep's finished trials are read from its own folder and stacked; `sweep` (every row's
sweep name) then tells configurations apart like a setting (frames.config_columns), so two
sweeps that ran the same settings give two rows. A config hash names a configuration, not a
sweep (the same Identity trial in two sweeps has one hash), so in the stacked frame each hash is
qualified by its sweep (`embedded_table1/3f2a…`) and the per-example outcomes are qualified alike.

`settings_of_sweeps` names the settings that tell the sweeps apart (one value per sweep, other
values in other sweeps): a comparison against another sweep (`--compare-to sweep=NAME`) pairs
each row with the row of that sweep that agrees on every setting but those (paired.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from trainables.errors import UserError

SEPARATOR = "/"  # between a sweep's name and a config hash in a stacked frame


def finished_trials_of(targets: Sequence[Path], *, where: str | None = None) -> pd.DataFrame:
    """The finished trials of every target (sweep folders, specs or results folders) in one frame.

    One target: its frame as frames.finished_trials gives it. Several: stacked, each config hash
    qualified by its sweep; a sweep given twice (or two folders of one sweep name) is refused.
    """
    from orchestrator.analysis.frames import finished_trials

    targets = [Path(target) for target in targets]
    if len(targets) == 1:
        return finished_trials(targets[0], where=where)
    frames, owner = [], {}
    for target in targets:
        frame = finished_trials(target, where=where)
        for name in dict.fromkeys(frame["sweep"]):
            if name in owner:
                raise UserError(
                    f"{target}: holds sweep {name!r}, as {owner[name]} does; give each sweep once "
                    "(or rename one: the sweep column tells them apart)"
                )
            owner[name] = target
        frames.append(frame.assign(config_hash=frame["sweep"] + SEPARATOR + frame["config_hash"]))
    return pd.concat(frames, ignore_index=True)


def examples_of(targets: Sequence[Path], trials: pd.DataFrame) -> pd.DataFrame:
    """The per-example outcomes of `trials` (frames.load_examples), from each target's own folder,
    their config hashes qualified as in finished_trials_of when there are several targets."""
    from orchestrator.analysis.frames import load, load_examples

    targets = [Path(target) for target in targets]
    if len(targets) == 1:
        return load_examples(targets[0], trials["config_hash"])
    qualified = trials["config_hash"].str.partition(SEPARATOR)
    frames = []
    for target in targets:
        # The sweeps this folder holds: its rows' names, read back from the folder itself.
        names = set(load(target, finished_only=False)["sweep"])
        mine = qualified[qualified[0].isin(names)]
        examples = load_examples(target, mine[2])
        sweep_of = dict(zip(mine[2], mine[0]))
        frames.append(
            examples.assign(config_hash=examples["config_hash"].map(sweep_of) + SEPARATOR + examples["config_hash"])
        )
    return pd.concat(frames, ignore_index=True)


def settings_of_sweeps(trials: pd.DataFrame, settings: Sequence[str]) -> list[str]:
    """Among `settings`, those that tell the sweeps apart: one value (nulls aside) within each
    sweep, and not the same value in all of them (`combine: masked` against `average`)."""
    if "sweep" not in trials or trials["sweep"].nunique() < 2:
        return []
    found = []
    for column in settings:
        if column == "sweep" or column not in trials:
            continue
        values = trials[column].astype("string")
        per_sweep = values.groupby(trials["sweep"]).nunique(dropna=True)
        if (per_sweep <= 1).all() and values.nunique(dropna=True) > 1:
            found.append(column)
    return found


def describe_differences(trials: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """What each of `columns` (settings_of_sweeps') is in each sweep, readably: a mapping stored
    as JSON (an inline architecture) by the keys inside it that differ,
    e.g. 'preprocessor.arch.combine: average (embedded_table1), masked (embedded_table1_masked)'."""
    from orchestrator.analysis.frames import expand_mappings

    described = []
    for column in columns:
        expanded, parts = expand_mappings(trials[["sweep", column]], [column])
        for part in parts.get(column, [column]):
            per_sweep = expanded.dropna(subset=[part]).groupby("sweep", sort=False)[part].first()
            if per_sweep.astype("string").nunique() > 1:
                described.append(f"{part}: " + ", ".join(f"{value} ({name})" for name, value in per_sweep.items()))
    return described
