"""A sweep's results for analysis: finished trials, means over seeds, Pareto fronts.

Reads only the Parquet files under results/ (no Ray, Optuna or torch), so it works on a copy of
results/ on a laptop, and on a sweep still running (on the trials finished so far).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.spec.target import results_dir_of
from orchestrator.store.query import add_examples_view, connect_results, first_line
from orchestrator.store.rows import SEED_COLUMNS, TERMINATED, is_setting
from orchestrator.store.safe_query import locked_connection
from trainables.errors import UserError
from trainables.schema.results import ACCURACY_NAMES, HEADLINE_METRICS, accuracy_column, count_column
from trainables.statistics import seed_mean_interval, wilson_interval

# Columns that identify a row or describe its run rather than measure it.
IDENTITY_COLUMNS = (
    "sweep",
    "trial_id",
    "config_hash",
    "status",
    "error",
    "started_at",
    "finished_at",
    "git_revision",
    "torch_threads",
    "foundation_digest",
    "device_name",
    "cpu_capability",
)


def load(target: Path, *, where: str | None = None, finished_only: bool = True) -> pd.DataFrame:
    """A sweep's trial rows as a pandas DataFrame, oldest first: the notebook entry point.

    `target` is a sweep directory, a spec file, or a results folder. `where` is a DuckDB
    condition on the `trials` table (quote dotted names: '"preprocessor.lambda" >= 1').
    """
    return with_omitted_defaults(frame_of(relation(target, where=where, finished_only=finished_only)))


def with_omitted_defaults(trials: pd.DataFrame) -> pd.DataFrame:
    """`trials` with the settings a config leaves out at their default (omit_when_default, so older
    trials keep their hashes) filled in with that default where some rows set them.

    Otherwise an unmasked trial's `foundation.mask_ratio` reads null, and null agrees with any
    value when a comparison looks for a row's twin (paired.py): mask ratio 0 and 0.75 would both be
    the twin of a row. Only scalar defaults: a null default (lora, an optimizer) stays null.
    """
    from trainables.schema.evaluation import EVALUATION_SCHEMA
    from trainables.schema.foundation import FOUNDATION_SCHEMA

    for section, schema in (("foundation", FOUNDATION_SCHEMA), ("evaluation", EVALUATION_SCHEMA)):
        for key, field in schema.items():
            column = f"{section}.{key}"
            if field.omit_when_default and isinstance(field.default, (int, float)) and column in trials.columns:
                trials[column] = trials[column].fillna(field.default)
    return trials


def relation(target: Path, sql: str | None = None, *, where: str | None = None, finished_only: bool = True):
    """The same rows as a DuckDB relation (or any `sql` over the tables `trials` and `epochs`)."""
    import duckdb

    # A user's --where runs where it can read no file and write none (safe_query.py).
    connection = connect_results(results_dir_of(target)) if where is None else locked_connection(results_dir_of(target))
    if sql is None:
        conditions = [f"status = '{TERMINATED}'"] if finished_only else []
        if where is not None:
            if not where.strip():
                raise UserError("--where: the condition is empty")
            conditions.append(f"({where})")
        sql = (
            "SELECT * FROM trials"
            + (" WHERE " + " AND ".join(conditions) if conditions else "")
            + " ORDER BY started_at"
        )
    try:
        return connection.sql(sql)
    except duckdb.Error as err:
        option = f"--where {where!r}" if where is not None else "--sql"
        raise UserError(f"{option}: {first_line(err)}") from None


def frame_of(rel, option: str = "--where") -> pd.DataFrame:
    import duckdb

    try:
        return rel.to_arrow_table().to_pandas()
    except duckdb.Error as err:  # some errors (a bad cast in --where) only show when rows are read
        raise UserError(f"{option}: {first_line(err)}") from None


def finished_trials(target: Path, *, where: str | None = None) -> pd.DataFrame:
    """The finished trials, or a UserError saying there are none (yet, or under `where`)."""
    trials = load(target, where=where)
    if trials.empty:
        everything = load(target, finished_only=False)
        finished = int((everything["status"] == TERMINATED).sum()) if len(everything) else 0
        if where is not None and finished:
            raise UserError(f"--where: none of the {finished} finished trials matches {where!r}")
        raise UserError(f"{target}: no finished trials yet ({len(everything)} results rows, none {TERMINATED})")
    return trials


def load_examples(target: Path, config_hashes) -> pd.DataFrame:
    """The per-example outcomes (config_hash, attack, index, label, correct) of the given trials."""
    import duckdb

    hashes = sorted(set(config_hashes))
    # Only the examples view: the trials and epochs tables connect_results reads are not needed here.
    connection = duckdb.connect()
    add_examples_view(connection, results_dir_of(target))
    if not hashes:
        return frame_of(connection.sql("SELECT * FROM examples LIMIT 0"))
    listed = ", ".join("'" + key.replace("'", "''") + "'" for key in hashes)
    return frame_of(
        connection.sql(
            f'SELECT config_hash, attack, "index", label, correct FROM examples WHERE config_hash IN ({listed})'
        )
    )


def metric_columns(trials: pd.DataFrame) -> list[str]:
    """Numeric columns that measure a trial: accuracies, times, parameter counts, bounds aside."""
    return [
        c
        for c in trials.columns
        if not is_setting(c)
        and c not in IDENTITY_COLUMNS
        and not c.startswith(("version.", "n_"))
        and not c.endswith(("_lo", "_hi"))
        and pd.api.types.is_numeric_dtype(trials[c])
        and not pd.api.types.is_bool_dtype(trials[c])
        and trials[c].notna().any()
    ]


def check_metric(trials: pd.DataFrame, name: str, option: str) -> str:
    metrics = metric_columns(trials)
    if name not in metrics:
        raise UserError(f"{option}: no metric {name!r} in these results; metrics: {', '.join(metrics)}")
    return name


def present_metrics(trials: pd.DataFrame, names=HEADLINE_METRICS) -> list[str]:
    """The headline accuracies some finished trial measured (AutoAttack often was not asked for)."""
    return [name for name in names if name in trials.columns and trials[name].notna().any()]


# Evaluation settings that say how much was measured, not what: a configuration attacked with
# AutoAttack on one seed only (autoattack_examples 0 on the others), or on fewer points, is still
# one configuration, and its seeds are one row.
MEASUREMENT_EXTENT = (
    "evaluation.attacks",
    "evaluation.n_examples",
    "evaluation.autoattack_examples",
    "evaluation.validation_attacks",
    "evaluation.batch_size",
    "evaluation.bootstrap_resamples",
    "evaluation.integrity",
    "evaluation.verbose",
)


def config_columns(trials: pd.DataFrame) -> list[str]:
    """The settings that identify a configuration: every setting except the training seeds and
    the extent of the measurement (MEASUREMENT_EXTENT); and first the sweep, when the rows come
    from several (several_sweeps.py): the same settings run by two sweeps are two configurations."""
    several = "sweep" in trials.columns and trials["sweep"].nunique() > 1
    return (["sweep"] if several else []) + [
        c for c in trials.columns if is_setting(c) and c not in SEED_COLUMNS and c not in MEASUREMENT_EXTENT
    ]


def configurations(trials: pd.DataFrame) -> list[tuple[dict, pd.Index]]:
    """Each configuration's settings (config_columns) and the index of its trials, in first-seen order."""
    keys = config_columns(trials)
    if not keys:
        return [({}, trials.index)]
    # Group on text so that nulls and floats compare as written (1 and 1.0 are one lambda).
    key_text = trials[keys].astype("string").fillna("<null>")
    return [
        ({key: trials.at[index[0], key] for key in keys}, index)
        for _, index in key_text.groupby(keys, dropna=False, sort=False).groups.items()
    ]


def expand_mappings(frame: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """`frame` with each of `columns` that holds mappings as JSON text (an inline architecture:
    `preprocessor.arch`) spread into a column per key (`preprocessor.arch.combine`), so a table
    can show the one key that varies instead of a 200-character blob. Returns the new frame and,
    per spread column, its key columns; other columns are left as they are."""
    import json

    spread: dict[str, list[str]] = {}
    frame = frame.copy()
    for column in columns:
        texts = frame[column].dropna()
        if texts.empty or not all(isinstance(t, str) and t.startswith("{") for t in texts):
            continue
        try:
            parsed = frame[column].map(lambda t: json.loads(t) if isinstance(t, str) else None)
        except ValueError:
            continue
        keys = list(dict.fromkeys(key for mapping in parsed.dropna() for key in mapping))
        for key in keys:
            frame[f"{column}.{key}"] = parsed.map(
                lambda mapping, key=key: _cell(mapping.get(key)) if isinstance(mapping, dict) else None
            )
        spread[column] = [f"{column}.{key}" for key in keys]
    return frame, spread


def _cell(value):
    """A value inside a mapping as a table cell: scalars as they are, lists and mappings as JSON."""
    import json

    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


# Settings that depend on another: results null what a pre-processor kind ignores, a trial
# without robust pre-training (or without a ResNet) has no such settings, and methods and kinds
# bring their own defaults (rocl's PGD-7 against advcl's PGD-5).
OWNERS = {
    "preprocessor.": "preprocessor.kind",
    "foundation.pretraining.": "foundation.pretraining.method",
    "foundation.resnet.": "foundation.name",
}


def varying(trials: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns among `columns` that tell the trials apart.

    A column varies when it takes two values, or when it is null in some trials and not in
    others (an explicit null, like the transfer study's preprocessor_dataset, does vary),
    unless it only follows its owner (OWNERS): one value, null included, per value of the
    owner, as Identity has no lambda and rocl always attacks with 7 steps.
    """
    found = []
    for column in columns:
        values = trials[column].astype("string").fillna("<null>")
        if values.nunique() < 2:
            continue
        owner = next((owner for prefix, owner in OWNERS.items() if column.startswith(prefix) and column != owner), None)
        if (
            owner is not None
            and owner in trials
            and (values.groupby(trials[owner].astype("string").fillna("<null>")).nunique() == 1).all()
        ):
            continue
        found.append(column)
    return found


# acc_pgd20 -> n_pgd20: the points behind each accuracy a results row records.
_COUNT_OF = {accuracy_column(name): count_column(name) for name in ACCURACY_NAMES}
ONE_SEED_INTERVAL = "Wilson"
SEEDS_INTERVAL = "Wilson + t over seeds"


def aggregate_seeds(trials: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per configuration: each metric's mean over seeds with a 95% interval.

    One trial: its Wilson score interval over its test points, from the accuracy and its count
    (`n_<attack>`), else the row's own `_lo` / `_hi`. Several trials: an interval that holds the
    test-point variance as well as the seed variance (trainables.statistics.seed_mean_interval):
    each seed's interval gives the test-point part, which does not shrink with more seeds since
    they share the test points, Student's t over the seed means the seed part, and the two are
    added in quadrature limit by limit. A metric without per-trial intervals (a time) gets the
    seed part alone. Columns: the configuration's settings, `n_seeds`, `interval` ('Wilson' or
    'Wilson + t over seeds'), per metric `<m>`, `<m>_lo`, `<m>_hi`, `<m>_half` and `<m>_seeds`
    (how many seeds measured it: AutoAttack may run on one), then `integrity_flags` (every flag
    any seed raised) and `config_hashes`.
    """
    rows = []
    for settings, index in configurations(trials):
        group = trials.loc[index]
        row = dict(settings)
        row["n_seeds"] = len(group)
        row["interval"] = ONE_SEED_INTERVAL if len(group) == 1 else SEEDS_INTERVAL
        for metric in metrics:
            values = group[metric].dropna()
            mean = float(values.mean()) if len(values) else math.nan
            bounds = [_trial_interval(group, key, metric) for key in values.index]
            low, high = seed_mean_interval(
                values.to_numpy(dtype=float), [lo for lo, _ in bounds], [hi for _, hi in bounds]
            )
            row.update(
                {
                    metric: mean,
                    f"{metric}_lo": low,
                    f"{metric}_hi": high,
                    f"{metric}_half": (high - low) / 2,
                    f"{metric}_seeds": len(values),
                }
            )
        flags = set()
        for value in group.get("integrity_flags", pd.Series(dtype=object)).dropna():
            flags.update(flag for flag in str(value).split(",") if flag)
        row["integrity_flags"] = ",".join(sorted(flags)) or None
        row["config_hashes"] = ",".join(group["config_hash"])
        rows.append(row)
    return pd.DataFrame(rows)


def _trial_interval(group: pd.DataFrame, key, metric: str) -> tuple[float, float]:
    """One trial's interval of `metric`: Wilson's from its count when the row has one and the
    accuracy is a whole number of its points (so rows written before the Wilson interval get it
    too), else the row's recorded bounds, else NaN."""
    count = _COUNT_OF.get(metric)
    if count in group.columns and pd.notna(group.at[key, count]) and int(group.at[key, count]) > 0:
        points = int(group.at[key, count])
        right = float(group.at[key, metric]) * points
        if abs(right - round(right)) < 1e-6:  # else the count is not this accuracy's denominator
            return wilson_interval(round(right), points)
    return tuple(  # type: ignore[return-value]
        float(group.at[key, f"{metric}_{end}"]) if f"{metric}_{end}" in group.columns else math.nan
        for end in ("lo", "hi")
    )


def pareto_mask(x, y, *, maximize: tuple[bool, bool] = (True, True)) -> np.ndarray:
    """True for the points no other point dominates (at least as good in both, better in one).

    Points with a missing coordinate are never on the front; equal points are all on it.
    Sorting by x then y makes this O(n log n), so a 10,000-trial sweep is instant.
    """
    xs = np.asarray(x, dtype=float) * (1 if maximize[0] else -1)
    ys = np.asarray(y, dtype=float) * (1 if maximize[1] else -1)
    on_front = np.zeros(len(xs), dtype=bool)
    valid = np.flatnonzero(~(np.isnan(xs) | np.isnan(ys)))
    order = valid[np.lexsort((-ys[valid], -xs[valid]))]  # best x first, best y first within an x
    best_y_at_larger_x = -math.inf
    start = 0
    while start < len(order):
        end = start
        while end < len(order) and xs[order[end]] == xs[order[start]]:
            end += 1
        same_x = order[start:end]
        top = ys[same_x[0]]
        # Within one x only the highest y survives (ties all survive), and only if no point with
        # a larger x reaches that y.
        if top > best_y_at_larger_x:
            on_front[same_x[ys[same_x] == top]] = True
        best_y_at_larger_x = max(best_y_at_larger_x, top)
        start = end
    return on_front


def pareto_front(trials: pd.DataFrame, x: str, y: str, *, maximize: tuple[bool, bool] = (True, True)) -> pd.DataFrame:
    """The non-dominated rows, best x first."""
    front = trials[pareto_mask(trials[x], trials[y], maximize=maximize)]
    return front.sort_values([x, y], ascending=[not maximize[0], not maximize[1]]).reset_index(drop=True)
