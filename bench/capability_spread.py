"""How far a study's rows and paired effects move between CPU instruction sets, beside their intervals.

Run one study several times on one machine, each under another `ATEN_CPU_CAPABILITY` (same
commit, thread count and shipped foundation), each into its own folder, then:

    python bench/capability_spread.py runs/qs-avx512 runs/qs-avx2 runs/qs-default

prints two Markdown tables: per configuration and metric, the mean over seeds in each run with
its 95% interval's half-width, and the spread (largest minus smallest mean); then the same for
each configuration's paired difference against the reference (Vanilla). `moves beyond` says
whether the spread exceeds the smallest of the runs' own interval half-widths: a number that
moves between two machines by more than its interval is a finding, not noise.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

METRICS = ("acc_natural", "acc_pgd20", "acc_pgd20_margin", "acc_worst")


def _label(settings: pd.Series) -> str:
    kind = settings.get("preprocessor.kind")
    lam = settings.get("preprocessor.lambda")
    head = settings.get("head.mode")
    text = str(kind) + (f" λ{lam:g}" if isinstance(lam, (int, float)) and not math.isnan(lam) else "")
    return text + (f" ({head})" if isinstance(head, str) else "")


def _run_tables(folder: Path, metrics: list[str]) -> tuple[dict, dict, str]:
    from orchestrator.analysis.frames import aggregate_seeds, finished_trials, load_examples
    from orchestrator.analysis.paired import attack_of, compare_to_reference, default_reference

    trials = finished_trials(folder)
    capability = ",".join(sorted(trials.get("cpu_capability", pd.Series(["?"])).dropna().astype(str).unique()))
    rows = aggregate_seeds(trials, metrics)
    values = {}
    for _, row in rows.iterrows():
        for metric in metrics:
            values[(_label(row), metric)] = (row[metric], (row[f"{metric}_hi"] - row[f"{metric}_lo"]) / 2)
    reference = default_reference(trials)
    compared = compare_to_reference(
        trials, load_examples(folder, trials["config_hash"]), reference, [attack_of(m) for m in metrics]
    )
    labels = {
        ",".join(trials.loc[index, "config_hash"]): _label(trials.loc[index[0]])
        for index in [trials.index[trials["config_hash"].isin(r.split(","))] for r in compared["config_hashes"]]
    }
    effects = {}
    for _, row in compared.iterrows():
        if row.get("reference") in (None, "self") or (isinstance(row.get("reference"), float)):
            continue
        for metric in metrics:
            attack = attack_of(metric)
            if f"{attack}_diff" in row and not pd.isna(row[f"{attack}_diff"]):
                half = (row[f"{attack}_hi"] - row[f"{attack}_lo"]) / 2
                effects[(labels[row["config_hashes"]], metric)] = (row[f"{attack}_diff"], half)
    return values, effects, capability


def _table(title: str, per_run: list[dict], names: list[str], signed: bool) -> str:
    keys = list(dict.fromkeys(key for run in per_run for key in run))
    header = ["row", "metric", *names, "spread", "smallest ±", "moves beyond"]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keys:
        cells = [run.get(key) for run in per_run]
        present = [cell for cell in cells if cell is not None]
        means = [100 * mean for mean, _ in present]
        halves = [100 * half for _, half in present]
        spread = max(means) - min(means) if means else math.nan
        smallest = min(halves) if halves else math.nan
        form = "{:+.1f} ± {:.1f}" if signed else "{:.1f} ± {:.1f}"
        shown = [form.format(100 * c[0], 100 * c[1]) if c is not None else "-" for c in cells]
        lines.append(
            "| "
            + " | ".join(
                [key[0], key[1], *shown, f"{spread:.1f}", f"{smallest:.1f}", "**yes**" if spread > smallest else "no"]
            )
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="sweep folders of the same study, one per capability")
    parser.add_argument("--metrics", default=",".join(METRICS))
    args = parser.parse_args()
    metrics = [m for m in args.metrics.split(",") if m]
    tables = [_run_tables(folder, metrics) for folder in args.runs]
    names = [f"{folder.name} ({capability})" for folder, (_, _, capability) in zip(args.runs, tables)]
    print(_table("Rows: mean over seeds ± 95% half-width (points)", [t[0] for t in tables], names, signed=False))
    print()
    print(_table("Paired effects against the reference (points)", [t[1] for t in tables], names, signed=True))


if __name__ == "__main__":
    main()
