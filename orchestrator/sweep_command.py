"""`orchestrator sweep SPEC.yaml`: run a study (or resume it) on Ray here or on a Ray cluster.

The spec is validated completely first; a second run of the same command resumes the sweep.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .backends import LocalBackend
from .runner import default_sweep_dir, run_sweep
from .spec import load_spec
from .status_command import print_status


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("sweep", help="run or resume the sweep a YAML spec describes")
    parser.add_argument("spec", type=Path, help="sweep spec, e.g. search_spaces/quickstart.yaml")
    parser.add_argument("--out", type=Path, default=None, help="sweep directory (default: runs/<name>)")
    parser.add_argument("--address", default=None, help="join a running Ray cluster (default: start Ray here)")
    parser.add_argument("--restart", action="store_true", help="move an existing sweep directory aside and start over")
    parser.add_argument("--retry-failed", action="store_true", help="on resume, run failed trials again")
    parser.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    sweep_dir = args.out or default_sweep_dir(spec)
    outcome = run_sweep(spec, sweep_dir, backend=LocalBackend(address=args.address), restart=args.restart,
                        retry_failed=args.retry_failed, live=False if args.plain else None)
    print_status(outcome.sweep_dir)
    return 0 if outcome.failed == 0 and outcome.unfinished == 0 else 1
