"""`orchestrator cancel <sweep dir or spec>`: stop a sweep: scancel its Slurm jobs that may still
run, or stop the local driver running it on this machine (SIGINT, as Ctrl-C would).

Results already written stay; running the sweep command again resumes from them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.backends.registry import backend_of
from orchestrator.spec.target import sweep_dir_of


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "cancel", help="stop a sweep: its Slurm jobs, or its local driver (results so far are kept)"
    )
    parser.add_argument("target", type=Path, help="a sweep directory, or the spec it was run from")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sweep_dir = sweep_dir_of(args.target)
    backend = backend_of(sweep_dir)
    cancelled = backend.cancel(sweep_dir)
    if not cancelled:
        what = "no Slurm job of this sweep is pending or running" if backend.name == "slurm" else "no driver runs it"
        print(f"{sweep_dir}: {what}", file=sys.stderr)
    elif backend.name == "slurm":
        print(f"cancelled Slurm job(s) {', '.join(cancelled)} of {sweep_dir}", file=sys.stderr)
    else:
        print(f"stopped the {', '.join(cancelled)} of {sweep_dir}; the same sweep command resumes it", file=sys.stderr)
    return 0
