"""The paper-style table of a sweep: one row per configuration, accuracies as mean ± half-interval.

Rows are pre-processor, lambda and head mode (plus any other setting the sweep varied), columns
Natural, the attacks and the worst case in %, the best per column marked (chosen on the validation
split and never a flagged row: selection.py), integrity flags beside a row,
and the number of test points behind each column (AutoAttack often runs on a smaller subset).
The cost view of the same rows is costs.py; Markdown and LaTeX are written by render.py.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import pandas as pd

from orchestrator.analysis.frames import aggregate_seeds, config_columns, expand_mappings, present_metrics, varying
from orchestrator.analysis.paired import ALPHA, attack_of, family_size
from orchestrator.analysis.plain_json import dumps
from orchestrator.analysis.render import html_table, latex, markdown
from orchestrator.analysis.selection import best_rows, selection_note
from trainables.schema.preprocessor import PREPROCESSOR_KINDS
from trainables.schema.results import ACCURACY_NAMES, NATURAL, WORST, accuracy_column, accuracy_label, count_column

FORMATS = ("markdown", "latex", "csv", "json", "html")
# Row order of pre-processor kinds as in the paper's tables (the registry's report_rank); kinds
# not registered (a results copy from a newer version) follow in the order seen.
KIND_ORDER = tuple(sorted(PREPROCESSOR_KINDS, key=lambda name: PREPROCESSOR_KINDS[name].report_rank))
# The paper's row keys, always shown; other settings appear when the sweep varied them.
ROW_KEYS = ("preprocessor.kind", "preprocessor.lambda", "head.mode")
TITLES = {
    "sweep": "Sweep",
    "preprocessor.kind": "Pre-processor",
    "preprocessor.lambda": "λ",
    "head.mode": "Head",
    "head.epochs": "Head epochs",
    "preprocessor.temperature": "τ",
    "data_fraction": "Data fraction",
    "dataset": "Dataset",
    "preprocessor.views": "Views",
    "preprocessor.pseudo_clusters": "K",
    "preprocessor.fft_radius": "r",
    "preprocessor.arch.combine": "Combine",
    "foundation.name": "Foundation",
    "foundation.mode": "Foundation mode",
    "foundation.pretraining.method": "Pre-training",
    "foundation.resnet.width": "Width",
    "foundation.pretraining.lr": "Pre-training lr",
    # the accuracies: "Natural", "PGD-10", ... (trainables/schema/results.py)
    **{accuracy_column(name): accuracy_label(name) for name in ACCURACY_NAMES},
}


def paper_table(trials: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Seed means of the headline accuracies, one row per configuration, in the paper's order.

    Returns the aggregated frame, its row-key columns and its metric columns.
    """
    # The headline robust column, the per-point worst case over every attack run, right after
    # natural accuracy; the paper's per-attack columns follow in table order.
    first = [accuracy_column(NATURAL), accuracy_column(WORST)]
    metrics = sorted(present_metrics(trials), key=lambda m: first.index(m) if m in first else len(first))
    table = aggregate_seeds(trials, metrics)
    keys = [k for k in ("sweep", *ROW_KEYS) if k in table.columns and (k != "sweep" or table[k].nunique() > 1)]
    keys += [k for k in varying(table, config_columns(table)) if k not in keys]
    # A mapping setting (an inline architecture) shows as the keys inside it that vary.
    table, spread = expand_mappings(table, keys)
    keys = [shown for k in keys for shown in ((varying(table, spread[k]) or [k]) if k in spread else [k])]
    # Baselines first, in the paper's order, then the robust pre-processors; then by each key's value.
    seen = [kind for kind in dict.fromkeys(table.get("preprocessor.kind", [])) if kind not in KIND_ORDER]
    rank = {kind: i for i, kind in enumerate([*KIND_ORDER, *seen])}
    sort_keys = [table["preprocessor.kind"].map(rank)] if "preprocessor.kind" in table else []
    if "sweep" in keys:  # several sweeps: each one's rows together, in the order the sweeps were given
        sweep_rank = {name: i for i, name in enumerate(dict.fromkeys(table["sweep"]))}
        sort_keys.insert(0, table["sweep"].map(sweep_rank))
    others = [table[k] for k in keys if k not in ("sweep", "preprocessor.kind")]
    order = pd.DataFrame({f"k{i}": column for i, column in enumerate(sort_keys + others)})
    table = (
        table.loc[order.sort_values(list(order.columns), na_position="first").index] if len(order.columns) else table
    )
    return table.reset_index(drop=True), keys, metrics


def render(
    trials: pd.DataFrame,
    fmt: str,
    comparisons: list[tuple[str, pd.DataFrame]] = (),
    *,
    selected_on_test: bool = False,
) -> str:
    """The table in `fmt`; each of `comparisons` (a reference's name and its frame from
    paired.compare_to_reference) follows it as a table of paired differences (in CSV: columns).
    `selected_on_test`: the sweep's objectives were test metrics (select_on_test), said under the table."""
    table, keys, metrics = paper_table(trials)
    points = points_behind(trials, table, metrics)
    best = best_rows(table, trials, metrics)  # on the validation split, never a flagged row
    if fmt == "csv":
        return _csv(table, keys, metrics, comparisons, points, best)
    if fmt == "json":
        return _json(trials, table, keys, metrics, comparisons, points, best)
    usual = {m: _usual_points(points[m]) for m in metrics}
    flagged = table["integrity_flags"].notna().any()
    header = (
        [TITLES.get(k, k) for k in keys]
        + ["n"]
        + [TITLES[m] for m in metrics]
        + (["Integrity flags"] if flagged else [])
    )
    rows = []  # cells as (text, bold)
    for i, row in table.iterrows():
        cells = [(setting_text(row[k]), False) for k in keys] + [(str(row["n_seeds"]), False)]
        cells += [
            (
                _accuracy_text(
                    row[m], row[f"{m}_half"], row[f"{m}_seeds"], row["n_seeds"], _unusual(points[m][i], usual[m])
                ),
                bool(best[m][i]),
            )
            for m in metrics
        ]
        if flagged:
            cells.append(
                (", ".join(str(row["integrity_flags"]).split(",")) if pd.notna(row["integrity_flags"]) else "", False)
            )
        rows.append(cells)
    sweeps = ", ".join(sorted(set(trials["sweep"])))
    note = (
        f"Accuracy in % on {_points_text(metrics, usual, points)}; mean ± half the width of a 95% interval: for "
        "one seed Wilson's score interval over its test points; for several, one that holds test-point and seed "
        "variation (each seed's Wilson interval and Student's t over the seed means, added in quadrature) "
        "('(k seeds)' where fewer seeds than n measured it). "
    )
    note += selection_note(table, trials, metrics, TITLES)
    if selected_on_test:
        note += " This sweep's search selected on test metrics (select_on_test: true): its test numbers are optimistic."
    sections = [(header, rows, f"{sweeps}: {note}")]
    for name, compared in comparisons:
        sections.append(_comparison_section(table, keys, metrics, name, compared, points))
    if fmt == "latex":
        return "\n".join(latex(header, rows, caption=caption) for header, rows, caption in sections)
    if fmt == "html":  # the tables of the one-file report (html_page.py adds figures, spec, provenance)
        flagged_rows = [pd.notna(value) for value in table["integrity_flags"]]
        return "\n".join(html_table(header, rows, caption, flagged_rows) for header, rows, caption in sections)
    return "\n".join(f"{markdown(header, rows)}\n\n{caption}\n" for header, rows, caption in sections)


def _comparison_section(
    table: pd.DataFrame, keys: list[str], metrics: list[str], name: str, compared: pd.DataFrame, points
):
    by_hashes = compared.set_index("config_hashes")
    header = [TITLES.get(k, k) for k in keys] + ["n"] + [TITLES[m] for m in metrics]
    rows = []
    for i, row in table.iterrows():
        found = by_hashes.loc[row["config_hashes"]] if row["config_hashes"] in by_hashes.index else None
        cells = [(setting_text(row[k]), False) for k in keys] + [(str(row["n_seeds"]), False)]
        for metric in metrics:
            if found is not None and found["reference"] == "self":
                cells.append(("reference", False))
            else:
                cells.append((_difference_text(found, attack_of(metric), row["n_seeds"], points[metric][i]), False))
        rows.append(cells)
    family = family_size(compared)
    set_aside = compared.attrs.get("set_aside") or []
    other_settings = "the same other settings" + (
        f" but those that tell the sweeps apart ({'; '.join(set_aside)})" if set_aside else ""
    )
    caption = (
        f"Paired differences against {name}: each row minus the {name} row with {other_settings}, "
        "on the same test points and seeds, in points of accuracy: difference [95% interval] a:b p (Holm), "
        f"where a:b counts the test points only the row / only {name} got right (with several seeds: the "
        "points whose mean over seeds favours either). One seed: McNemar's mid-p test and Tango's score "
        "interval. Several seeds: the test point is the unit (every seed was evaluated on the same points): "
        "an exact sign-flip test (mid-p) on the per-point differences and a bootstrap interval that resamples "
        f"seeds and test points jointly. Holm's adjustment over the family of all {family} comparisons in this "
        f"table (every row and column against {name}); * where the interval excludes 0 and the Holm-adjusted "
        f"p is below {ALPHA:g}; - where no single reference row or no per-example outcomes exist; '(k points)' "
        "where the two rows share fewer test points than the row's own column."
    )
    return header, rows, caption


def _difference_text(found, attack: str, n_seeds: int, row_points: dict[str, int] | None = None) -> str:
    if found is None or f"{attack}_diff" not in found or pd.isna(found[f"{attack}_diff"]):
        return "-"
    p, adjusted = found[f"{attack}_p"], found.get(f"{attack}_p_adjusted", math.nan)
    text = (
        f"{100 * found[f'{attack}_diff']:+.1f} [{100 * found[f'{attack}_lo']:+.1f}, "
        f"{100 * found[f'{attack}_hi']:+.1f}] "
        f"{int(found[f'{attack}_a_only'])}:{int(found[f'{attack}_b_only'])} {_p_text(p)}"
    )
    if pd.notna(adjusted):
        text += f" (Holm {_p_text(adjusted, prefix='')})"
    if _true(found.get(f"{attack}_significant")):  # the interval excludes 0 and Holm's p < ALPHA
        text += " *"
    # The pair is compared on the points both rows measured: fewer than the row's own when, say,
    # the reference ran AutoAttack on a smaller subset.
    shared = found.get(f"{attack}_points")
    own = set((row_points or {}).values())
    fewer = pd.notna(shared) and bool(own) and int(shared) < min(own)
    return text + _notes(int(found[f"{attack}_seeds"]), n_seeds, int(shared) if fewer else None)


def _true(value) -> bool:
    """A flag cell of a comparison frame: True, False or missing (NaN, None)."""
    return bool(value) if value is not None and not pd.isna(value) else False


def _p_text(p: float, prefix: str = "p") -> str:
    """'p=0.013', 'p<0.001' (prefix '' for the adjusted p in brackets)."""
    sign = "=" if prefix else ""
    return f"{prefix}<0.001" if p < 0.001 else f"{prefix}{sign}{p:.3f}"


def _notes(seeds: int, n_seeds: int, points: str | int | None = None) -> str:
    """' (1 seed)' when fewer seeds than the row's measured a number (AutoAttack on seed 0 only);
    ', 64 points' added when its number of test points differs from its column's usual one."""
    parts = [f"{seeds} seed{'s' if seeds != 1 else ''}"] if seeds != n_seeds else []
    if points is not None:
        parts.append(f"{points} points")
    return f" ({', '.join(parts)})" if parts else ""


def points_behind(trials: pd.DataFrame, table: pd.DataFrame, metrics: list[str]) -> dict[str, list[dict[str, int]]]:
    """Per metric and table row: {config hash: test points} of the row's trials that measured it.

    A results row records `n_<attack>` beside each `acc_<attack>` (trainables/evaluation.py:
    the points that accuracy was computed on; 0 when the attack did not run). AutoAttack's is
    often smaller than natural's (evaluation.autoattack_examples), and a seed without AutoAttack
    has none. A row without the count (hand-made results) is left out here, never guessed.
    """
    by_hash = trials.drop_duplicates("config_hash").set_index("config_hash")
    found: dict[str, list[dict[str, int]]] = {}
    for metric in metrics:
        column = count_column(attack_of(metric))
        per_row = []
        for hashes in table["config_hashes"]:
            counts = {}
            for key in hashes.split(","):
                count = by_hash.at[key, column] if column in by_hash.columns else None
                if pd.notna(by_hash.at[key, metric]) and pd.notna(count) and int(count) > 0:
                    counts[key] = int(count)
            per_row.append(counts)
        found[metric] = per_row
    return found


def _usual_points(rows: list[dict[str, int]]) -> int | None:
    """A column's most common number of test points per trial (None when none is recorded)."""
    counts = Counter(n for row in rows for n in row.values())
    return counts.most_common(1)[0][0] if counts else None


def _unusual(row: dict[str, int], usual: int | None) -> str | None:
    """A row's points as '64' or '64/100' (seeds that differ) when not just its column's usual number."""
    distinct = sorted(set(row.values()))
    return "/".join(map(str, distinct)) if distinct and distinct != [usual] else None


def _points_text(metrics: list[str], usual: dict[str, int | None], points) -> str:
    """'40 test points per trial (Natural, PGD-10) and 100 (AutoAttack)': each column's usual number."""
    groups: dict[int, list[str]] = {}
    for metric in metrics:
        if usual[metric] is not None:
            groups.setdefault(usual[metric], []).append(TITLES[metric])
    if not groups:
        return "the test points"
    parts = [f"{n} ({', '.join(titles)})" for n, titles in groups.items()]
    parts[0] = parts[0].replace(" (", " test points per trial (", 1)
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    unrecorded = [TITLES[m] for m in metrics if usual[m] is None]
    if unrecorded:
        text += f" (not recorded for {', '.join(unrecorded)})"
    if any(_unusual(row, usual[m]) for m in metrics for row in points[m]):
        text += ", '(k points)' where a row's trials measured another number"
    return text


def setting_text(value) -> str:
    if pd.isna(value):  # a setting the kind ignores (Identity's lambda), or one left unset
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and value.startswith("["):  # a list setting, stored as JSON text
        try:
            return "+".join(str(item) for item in json.loads(value)) or "none"
        except ValueError:
            pass
    return str(value)


def _accuracy_text(mean: float, half: float, seeds: int, n_seeds: int, points: str | None = None) -> str:
    if math.isnan(mean):
        return "-"
    text = f"{100 * mean:.1f} ± {100 * half:.1f}" if not math.isnan(half) else f"{100 * mean:.1f}"
    return text + _notes(seeds, n_seeds, points)


def _csv(
    table: pd.DataFrame,
    keys: list[str],
    metrics: list[str],
    comparisons: list[tuple[str, pd.DataFrame]],
    points: dict[str, list[dict[str, int]]],
    best: dict[str, pd.Series],
) -> str:
    """Numbers, not text: mean, bounds and half-interval per metric, a best_<metric> column (chosen
    on the validation split, never a flagged row), its
    test points per trial (`<metric>_points`: '64/100' when the row's seeds differ), and per
    comparison `vs_<reference>_<metric>_diff`, `_lo`, `_hi`, `_p`, `_points` (fractions; p-values;
    the points both rows measured), then `_p_adjusted` (Holm over the comparison table), `_significant`
    (the report's `*`), `_a_only`, `_b_only` (points only the row / only the reference got right;
    with several seeds, points whose seed mean favours either) and `_method`."""
    columns = [*keys, "n_seeds", "interval"]
    for m in metrics:
        table[f"best_{m}"] = best[m]
        table[f"{m}_points"] = [_points_cell(row) for row in points[m]]
        columns += [m, f"{m}_lo", f"{m}_hi", f"{m}_half", f"{m}_seeds", f"{m}_points", f"best_{m}"]
    columns += ["integrity_flags", "config_hashes"]
    for name, compared in comparisons:
        by_hashes = compared.set_index("config_hashes")
        label = "vs_" + re.sub(r"[^0-9A-Za-z.]+", "_", name)
        for m in metrics:
            for part in _CSV_PARTS:
                column = f"{attack_of(m)}_{part}"
                values = by_hashes[column] if column in by_hashes else pd.Series(dtype=float)
                table[f"{label}_{attack_of(m)}_{part}"] = table["config_hashes"].map(values)
                columns.append(f"{label}_{attack_of(m)}_{part}")
    return table[columns].to_csv(index=False)


# The comparison parts a CSV row carries per reference and metric (paired.PARTS, seeds aside).
_CSV_PARTS = ("diff", "lo", "hi", "p", "points", "p_adjusted", "significant", "a_only", "b_only", "method")


def _points_cell(row: dict[str, int]) -> int | str | None:
    distinct = sorted(set(row.values()))
    return None if not distinct else distinct[0] if len(distinct) == 1 else "/".join(map(str, distinct))


def _json(
    trials: pd.DataFrame,
    table: pd.DataFrame,
    keys: list[str],
    metrics: list[str],
    comparisons: list[tuple[str, pd.DataFrame]],
    points: dict[str, list[dict[str, int]]],
    best: dict[str, pd.Series],
) -> str:
    """The table and its comparisons as one JSON object (fractions, not %; NaN as null).

    `rows`: per configuration its `settings` (the row keys), `n_seeds`, `interval`, per metric
    `mean`, `lo`, `hi`, `half`, `seeds` (how many measured it), `best`, `points` (test points per
    trial, null when its trials differ) and `points_by_trial`, then `integrity_flags` and
    `config_hashes`. `comparisons`: per reference, per row its `settings`, `reference` ("self", the reference's
    hashes, or null) and per metric `diff`, `lo`, `hi`, `p`, `excludes_zero`, `points`, `seeds`, then
    `p_adjusted` (Holm over the reference's table), `significant` (the interval excludes 0 and
    `p_adjusted` < 0.05: the `*`), `a_only`, `b_only` and `method`; per reference also `family`
    (how many comparisons Holm's adjustment counted), `adjustment` ("holm") and `settings_set_aside`
    (against another sweep: the settings that tell the sweeps apart, each as it is per sweep).
    """
    rows = []
    for i, row in table.iterrows():
        measured = {}
        for m in metrics:
            distinct = set(points[m][i].values())
            measured[m] = {
                "mean": row[m],
                "lo": row[f"{m}_lo"],
                "hi": row[f"{m}_hi"],
                "half": row[f"{m}_half"],
                "seeds": row[f"{m}_seeds"],
                "best": bool(best[m][i]),
                "points": distinct.pop() if len(distinct) == 1 else None,
                "points_by_trial": points[m][i],
            }
        flags = row["integrity_flags"]
        rows.append(
            {
                "settings": {k: row[k] for k in keys},
                "n_seeds": row["n_seeds"],
                "interval": row["interval"],
                "metrics": measured,
                "integrity_flags": str(flags).split(",") if pd.notna(flags) else [],
                "config_hashes": row["config_hashes"].split(","),
            }
        )
    compared_rows = []
    for name, compared in comparisons:
        by_hashes = compared.set_index("config_hashes")
        found_rows = []
        for i, hashes in enumerate(table["config_hashes"]):
            found = by_hashes.loc[hashes] if hashes in by_hashes.index else None
            reference = None if found is None or pd.isna(found["reference"]) else found["reference"]
            differences = {}
            for m in metrics:
                attack = attack_of(m)
                if reference in (None, "self") or pd.isna(found.get(f"{attack}_diff")):
                    differences[m] = None
                    continue
                differences[m] = {part: found[f"{attack}_{part}"] for part in ("diff", "lo", "hi", "p", "p_adjusted")}
                differences[m].update(
                    {part: int(found[f"{attack}_{part}"]) for part in ("points", "seeds", "a_only", "b_only")}
                )
                differences[m]["excludes_zero"] = bool(found[f"{attack}_lo"] > 0 or found[f"{attack}_hi"] < 0)
                differences[m]["significant"] = _true(found[f"{attack}_significant"])
                differences[m]["method"] = found[f"{attack}_method"]
            found_rows.append(
                {
                    "settings": rows[i]["settings"],
                    "config_hashes": hashes.split(","),
                    "reference": reference if reference in (None, "self") else reference.split(","),
                    "metrics": differences,
                }
            )
        compared_rows.append(
            {
                "reference": name,
                "settings_set_aside": compared.attrs.get("set_aside") or [],
                "adjustment": "holm",
                "family": family_size(compared),
                "rows": found_rows,
            }
        )
    document = {
        "sweeps": sorted(set(trials["sweep"])),
        "keys": keys,
        "metrics": metrics,
        "titles": {name: TITLES.get(name, name) for name in (*keys, *metrics)},
        "rows": rows,
        "comparisons": compared_rows,
    }
    return dumps(document)
