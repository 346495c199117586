"""`orchestrator pareto <sweep>`: the trials no other trial beats on both objectives, as a table.

Clean against robust accuracy by default, both maximised; any two metrics, either minimised.
Reads only the Parquet results, so it runs on a copy of results/ and on a sweep still running.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "pareto",
        help="the non-dominated trials of two metrics (clean vs robust accuracy)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("target", type=Path, help="a sweep directory, its spec, or a results folder")
    parser.add_argument("--x", default="acc_natural", help="first objective (default: acc_natural)")
    parser.add_argument("--y", default="acc_pgd20", help="second objective (default: acc_pgd20)")
    parser.add_argument("--minimize-x", action="store_true", help="lower x is better (a time, a parameter count)")
    parser.add_argument("--minimize-y", action="store_true", help="lower y is better")
    parser.add_argument(
        "--where",
        metavar="SQL",
        help="a DuckDB condition on the trials to include (quote dotted names: \"head.mode\" = 'robust')",
    )
    parser.add_argument("--by-config", action="store_true", help="one point per configuration: the mean over its seeds")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
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
    from orchestrator.cli.results import write

    trials = finished_trials(args.target, where=args.where)
    x, y = check_metric(trials, args.x, "--x"), check_metric(trials, args.y, "--y")
    maximize = (not args.minimize_x, not args.minimize_y)
    if args.by_config:
        points = aggregate_seeds(trials, [x] if x == y else [x, y])
        shown = [*varying(points, config_columns(points)), "n_seeds", x, f"{x}_half", y, f"{y}_half", "config_hashes"]
    else:
        points = trials
        shown = ["config_hash", *varying(trials, config_columns(trials)), "seed", x, y]
    front = pareto_front(points, x, y, maximize=maximize)
    write(front[list(dict.fromkeys(c for c in shown if c in front.columns))], args.format)
    return 0
