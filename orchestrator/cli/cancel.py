"""`orchestrator cancel <sweep dir or spec>`: scancel the sweep's Slurm jobs that may still run.

Results already written stay; running the sweep command again resumes from them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.backends.registry import backend_of
from orchestrator.spec.target import sweep_dir_of


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("cancel", help="cancel a sweep's Slurm jobs (results so far are kept)")
    parser.add_argument("target", type=Path, help="a sweep directory, or the spec it was run from")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sweep_dir = sweep_dir_of(args.target)
    cancelled = backend_of(sweep_dir).cancel(sweep_dir)
    if cancelled:
        print(f"cancelled Slurm job(s) {', '.join(cancelled)} of {sweep_dir}", file=sys.stderr)
    else:
        print(f"{sweep_dir}: no Slurm job of this sweep is pending or running", file=sys.stderr)
    return 0
