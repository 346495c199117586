"""`orchestrator pareto <sweep>`: the trials no other trial beats on both objectives, as a table.

Clean against robust accuracy on the validation split by default, both maximised (a front is a
selection, so it is made on validation data; the test columns are shown beside, only reported);
any two metrics, either minimised. Trials with integrity flags are never on the front: they are
listed below it with their flags. Reads only the Parquet results, so it runs on a copy of
results/ and on a sweep still running.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.cli.options import add_format_option


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "pareto",
        help="the non-dominated trials of two metrics (clean vs robust accuracy)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("target", type=Path, help="a sweep directory, its spec, or a results folder")
    parser.add_argument("--x", default="val_acc_natural", help="first objective (default: val_acc_natural)")
    parser.add_argument("--y", default="val_acc_pgd20", help="second objective (default: val_acc_pgd20)")
    parser.add_argument("--minimize-x", action="store_true", help="lower x is better (a time, a parameter count)")
    parser.add_argument("--minimize-y", action="store_true", help="lower y is better")
    parser.add_argument(
        "--where",
        metavar="SQL",
        help="a DuckDB condition on the trials to include (quote dotted names: \"head.mode\" = 'robust')",
    )
    parser.add_argument("--by-config", action="store_true", help="one point per configuration: the mean over its seeds")
    add_format_option(parser, ("csv", "json"), "text (default): a table; csv; json")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.analysis.frames import (
        aggregate_seeds,
        check_metric,
        config_columns,
        finished_trials,
        pareto_front,
        varying,
    )
    from orchestrator.analysis.selection import flagged
    from orchestrator.cli.results import write
    from trainables.errors import UserError
    from trainables.schema.results import VALIDATION_PREFIX

    trials = finished_trials(args.target, where=args.where)
    for option, metric in (("--x", args.x), ("--y", args.y)):
        if metric.startswith(VALIDATION_PREFIX) and metric not in trials and len(trials):
            raise UserError(
                f"{option}: no {metric} in these results (trials from before validation splits): name test metrics "
                f"with --x/--y to see their front, which is then a report, not a selection"
            )
    x, y = check_metric(trials, args.x, "--x"), check_metric(trials, args.y, "--y")
    maximize = (not args.minimize_x, not args.minimize_y)
    # The test twins of validation objectives, shown beside them (reported, not selected on).
    reported = [m.removeprefix(VALIDATION_PREFIX) for m in (x, y) if m.startswith(VALIDATION_PREFIX)]
    reported = [m for m in dict.fromkeys(reported) if m in trials]
    if args.by_config:
        points = aggregate_seeds(trials, list(dict.fromkeys([x, y, *reported])))
        shown = [*varying(points, config_columns(points)), "n_seeds", x, f"{x}_half", y, f"{y}_half"]
        shown += [*reported, "integrity_flags", "config_hashes"]
    else:
        points = trials
        shown = ["config_hash", *varying(trials, config_columns(trials)), "seed", x, y, *reported, "integrity_flags"]
    excluded = flagged(points)
    front = pareto_front(points[~excluded], x, y, maximize=maximize)
    write(front[list(dict.fromkeys(c for c in shown if c in front.columns))], args.format)
    if excluded.any():
        names = points.loc[excluded, "config_hashes" if args.by_config else "config_hash"].astype(str)
        flags = points.loc[excluded, "integrity_flags"].astype(str)
        lines = "; ".join(f"{name[:12]} ({flag})" for name, flag in zip(names, flags))
        print(f"orchestrator: not on the front, integrity flags raised: {lines}", file=sys.stderr)
    return 0
