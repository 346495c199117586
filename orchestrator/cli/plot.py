"""`orchestrator plot <sweep> --kind summary|tradeoff|pareto|fraction|epochs|strength -o FILE`.

FILE: .png, .svg or .pdf. summary: every configuration's natural and worst-case accuracy with its
interval, clean and robust heads apart (the HTML report's figure); tradeoff: accuracies against a
parameter (lambda by default); pareto: clean against robust accuracy, front highlighted; fraction:
accuracy against data_fraction (paper Table 9); epochs: training curves, of running trials too;
strength: PGD accuracy against eps and steps (obfuscated-gradient check, AdvCL Fig. 3). Accuracy
in % from 0, one colour and marker per configuration in every figure (figure_style.py).
Everything is checked before drawing; no image is left half-written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

KINDS = ("summary", "tradeoff", "pareto", "fraction", "epochs", "strength")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "plot",
        help="summary, trade-off curves, Pareto front, data fraction, training curves or attack strength "
        "as PNG, SVG or PDF",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "targets",
        type=Path,
        nargs="+",
        metavar="target",
        help="a sweep directory, its spec, or a results folder; several: one figure across them "
        "(a sweep per configuration, as `report S1 S2`; not for --kind epochs)",
    )
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("-o", "--output", type=Path, required=True, help="image file: .png, .svg or .pdf")
    parser.add_argument(
        "--param",
        default=None,
        help="the parameter axis (tradeoff: default preprocessor.lambda; pareto: the point labels)",
    )
    parser.add_argument(
        "--metrics",
        default=None,
        help="comma-separated accuracies to draw (default: every headline accuracy the trials have)",
    )
    parser.add_argument("--x", default="acc_natural", help="pareto: first objective (default: acc_natural)")
    parser.add_argument("--y", default="acc_pgd20", help="pareto: second objective (default: acc_pgd20)")
    parser.add_argument("--where", metavar="SQL", help="a DuckDB condition on the trials to include")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.analysis import plots
    from orchestrator.analysis.frames import check_metric, present_metrics, relation
    from orchestrator.analysis.several_sweeps import finished_trials_of
    from orchestrator.cli.outputs import check_folder
    from trainables.errors import UserError

    plots.image_format(args.output)  # a wrong file name or folder fails before any work
    check_folder(args.output)
    if args.kind == "epochs" and len(args.targets) > 1:
        raise UserError("--kind epochs: one sweep at a time (its per-epoch records); give one target")
    trials = finished_trials_of(args.targets, where=args.where)
    target = args.targets[0]
    sweep = ", ".join(sorted(set(trials["sweep"])))
    if args.metrics is not None:
        metrics = [check_metric(trials, name.strip(), "--metrics") for name in args.metrics.split(",") if name.strip()]
    else:
        metrics = present_metrics(trials)
    if args.kind == "summary":
        from orchestrator.analysis.summary_figure import summary_figure

        found = summary_figure(trials, title=sweep)
        if found is None:
            raise UserError("--kind summary: no finished trial measured natural accuracy")
        figure = found[0]
    elif args.kind == "tradeoff":
        param = args.param or "preprocessor.lambda"
        figure = plots.tradeoff_figure(
            trials, param, metrics, title=f"{sweep}: accuracy against {plots.TITLES.get(param, param)}"
        )
    elif args.kind == "fraction":
        figure = plots.tradeoff_figure(
            trials,
            args.param or "data_fraction",
            metrics,
            title=f"{sweep}: accuracy against the fraction of training data (paper Table 9)",
        )
    elif args.kind == "pareto":
        x, y = check_metric(trials, args.x, "--x"), check_metric(trials, args.y, "--y")
        figure = plots.pareto_figure(
            trials,
            x,
            y,
            param=args.param or "preprocessor.lambda",
            title=f"{sweep}: {plots.TITLES.get(x, x)} against {plots.TITLES.get(y, y)}",
        )
    elif args.kind == "strength":
        figure = plots.strength_figure(trials, title=f"{sweep}: robust accuracy against attack strength")
    else:
        epochs = relation(target, "SELECT * FROM epochs").to_arrow_table().to_pandas()
        figure = plots.epochs_figure(
            trials, epochs, title=f"{sweep}: training curves", running=_running(target, trials, epochs)
        )
    plots.save(figure, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _running(target: Path, trials, epochs) -> dict[str, str]:
    """Labels of the trials with epochs but no row yet (still training), when `target` is a sweep folder
    (a copied results folder has no trial configs to name them by)."""
    from orchestrator.analysis.plots import running_labels
    from orchestrator.store.paths import SweepPaths

    if not Path(target).is_dir() or not SweepPaths(target).state.is_file() or epochs.empty:
        return {}
    from orchestrator.analysis.frames import load

    with_rows = set(load(target, finished_only=False)["config_hash"])  # finished, failed or stopped
    return running_labels(Path(target), sorted(set(epochs["config_hash"]) - with_rows))
