"""`orchestrator report <sweep>`: the paper-style table (Natural, PGD-10, PGD-20, AutoAttack).

Markdown by default, LaTeX for the paper, CSV for a spreadsheet; -o writes a file instead of
printing. Seeds of one configuration are one row: mean ± half of its 95% interval.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    from .report import FORMATS

    parser = commands.add_parser("report", help="the paper-style table of a sweep (markdown, LaTeX or CSV)",
                                 description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="a sweep directory, its spec, or a results folder")
    parser.add_argument("--format", choices=FORMATS, default="markdown")
    parser.add_argument("--where", metavar="SQL", help="a DuckDB condition on the trials to include")
    parser.add_argument("-o", "--output", type=Path, help="write the table to this file (default: print it)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from trainables.artifacts import atomic_write_bytes

    from .analysis import finished_trials
    from .report import render

    text = render(finished_trials(args.target, where=args.where), args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        atomic_write_bytes(args.output, text.encode())
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
