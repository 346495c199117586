"""Figures of a sweep's results: trade-off curves, the Pareto front, data fraction, training curves,
robust accuracy against attack strength.

matplotlib's object API (no pyplot state, no display needed); seeds of one configuration are one
point with its 95% interval as error bars; images are written whole or not at all.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter
from matplotlib.transforms import blended_transform_factory

from orchestrator.analysis.figure_style import (
    INTERVALS_NOTE,
    configuration_style,
    label_styles,
    percent_axis,
    wrapped,
)
from orchestrator.analysis.frames import aggregate_seeds, config_columns, expand_mappings, pareto_mask, varying
from orchestrator.analysis.report import TITLES, setting_text
from trainables.artifacts import atomic_write_bytes
from trainables.errors import UserError
from trainables.schema.results import EPOCH_STAGES, NATURAL, SWEEP_POINTS, count_column

IMAGE_FORMATS = ("png", "svg", "pdf")
DPI = 150
MAX_LABELLED_LINES = 10
MAX_VALUE_TICKS = 6  # more configurations than this: colour by pre-processor kind instead
# Per-epoch columns drawn, where a stage records them: the optimised loss, the reconstruction
# alone (comparable across pre-processor kinds, unlike their total losses), head accuracy.
EPOCH_PANELS = {"loss": "training loss", "loss_reconstruction": "reconstruction MSE", "train_acc": "train accuracy"}
# The attack-strength sweep of each trial (JSON [[x, accuracy], ...]): its column, x label, x scale.
STRENGTH_PANELS = {
    "sweep_eps": ("PGD-10 against eps", "eps (x/255)", 255.0),
    "sweep_steps": ("PGD at the evaluation eps against steps", "PGD steps (log scale)", 1.0),
}
RISES_FLAGS = {"accuracy_rises_with_eps": "eps", "accuracy_rises_with_steps": "steps"}
# Legend geometry at fontsize "small": width of a character and of the marker with its padding,
# height of a row. Used to fit long configuration labels without clipping them.
LEGEND_CHAR_INCHES, LEGEND_HANDLE_INCHES, LEGEND_ROW_INCHES = 0.062, 0.7, 0.2
# Label positions tried around a point, in points from it: right, above, left, below, diagonals.
LABEL_OFFSETS = ((6, 4), (6, -11), (-6, 4), (-6, -11), (0, 9), (0, -15), (12, 12), (-12, -18))


def image_format(path: Path) -> str:
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise UserError(f"-o {path}: expected a .png, .svg or .pdf file name")
    return fmt


def save(figure: Figure, path: Path) -> None:
    """Render in memory first, then publish by rename: an error leaves no empty or partial image."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format(path), dpi=DPI)
    atomic_write_bytes(Path(path), buffer.getvalue())


def _title(name: str) -> str:
    return TITLES.get(name, name)


def _label(row: pd.Series, keys: list[str]) -> str:
    """A configuration named by the settings that tell it apart: 'cropd, robust head'."""
    parts = []
    for key in keys:
        value = row[key]
        if pd.isna(value):
            continue
        text = setting_text(value)  # list settings (advcl views) as a+b, as the report writes them
        parts.append(
            text if key == "preprocessor.kind" else f"{text} head" if key == "head.mode" else f"{_title(key)}={text}"
        )
    return ", ".join(parts) or "all trials"


def _numeric_axis(trials: pd.DataFrame, param: str) -> pd.Series:
    if param not in trials.columns:
        settings = varying(trials, config_columns(trials))
        raise UserError(
            f"parameter axis: no setting {param!r} in these results (--param); settings that vary: "
            f"{', '.join(settings) or 'none'}"
        )
    values = pd.to_numeric(trials[param], errors="coerce")
    if trials[param].isna().all():  # e.g. no lambda trial has finished yet: only Identity / Vanilla rows
        raise UserError(
            f"parameter axis {param}: no finished trial has it set yet ({len(trials)} finished trials); "
            "plot again when some have"
        )
    if values.isna().all() or (values.isna() & trials[param].notna()).any():
        raise UserError(
            f"parameter axis {param}: expected numbers, it holds {trials[param].dropna().unique()[:5].tolist()}"
        )
    distinct = values.dropna().unique()
    if len(distinct) < 2:
        raise UserError(
            f"parameter axis {param}: one value ({', '.join(f'{v:g}' for v in distinct) or 'none'}) in these "
            "trials; a curve needs at least two (pick another with --param)"
        )
    return values


def _set_xscale(ax, values: np.ndarray, param: str) -> str:
    """A log axis for lambda (its grids span decades); symlog when 0 (Vanilla) is on the axis."""
    if param != "preprocessor.lambda":
        return ""
    positive = values[values > 0]
    if len(positive) == len(values):
        ax.set_xscale("log")
        return " (log scale)"
    ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
    return " (symlog scale)"


def line_colours(lines) -> dict:
    """A distinct colour per line: matplotlib's 10-colour cycle, or tab20's 20 when there are more
    (the cycle would give two configurations one colour)."""
    names = list(dict.fromkeys(lines))
    if len(names) <= 10:
        return {name: f"C{i}" for i, name in enumerate(names)}
    palette = colormaps["tab20"]
    return {name: palette(i % 20) for i, name in enumerate(names)}


def legend_columns(labels: list[str], width_inches: float) -> int:
    """As many legend columns (at most 3) as the longest label lets fit across the figure."""
    entry = LEGEND_CHAR_INCHES * max(len(label) for label in labels) + LEGEND_HANDLE_INCHES
    return max(1, min(3, len(labels), int(width_inches // entry)))


def _value_ticks(ax, values: pd.Series) -> None:
    """A grid's few values become the ticks, written as numbers (1, 10, not 10^0), so a point is
    read off directly; many values (an Optuna search) keep matplotlib's ticks, which do not collide."""
    ran = sorted(values.unique())
    if len(ran) <= MAX_VALUE_TICKS:
        ax.set_xticks(ran)
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def tradeoff_figure(trials: pd.DataFrame, param: str, metrics: list[str], *, title: str) -> Figure:
    """One panel per accuracy against `param` (a row of panels per head mode: clean and robust
    heads apart), one line per configuration the parameter does not set, accuracy in % from 0.

    Configurations without the parameter (Identity and Vanilla have no lambda) are horizontal
    dashed lines, their interval a whisker just right of the panel (side by side, where shaded
    bands would overlap), so the curve is read against the baselines.
    """
    values = _numeric_axis(trials, param)
    table = aggregate_seeds(trials.assign(**{param: values}), metrics)
    split = "head.mode" in table and table["head.mode"].nunique() > 1
    heads = list(dict.fromkeys(table["head.mode"])) if split else [None]
    # A setting that follows the head (its epochs) tells no line apart within a head's panels.
    groups = [table[table["head.mode"] == head] for head in heads] if split else [table]
    keys = [
        k
        for k in varying(table, config_columns(table))
        if k not in (param, "head.mode") and any(k in varying(group, [k]) for group in groups)
    ]
    # A mapping setting (an inline architecture) is named by the keys inside it that vary, as in the report.
    table, spread = expand_mappings(table, keys)
    keys = [shown for k in keys for shown in ((varying(table, spread[k]) or [k]) if k in spread else [k])]
    table["label"] = [_label(row, keys) for _, row in table.iterrows()]
    styles = label_styles(table, "label")
    figure = Figure(figsize=(4.2 * len(metrics), 3.9 * len(heads) + 1.1), layout="constrained")
    axes = figure.subplots(len(heads), len(metrics), squeeze=False)
    for head, row_axes in zip(heads, axes):
        rows = table if head is None else table[table["head.mode"] == head]
        for ax, metric in zip(row_axes, metrics):
            scale = 100 if metric.startswith("acc_") else 1
            curves = rows[rows[param].notna()]
            for label, curve in curves.groupby("label", sort=False):
                curve = curve.sort_values(param)
                y = scale * curve[metric].to_numpy(dtype=float)
                errors = np.vstack([y - scale * curve[f"{metric}_lo"], scale * curve[f"{metric}_hi"] - y])
                colour, marker = styles[label]
                ax.errorbar(
                    curve[param], y, yerr=np.nan_to_num(errors), marker=marker, capsize=3, color=colour, label=label
                )
            edge = blended_transform_factory(ax.transAxes, ax.transData)
            for j, (_, base) in enumerate(rows[rows[param].isna()].iterrows()):
                colour, marker = styles[base["label"]]
                mean = scale * base[metric]
                ax.axhline(mean, linestyle="--", color=colour, label=f"{base['label']} (no {_title(param)})")
                low, high = scale * base[f"{metric}_lo"], scale * base[f"{metric}_hi"]
                ax.errorbar(  # just outside the panel's right edge, clear of the curve's points
                    1.02 + 0.035 * j,
                    mean,
                    yerr=np.nan_to_num([[mean - low], [high - mean]]),
                    transform=edge,
                    color=colour,
                    marker=marker,
                    markersize=4,
                    capsize=3,
                    clip_on=False,
                )
            axis_scale = _set_xscale(ax, curves[param].to_numpy(dtype=float), param) if len(curves) else ""
            if len(curves):
                _value_ticks(ax, curves[param])
            ax.set_xlabel(_title(param) + axis_scale)
            if scale == 100:
                percent_axis(ax, f"{_title(metric)} accuracy (%)")
            else:
                ax.set_ylabel(_title(metric))
            ax.set_title(_title(metric) + (f", {head} head" if head is not None else ""))
            ax.grid(alpha=0.3)
    handles = {}
    for ax in axes.ravel():  # every line once, from whichever panel drew it
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    note = f"{INTERVALS_NOTE}; dashed: configurations without {_title(param)}, their interval right of the panel"
    figure.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncols=legend_columns(list(handles), figure.get_figwidth()),  # long labels: fewer columns, none cut
        fontsize="small",
        title=wrapped(note, figure),
        title_fontsize="x-small",
    )
    figure.suptitle(title)
    return figure


def pareto_figure(trials: pd.DataFrame, x: str, y: str, *, param: str, maximize=(True, True), title: str) -> Figure:
    """Every trial as a point (colour: pre-processor), the non-dominated ones ringed and joined.

    Points carry their `param` value as a label where it fits without overlapping another label;
    front points are labelled first.
    """
    front = pareto_mask(trials[x], trials[y], maximize=maximize)
    figure = Figure(figsize=(6.4, 5.2), layout="constrained")
    FigureCanvasAgg(figure)  # label placement measures text, which needs a renderer
    ax = figure.subplots()
    scale = {axis: 100 if name.startswith("acc_") else 1 for axis, name in (("x", x), ("y", y))}
    trials = trials.assign(_x=scale["x"] * trials[x], _y=scale["y"] * trials[y])
    x_name, y_name, x, y = x, y, "_x", "_y"
    groups = trials["preprocessor.kind"] if "preprocessor.kind" in trials else pd.Series("trials", index=trials.index)
    for kind, members in trials.groupby(groups, sort=False):
        colour, _ = configuration_style(kind, None)
        ax.scatter(members[x], members[y], color=colour, label=str(kind), alpha=0.8, zorder=2)
    on_front = trials[front].sort_values(x, ascending=not maximize[0])
    ax.scatter(
        on_front[x],
        on_front[y],
        s=110,
        facecolors="none",
        edgecolors="black",
        linewidths=1.2,
        label=f"Pareto front ({len(on_front)} of {len(trials)})",
        zorder=3,
    )
    ax.plot(
        on_front[x],
        on_front[y],
        color="black",
        linewidth=0.8,
        drawstyle="steps-post" if maximize[0] else "steps-pre",
        zorder=1,
    )
    for axis, name, best in (("x", x_name, maximize[0]), ("y", y_name, maximize[1])):
        label = _title(name) + (" accuracy (%)" if scale[axis] == 100 else "") + ("" if best else " (lower is better)")
        if scale[axis] == 100:
            percent_axis(ax, label, axis)
        else:
            (ax.set_xlabel if axis == "x" else ax.set_ylabel)(label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    if param in trials.columns:
        order = list(trials.index[front]) + list(trials.index[~front])
        place_labels(
            ax,
            [
                (trials.at[i, x], trials.at[i, y], _param_text(param, trials.at[i, param]))
                for i in order
                if not pd.isna(trials.at[i, param])
            ],
        )
    return figure


def _param_text(param: str, value) -> str:
    return f"{_title(param)}={value:g}" if isinstance(value, (float, int, np.number)) else f"{_title(param)}={value}"


def place_labels(ax, points: list[tuple[float, float, str]]) -> list:
    """Annotate points greedily: the first offset whose box overlaps no earlier label is used.

    A label that fits nowhere is left out rather than drawn over another one. Hand-written
    because matplotlib has no overlap avoidance and adjustText moves labels without a guarantee.
    """
    renderer = ax.figure.canvas.get_renderer()
    ax.figure.draw_without_rendering()  # settle the layout so boxes are in final coordinates
    frame = ax.get_window_extent(renderer)
    placed, boxes = [], []
    for px, py, text in points:
        for dx, dy in LABEL_OFFSETS:
            label = ax.annotate(
                text,
                (px, py),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize="x-small",
                ha="left" if dx >= 0 else "right",
            )
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in boxes):
                placed.append(label)
                boxes.append(box)
                break
            label.remove()
    return placed


def epochs_figure(
    trials: pd.DataFrame, epochs: pd.DataFrame, *, title: str, running: dict[str, str] | None = None
) -> Figure:
    """Training curves per stage (loss; train accuracy for the head, in %), mean over seeds per
    configuration; `running`: config hash -> label of trials still training (no row yet), drawn
    dotted with their epochs so far. Every panel starts at 0 and never collapses to a point."""
    running = running or {}
    keys = varying(trials, config_columns(trials))
    labels = {row["config_hash"]: _label(row, keys) for _, row in trials.iterrows()}
    kinds = dict(zip(trials["config_hash"], trials.get("preprocessor.kind", pd.Series("trials", index=trials.index))))
    epochs = epochs[epochs["config_hash"].isin(labels) | epochs["config_hash"].isin(running)].copy()
    if epochs.empty:
        raise UserError("these trials have no per-epoch records (results/epochs/ is empty)")
    by_kind = len(set(labels.values())) > MAX_LABELLED_LINES
    epochs["line"] = epochs["config_hash"].map(kinds if by_kind else labels).fillna(epochs["config_hash"].map(running))
    order = {stage: index for index, stage in enumerate(EPOCH_STAGES)}  # unknown stages last
    stages = sorted(set(epochs["stage"]), key=lambda stage: order.get(stage, len(order)))
    panels = [
        (stage, column)
        for stage in stages
        for column in EPOCH_PANELS
        if column in epochs and epochs.loc[epochs["stage"] == stage, column].notna().any()
    ]
    columns = min(len(panels), 2)
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.8 * columns, 3.6 * rows + 0.8), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for unused in axes[len(panels) :]:
        unused.set_visible(False)
    colours = line_colours(epochs["line"])
    still_running = set(running.values())
    for ax, (stage, column) in zip(axes, panels):
        scale = 100 if column == "train_acc" else 1
        rows = epochs[(epochs["stage"] == stage) & epochs[column].notna()]
        for line, members in rows.groupby("line", sort=False):
            style = ":" if line in still_running else "-"
            if by_kind:  # many configurations: one thin line each, coloured by kind
                for _, one in members.groupby("config_hash"):
                    ax.plot(one["epoch"], scale * one[column], color=colours[line], linewidth=0.7, alpha=0.6)
            else:  # mean over the seeds of the configuration
                mean = members.groupby("epoch")[column].mean()
                ax.plot(mean.index, scale * mean.to_numpy(), marker=".", linestyle=style, color=colours[line])
        ax.set_xlabel("epoch")
        ax.set_title(f"{stage}: {EPOCH_PANELS[column]}")
        if scale == 100:
            percent_axis(ax, "train accuracy (%)")
        else:
            top = float(rows[column].max()) if len(rows) else 0.0
            ax.set_ylim(0, top * 1.05 if top > 0 else 1.0)  # from 0; an all-zero loss is not a 1e-17 scale
            ax.set_ylabel(EPOCH_PANELS[column])
        ax.grid(alpha=0.3)
    # Built from the colour map, not from a panel: a line can be missing from one panel (Identity
    # has no pre-processor epochs).
    handles = [
        Line2D(
            [],
            [],
            color=colour,
            marker="" if by_kind else ".",
            linestyle=":" if line in still_running else "-",
            label=line,
        )
        for line, colour in colours.items()
    ]
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncols=legend_columns([h.get_label() for h in handles], figure.get_figwidth()),
        fontsize="small",
    )
    figure.suptitle(title + (f" ({len(running)} still training, dotted)" if running else ""))
    return figure


def running_labels(sweep_dir: Path, keys) -> dict[str, str]:
    """config hash -> 'cropd, preprocessor.lambda=10, clean head (running)' for trials still
    training: the settings their grid point or search set (config.json's overrides)."""
    from orchestrator.store.paths import SweepPaths

    found = {}
    for key in keys:
        try:
            record = json.loads(SweepPaths(sweep_dir).trial_config(key).read_text())
            config = record["config"]
            overrides = record.get("overrides") or []
        except (OSError, ValueError, KeyError, TypeError):
            found[key] = f"{key[:8]} (running)"
            continue
        parts = []
        for name in overrides:
            if name == "seed" or name.endswith(".seed") or name.startswith("evaluation."):
                continue  # seeds are averaged over, as for finished trials; evaluation is how much, not what
            value = config
            for part in name.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                continue
            if name == "preprocessor.kind":
                parts.insert(0, str(value))
            elif name == "head.mode":
                parts.append(f"{value} head")
            else:
                parts.append(f"{_title(name)}={setting_text(value)}")
        found[key] = (", ".join(parts) or key[:8]) + " (running)"
    return found


def strength_figure(trials: pd.DataFrame, *, title: str) -> Figure:
    """PGD accuracy against eps and against steps on the first test points, one line per configuration.

    The line is the mean over seeds, the band their min-max (only means are stored per trial, so
    there is no interval). A rising line is the obfuscated-gradient sign (AdvCL Sec. 5.1);
    configurations a seed of which was flagged for it say so in the legend.
    """
    table = aggregate_seeds(trials, [])
    keys = varying(table, config_columns(table))
    line_of = {}
    for _, row in table.iterrows():
        rises = [what for flag, what in RISES_FLAGS.items() if flag in str(row["integrity_flags"]).split(",")]
        label = _label(row, keys) + (f" (flag: rises with {' and '.join(rises)})" if rises else "")
        line_of.update(dict.fromkeys(row["config_hashes"].split(","), label))
    points = {
        column: _sweep_points(trials, column, line_of, scale) for column, (_, _, scale) in STRENGTH_PANELS.items()
    }
    if all(frame.empty for frame in points.values()):
        raise UserError(
            "these trials have no attack-strength sweep (sweep_eps and sweep_steps are empty: "
            "evaluation.integrity was off, or eps was 0)"
        )
    drawn = pd.concat(points.values())["line"]  # a configuration with no sweep gets no legend entry
    colours = line_colours(drawn)
    width = 10.0
    columns = legend_columns([*colours, "evaluation eps"], width)
    figure = Figure(
        figsize=(width, 4.6 + LEGEND_ROW_INCHES * math.ceil((len(colours) + 1) / columns)), layout="constrained"
    )
    axes = figure.subplots(1, 2)
    for ax, (column, (panel, xlabel, _)) in zip(axes, STRENGTH_PANELS.items()):
        for line, members in points[column].groupby("line", sort=False):
            seeds = 100 * members.groupby("x")["accuracy"].agg(["mean", "min", "max"])
            ax.plot(seeds.index, seeds["mean"], marker="o", color=colours[line], label=line)
            ax.fill_between(seeds.index, seeds["min"], seeds["max"], color=colours[line], alpha=0.15, linewidth=0)
        # Log x on both: steps 1-50, and eps from a quarter of the budget to the unbounded point
        # (eps 1 = 255/255, integrity.UNBOUNDED_EPS), which a linear axis would squash the rest against.
        ax.set_xscale("log")
        _value_ticks(ax, points[column]["x"])
        ax.set(xlabel=xlabel, title=panel)
        percent_axis(ax, "robust accuracy (%)")
        ax.grid(alpha=0.3)
    # Every evaluation eps among the swept trials: trials may differ in it, x is absolute.
    swept = trials[trials["config_hash"].isin(points["sweep_eps"]["config_hash"])]
    marks = sorted(set(swept.get("eps", pd.Series(dtype=float)).dropna()))
    for eps in marks:
        axes[0].axvline(255 * eps, linestyle=":", color="0.35")
    handles = [Line2D([], [], color=colour, marker="o", label=line) for line, colour in colours.items()]
    handles += [Line2D([], [], linestyle=":", color="0.35", label="evaluation eps")] if marks else []
    figure.legend(handles=handles, loc="outside lower center", ncols=columns, fontsize="small")
    evaluated = trials.get(count_column(NATURAL), pd.Series(dtype=float)).dropna()
    counts = sorted({min(SWEEP_POINTS, int(n)) for n in evaluated})
    figure.suptitle(
        f"{title}\nfirst {'/'.join(map(str, counts)) or SWEEP_POINTS} evaluated test points; "
        "shaded: min-max over seeds; a rising line suggests obfuscated gradients",
        fontsize="medium",
    )
    return figure


def _sweep_points(trials: pd.DataFrame, column: str, line_of: dict, scale: float) -> pd.DataFrame:
    """One row per trial and sweep point: config_hash, line, x (times `scale`), accuracy; '[]' or no
    column adds none."""
    texts = trials[column] if column in trials else pd.Series(None, index=trials.index, dtype=object)
    rows = [
        (key, line_of[key], round(scale * x, 9), accuracy)
        for key, text in zip(trials["config_hash"], texts)
        if isinstance(text, str)
        for x, accuracy in json.loads(text)
    ]
    return pd.DataFrame(rows, columns=["config_hash", "line", "x", "accuracy"])
