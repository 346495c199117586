"""The paper-style table of a sweep: one row per configuration, accuracies as mean ± half-interval.

Rows are pre-processor, lambda and head mode (plus any other setting the sweep varied), columns
Natural, PGD-10, PGD-20, AutoAttack in %, the best per column marked, integrity flags beside a row.
"""

from __future__ import annotations

import json
import math
import re

import pandas as pd

from trainables.schema.preprocessor import PREPROCESSOR_KINDS

from .analysis import aggregate_seeds, config_columns, present_metrics, varying
from .paired import attack_of

FORMATS = ("markdown", "latex", "csv")
# Row order of pre-processor kinds as in the paper's tables (the registry's report_rank); kinds
# not registered (a results copy from a newer version) follow in the order seen.
KIND_ORDER = tuple(sorted(PREPROCESSOR_KINDS, key=lambda name: PREPROCESSOR_KINDS[name].report_rank))
# The paper's row keys, always shown; other settings appear when the sweep varied them.
ROW_KEYS = ("preprocessor.kind", "preprocessor.lambda", "head.mode")
TITLES = {
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
    "foundation.name": "Foundation",
    "foundation.mode": "Foundation mode",
    "foundation.pretraining.method": "Pre-training",
    "foundation.resnet.width": "Width",
    "foundation.pretraining.lr": "Pre-training lr",
    "acc_natural": "Natural",
    "acc_pgd10": "PGD-10",
    "acc_pgd20": "PGD-20",
    "acc_autoattack": "AutoAttack",
}
LATEX_TITLES = {"λ": r"$\lambda$", "τ": r"$\tau$"}


def paper_table(trials: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Seed means of the headline accuracies, one row per configuration, in the paper's order.

    Returns the aggregated frame, its row-key columns and its metric columns.
    """
    metrics = present_metrics(trials)
    table = aggregate_seeds(trials, metrics)
    keys = [k for k in ROW_KEYS if k in table.columns]
    keys += [k for k in varying(table, config_columns(table)) if k not in keys]
    # Baselines first, in the paper's order, then the robust pre-processors; then by each key's value.
    seen = [kind for kind in dict.fromkeys(table.get("preprocessor.kind", [])) if kind not in KIND_ORDER]
    rank = {kind: i for i, kind in enumerate([*KIND_ORDER, *seen])}
    sort_keys = [table["preprocessor.kind"].map(rank)] if "preprocessor.kind" in table else []
    order = pd.DataFrame({f"k{i}": column for i, column in enumerate(sort_keys + [table[k] for k in keys[1:]])})
    table = (
        table.loc[order.sort_values(list(order.columns), na_position="first").index] if len(order.columns) else table
    )
    return table.reset_index(drop=True), keys, metrics


def render(trials: pd.DataFrame, fmt: str, comparisons: list[tuple[str, pd.DataFrame]] = ()) -> str:
    """The table in `fmt`; each of `comparisons` (a reference's name and its frame from
    paired.compare_to_reference) follows it as a table of paired differences (in CSV: columns)."""
    table, keys, metrics = paper_table(trials)
    if fmt == "csv":
        return _csv(table, keys, metrics, comparisons)
    best = {m: table[m] == table[m].max() for m in metrics}  # ties are all marked
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
            (_accuracy_text(row[m], row[f"{m}_half"], row[f"{m}_seeds"], row["n_seeds"]), bool(best[m][i]))
            for m in metrics
        ]
        if flagged:
            cells.append(
                (", ".join(str(row["integrity_flags"]).split(",")) if pd.notna(row["integrity_flags"]) else "", False)
            )
        rows.append(cells)
    sweeps = ", ".join(sorted(set(trials["sweep"])))
    note = (
        f"Accuracy in % on {_test_points(trials)}; mean ± half of a 95% interval: for one seed the "
        "bootstrap interval over test points, for several Student's t interval over seeds "
        "('(k seeds)' where fewer seeds than n measured it). Best per column in bold."
    )
    sections = [(header, rows, f"{sweeps}: {note}")]
    for name, compared in comparisons:
        sections.append(_comparison_section(table, keys, metrics, name, compared))
    if fmt == "latex":
        return "\n".join(_latex(header, rows, caption=caption) for header, rows, caption in sections)
    return "\n".join(f"{_markdown(header, rows)}\n\n{caption}\n" for header, rows, caption in sections)


# The paper's cost view (Tables 11 and 12): stage seconds and parameter counts per row. A reused
# pre-processor's row carries the seconds its artifact took to train, as those tables count them.
COST_STAGES = ("foundation_pretraining", "preprocessor", "head", "evaluation")
COST_PARAMS = ("params_preprocessor", "params_foundation", "params_foundation_trained", "params_head")
COST_TITLES = {
    "time_foundation_pretraining_s": "Pre-training (s)",
    "time_preprocessor_s": "Pre-processor (s)",
    "time_head_s": "Head (s)",
    "time_evaluation_s": "Evaluation (s)",
    "params_preprocessor": "Pre-processor params",
    "params_foundation": "Foundation params",
    "params_foundation_trained": "Foundation params trained",
    "params_head": "Head params",
}


def cost_table(trials: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Per configuration (the accuracy table's rows and order): each stage's seconds, the mean over
    its seeds, and the parameter counts. Columns no trial recorded are left out."""
    table, keys, _ = paper_table(trials)
    by_hash = trials.set_index("config_hash")
    columns = [f"time_{stage}_s" for stage in COST_STAGES] + list(COST_PARAMS)
    columns = [c for c in columns if c in trials.columns and trials[c].notna().any()]
    for column in columns:
        table[column] = [
            float(pd.to_numeric(by_hash.loc[hashes.split(","), column], errors="coerce").mean())
            for hashes in table["config_hashes"]
        ]
    return table, keys, columns


def render_costs(trials: pd.DataFrame, fmt: str) -> str:
    table, keys, columns = cost_table(trials)
    if fmt == "csv":
        return table[[*keys, "n_seeds", *columns]].to_csv(index=False)
    header = [TITLES.get(k, k) for k in keys] + ["n"] + [COST_TITLES[c] for c in columns]
    rows = []
    for _, row in table.iterrows():
        cells = [(setting_text(row[k]), False) for k in keys] + [(str(row["n_seeds"]), False)]
        for column in columns:
            value = row[column]
            text = "-" if pd.isna(value) else f"{value:,.0f}" if column.startswith("params_") else f"{value:,.1f}"
            cells.append((text, False))
        rows.append(cells)
    caption = (
        f"{', '.join(sorted(set(trials['sweep'])))}: seconds per stage, the mean over seeds (a reused "
        "pre-processor counts the seconds its artifact took to train), and parameter counts."
    )
    if fmt == "latex":
        return _latex(header, rows, caption=caption)
    return f"{_markdown(header, rows)}\n\n{caption}\n"


def _comparison_section(table: pd.DataFrame, keys: list[str], metrics: list[str], name: str, compared: pd.DataFrame):
    by_hashes = compared.set_index("config_hashes")
    header = [TITLES.get(k, k) for k in keys] + ["n"] + [TITLES[m] for m in metrics]
    rows = []
    for _, row in table.iterrows():
        found = by_hashes.loc[row["config_hashes"]] if row["config_hashes"] in by_hashes.index else None
        cells = [(setting_text(row[k]), False) for k in keys] + [(str(row["n_seeds"]), False)]
        for metric in metrics:
            if found is not None and found["reference"] == "self":
                cells.append(("reference", False))
            else:
                cells.append((_difference_text(found, attack_of(metric), row["n_seeds"]), False))
        rows.append(cells)
    caption = (
        f"Paired differences against {name}: each row minus the {name} row with the same other settings, "
        "on the same test points and seeds, in points of accuracy: difference [95% paired bootstrap interval] "
        "and McNemar's exact p (test points only; the interval also resamples seeds); * where the interval "
        "excludes 0; - where no single reference row or no per-example outcomes exist."
    )
    return header, rows, caption


def _difference_text(found, attack: str, n_seeds: int) -> str:
    if found is None or f"{attack}_diff" not in found or pd.isna(found[f"{attack}_diff"]):
        return "-"
    p = found[f"{attack}_p"]
    text = (
        f"{100 * found[f'{attack}_diff']:+.1f} [{100 * found[f'{attack}_lo']:+.1f}, "
        f"{100 * found[f'{attack}_hi']:+.1f}] "
        f"{'p<0.001' if p < 0.001 else f'p={p:.3f}'}"
    )
    if found[f"{attack}_lo"] > 0 or found[f"{attack}_hi"] < 0:
        text += " *"
    return text + _fewer_seeds(int(found[f"{attack}_seeds"]), n_seeds)


def _fewer_seeds(seeds: int, n_seeds: int) -> str:
    """' (1 seed)' when fewer seeds than the row's measured a number (AutoAttack on seed 0 only)."""
    return f" ({seeds} seed{'s' if seeds != 1 else ''})" if seeds != n_seeds else ""


def _test_points(trials: pd.DataFrame) -> str:
    counts = sorted({int(n) for n in trials.get("n_natural", pd.Series(dtype=float)).dropna()})
    return f"{'/'.join(map(str, counts))} test points" if counts else "the test points"


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


def _accuracy_text(mean: float, half: float, seeds: int, n_seeds: int) -> str:
    if math.isnan(mean):
        return "-"
    text = f"{100 * mean:.1f} ± {100 * half:.1f}" if not math.isnan(half) else f"{100 * mean:.1f}"
    return text + _fewer_seeds(seeds, n_seeds)


def _markdown(header: list[str], rows: list[list[tuple[str, bool]]]) -> str:
    def line(cells):
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    body = [line(f"**{text}**" if bold else text for text, bold in row) for row in rows]
    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *body])


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text).replace("±", r"$\pm$")


def _latex(header: list[str], rows: list[list[tuple[str, bool]]], caption: str) -> str:
    heads = [LATEX_TITLES.get(h, _latex_escape(h)) for h in header]
    body = [
        " & ".join(f"\\textbf{{{_latex_escape(text)}}}" if bold else _latex_escape(text) for text, bold in row) + r" \\"
        for row in rows
    ]
    return (
        "\n".join(
            [
                r"\begin{table}[t]",
                r"\centering",
                f"\\caption{{{_latex_escape(caption)}}}",
                f"\\begin{{tabular}}{{{'l' * len(header)}}}",
                r"\toprule",
                " & ".join(heads) + r" \\",
                r"\midrule",
                *body,
                r"\bottomrule",
                r"\end{tabular}",
                r"\end{table}",
            ]
        )
        + "\n"
    )


def _csv(table: pd.DataFrame, keys: list[str], metrics: list[str], comparisons: list[tuple[str, pd.DataFrame]]) -> str:
    """Numbers, not text: mean, bounds and half-interval per metric, a best_<metric> column, and
    per comparison `vs_<reference>_<metric>_diff`, `_lo`, `_hi`, `_p` (fractions; p-values)."""
    columns = [*keys, "n_seeds", "interval"]
    for m in metrics:
        table[f"best_{m}"] = table[m] == table[m].max()
        columns += [m, f"{m}_lo", f"{m}_hi", f"{m}_half", f"{m}_seeds", f"best_{m}"]
    columns += ["integrity_flags", "config_hashes"]
    for name, compared in comparisons:
        by_hashes = compared.set_index("config_hashes")
        label = "vs_" + re.sub(r"[^0-9A-Za-z.]+", "_", name)
        for m in metrics:
            for part in ("diff", "lo", "hi", "p"):
                column = f"{attack_of(m)}_{part}"
                values = by_hashes[column] if column in by_hashes else pd.Series(dtype=float)
                table[f"{label}_{attack_of(m)}_{part}"] = table["config_hashes"].map(values)
                columns.append(f"{label}_{attack_of(m)}_{part}")
    return table[columns].to_csv(index=False)
