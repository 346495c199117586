"""The cost view of a sweep (paper Tables 11 and 12): seconds per stage and parameter counts per row.

The rows and their order are the paper-style table's (report.py); a reused pre-processor's row
carries the seconds its artifact took to train, as those tables count them. The stages are the
results-row contract's cost stages (trainables/schema/results.py: COST_STAGES).
"""

from __future__ import annotations

import pandas as pd

from orchestrator.analysis.plain_json import dumps
from orchestrator.analysis.render import latex, markdown
from orchestrator.analysis.report import TITLES, paper_table, setting_text
from trainables.schema.results import COST_STAGES, stage

COST_PARAMS = ("params_preprocessor", "params_foundation", "params_foundation_trained", "params_head")
COST_TITLES = {
    **{stage(name).column: f"{stage(name).title} (s)" for name in COST_STAGES},  # "Pre-training (s)" ...
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
    columns = [stage(name).column for name in COST_STAGES] + list(COST_PARAMS)
    columns = [c for c in columns if c in trials.columns and trials[c].notna().any()]
    for column in columns:
        table[column] = [
            float(pd.to_numeric(by_hash.loc[hashes.split(","), column], errors="coerce").mean())
            for hashes in table["config_hashes"]
        ]
    return table, keys, columns


def render_costs(trials: pd.DataFrame, fmt: str) -> str:
    """The cost table in `fmt` (report.FORMATS: markdown, latex, csv, json)."""
    table, keys, columns = cost_table(trials)
    if fmt == "csv":
        return table[[*keys, "n_seeds", *columns]].to_csv(index=False)
    if fmt == "json":
        rows = [
            {
                "settings": {k: row[k] for k in keys},
                "n_seeds": row["n_seeds"],
                "costs": {column: row[column] for column in columns},
                "config_hashes": row["config_hashes"].split(","),
            }
            for _, row in table.iterrows()
        ]
        document = {"sweeps": sorted(set(trials["sweep"])), "keys": keys, "columns": columns, "rows": rows}
        return dumps(document)
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
        return latex(header, rows, caption=caption)
    return f"{markdown(header, rows)}\n\n{caption}\n"
