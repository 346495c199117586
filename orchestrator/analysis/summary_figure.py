"""The report's standard figure: every configuration's accuracies with their 95% intervals.

A dot-and-interval chart (as seaborn's pointplot and matplotlib's errorbar gallery draw grouped
intervals: points with whiskers, never bars, whose area would suggest a quantity from 0): one
panel per head mode (clean and robust heads answer different questions and are never mixed on
one axis), configurations along x, accuracy in % on a y axis from 0 to 100, the same numbers as
the report's table. Each configuration has one colour and marker wherever it is drawn
(figure_style.py: by pre-processor kind and lambda, not by its place in a sweep); natural
accuracy is the filled marker, the worst case over the attacks the hollow one.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from orchestrator.analysis.figure_style import INTERVALS_NOTE, configuration_style, percent_axis, wrapped
from orchestrator.analysis.frames import SEEDS_INTERVAL
from orchestrator.analysis.report import TITLES, paper_table, setting_text
from trainables.schema.results import NATURAL, WORST, accuracy_column


def summary_figure(trials: pd.DataFrame, *, title: str) -> tuple[Figure, str] | None:
    """The figure and its caption, or None when no natural accuracy was measured."""
    table, keys, metrics = paper_table(trials)
    if accuracy_column(NATURAL) not in metrics:
        return None
    # Natural and the worst case; without a worst case (results from before it), the first attack.
    robust = next((m for m in metrics if m != accuracy_column(NATURAL)), None)
    robust = accuracy_column(WORST) if accuracy_column(WORST) in metrics else robust
    drawn = [accuracy_column(NATURAL)] + ([robust] if robust else [])
    heads = list(dict.fromkeys(table["head.mode"])) if "head.mode" in table else [None]
    # A setting that follows the head (its epochs) tells no configuration apart within a panel.
    groups = [table[table["head.mode"] == head] for head in heads] if heads != [None] else [table]
    label_keys = [
        k for k in keys if k != "head.mode" and any(group[k].astype("string").nunique() > 1 for group in groups)
    ]
    label_keys = label_keys or [k for k in keys if k != "head.mode"][:1]
    # Sweep names are long: the ticks say S1, S2, ... and the caption and legend say which is which.
    short = {name: f"S{i + 1}" for i, name in enumerate(dict.fromkeys(table["sweep"]))} if "sweep" in label_keys else {}
    named = "; ".join(f"{tag}: {name}" for name, tag in short.items())
    widest = max(len(table) if head is None else int((table["head.mode"] == head).sum()) for head in heads)
    figure = Figure(figsize=(1.6 + 0.75 * widest * len(heads), 4.4), layout="constrained")
    axes = figure.subplots(1, len(heads), squeeze=False, sharey=True)[0]
    for ax, head in zip(axes, heads):
        rows = table if head is None else table[table["head.mode"] == head]
        x = np.arange(len(rows))
        for offset, metric in zip((-0.12, 0.12), drawn):
            filled = metric == accuracy_column(NATURAL)
            for xi, (_, row) in zip(x, rows.iterrows()):
                colour, marker = configuration_style(row.get("preprocessor.kind"), row.get("preprocessor.lambda"))
                y = 100 * row[metric]
                if math.isnan(y):
                    continue
                error = [[y - 100 * row[f"{metric}_lo"]], [100 * row[f"{metric}_hi"] - y]]
                ax.errorbar(
                    xi + offset,
                    y,
                    yerr=np.nan_to_num(error),
                    marker=marker,
                    markersize=7,
                    color=colour,
                    markerfacecolor=colour if filled else "white",
                    capsize=3,
                    linestyle="none",
                )
        ax.set_xticks(
            x,
            [
                "\n".join(short[row[k]] if k == "sweep" else setting_text(row[k]) for k in label_keys)
                for _, row in rows.iterrows()
            ],
        )
        ax.set_xlim(-0.6, len(rows) - 0.4)
        percent_axis(ax, "accuracy (%)" if ax is axes[0] else "")
        ax.set_title(f"{head} head" if head is not None else title)
        ax.grid(axis="y", alpha=0.3)
    legend = [
        Line2D([], [], marker="o", color="black", markerfacecolor="black" if i == 0 else "white", linestyle="none")
        for i in range(len(drawn))
    ]
    figure.legend(
        legend,
        [TITLES.get(metric, metric) for metric in drawn],
        loc="outside lower center",
        ncols=2,
        title=wrapped(
            f"{named + '; ' if named else ''}colour: pre-processor kind, marker: lambda; {INTERVALS_NOTE}", figure
        ),
        title_fontsize="x-small",
    )
    figure.suptitle(title)
    several = (table["interval"] == SEEDS_INTERVAL).any()
    caption = (
        "Accuracy in % of each configuration (x: "
        + ", ".join(TITLES.get(k, k) for k in label_keys)
        + (f"; {named}" if named else "")
        + "), one panel per head; filled markers: natural accuracy, hollow: "
        + (
            "the worst case over every attack run on each test point"
            if robust == accuracy_column(WORST)
            else f"{TITLES.get(robust, robust)} (these results have no worst case)"
        )
        + ". Whiskers: 95% interval, Wilson's score interval over the test points for one seed"
        + (
            ", and for several seeds one that also holds the seed-to-seed variation (Student's t over the seed "
            "means, added in quadrature)"
            if several
            else ""
        )
        + "; the same numbers as the table. Colour: pre-processor kind; marker: lambda."
    )
    return figure, caption
