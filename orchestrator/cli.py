"""`orchestrator` command line: one subcommand per job, user errors as one line and exit code 2.

Subcommands: `sweep` (run or resume a study), `prepare` (what a spec needs on disk, offline),
`status`, `results` (query the Parquet), `report` (the paper-style table), `plot`, `pareto`,
`cancel` (a sweep's Slurm jobs), and `preprocessors` (train the pre-processors of one dataset, no Ray).
"""

from __future__ import annotations

import argparse
import os
import sys

# Before torch loads: OpenMP threads that busy-wait make concurrent trials on shared cores crawl
# (measured 1.6 s -> 77 s for a tiny pre-training beside one other busy process).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from trainables.errors import UserError  # noqa: E402

# Each command module imports torch, Ray and the like inside its run(), so `--help` and the
# read-only commands start in about a second.
from . import (
    cancel_command,
    export_command,
    pareto_command,
    plan_command,
    plot_command,
    prepare_command,
    preprocessors_command,
    report_command,  # noqa: E402
    results_command,
    status_command,
    sweep_command,
    unreadable,
)

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sweep_command.add_parser(commands)
    prepare_command.add_parser(commands)
    plan_command.add_parser(commands)
    status_command.add_parser(commands)
    results_command.add_parser(commands)
    report_command.add_parser(commands)
    plot_command.add_parser(commands)
    pareto_command.add_parser(commands)
    cancel_command.add_parser(commands)
    export_command.add_parser(commands)
    preprocessors_command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except UserError as err:
        print(f"orchestrator: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("orchestrator: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        # Damaged files the command skipped (or a sweep moved aside), all named in one line.
        warning = unreadable.warning_line()
        if warning:
            print(warning, file=sys.stderr)
        unreadable.forget()


if __name__ == "__main__":
    sys.exit(main())
