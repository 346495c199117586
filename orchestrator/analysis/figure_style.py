"""One look for every figure: a configuration's colour and marker, accuracy axes in %, the intervals' note.

A configuration is drawn in the same colour and marker in every figure and report (by its
pre-processor kind and lambda, never by its place in one sweep's order), accuracy axes are in %
as the tables are, from 0 to 100 (a robust accuracy near 0 is the finding, not a detail to zoom
past), and each figure says what its whiskers are.
"""

from __future__ import annotations

import zlib

import pandas as pd
from matplotlib import colormaps

from orchestrator.analysis.report import KIND_ORDER

# tab10's colours by the registry's order of kinds (Identity, Vanilla, ARAE, CRoPD, ...): fixed,
# so a kind keeps its colour across sweeps, figures and reports.
PALETTE = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
# One marker per lambda the paper's ablations use; other values share the last.
LAMBDA_MARKERS = {0.1: "v", 1.0: "s", 10.0: "^", 100.0: "P"}
OTHER_LAMBDA_MARKER = "D"
HEAD_LINESTYLES = {"clean": "-", "robust": "--"}
INTERVALS_NOTE = (
    "whiskers: 95% interval (Wilson over the test points; with several seeds, Student's t over the seed means "
    "added in quadrature)"
)


def configuration_style(kind, lam) -> tuple[str, str]:
    """(colour, marker) of a configuration: the colour by its pre-processor kind (a kind not in the
    registry: a colour of its own name's checksum, the same in every process), the marker by its
    lambda ('o' without one)."""
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else zlib.crc32(str(kind).encode())
    colour = PALETTE[rank % len(PALETTE)]
    if lam is None or pd.isna(lam):
        return colour, "o"
    return colour, LAMBDA_MARKERS.get(float(lam), OTHER_LAMBDA_MARKER)


def percent_axis(ax, label: str = "accuracy (%)", axis: str = "y") -> None:
    """An accuracy axis in %, from 0 to 100 (the values drawn as 100 x the fraction)."""
    if axis == "y":
        ax.set_ylim(0, 100)
        ax.set_ylabel(label)
    else:
        ax.set_xlim(0, 100)
        ax.set_xlabel(label)


def label_styles(rows: pd.DataFrame, label_column: str) -> dict[str, tuple[str, str]]:
    """label -> (colour, marker) for the configurations of `rows`: configuration_style's, unless
    two labels would look the same (two settings other than kind and lambda vary), then
    matplotlib's colour cycle with the markers kept, so no two lines are ever confused."""
    styles = {}
    for _, row in rows.drop_duplicates(label_column).iterrows():
        styles[row[label_column]] = configuration_style(row.get("preprocessor.kind"), row.get("preprocessor.lambda"))
    if len(set(styles.values())) == len(styles):
        return styles
    palette = [f"C{i}" for i in range(10)] if len(styles) <= 10 else [colormaps["tab20"](i) for i in range(20)]
    return {label: (palette[i % len(palette)], marker) for i, (label, (_, marker)) in enumerate(styles.items())}


def wrapped(note: str, figure) -> str:
    """`note` broken into lines that fit across `figure` at x-small type (a legend's title: the
    one place below the panels that constrained layout keeps clear of the legend itself)."""
    import textwrap

    return textwrap.fill(note, width=max(40, int(figure.get_figwidth() * 15)))
