"""`orchestrator` command line: one subcommand per job, user errors as one line and exit code 2.

Subcommands: `sweep` (run or resume a study), `prepare` (what a spec needs on disk, offline),
`status`, `results` (query the Parquet), `report` (the paper-style table), `plot`, `pareto`,
`cancel` (a sweep's Slurm jobs), `preprocessors` (train the pre-processors of one dataset, no Ray),
and `completion` (the shell code for tab completion). `-q` / `-v` before or after the subcommand
set the log levels (orchestrator/logs.py).
"""

from __future__ import annotations

import argparse
import os
import sys

# Before torch loads: OpenMP threads that busy-wait make concurrent trials on shared cores crawl
# (measured 1.6 s -> 77 s for a tiny pre-training beside one other busy process).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from orchestrator import logs

# Each command module imports torch, Ray and the like inside its run(), so `--help` and the
# read-only commands start in about a second.
from orchestrator.cli import (
    cancel,
    export,
    pareto,
    plan,
    plot,
    prepare,
    preprocessors,
    report,
    results,
    status,
    sweep,
)
from orchestrator.store import damaged_files
from trainables.errors import UserError  # noqa: E402

EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool the pipe's reader closed on
SHELLS = ("bash", "zsh")
# Positional arguments that take a spec (or a sweep folder, or either): tab completes folders and
# YAML files only.
SPEC_ARGUMENTS = ("spec", "target", "sweep")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    add_verbosity_options(parser, default=logs.DEFAULT)
    # Not required: a bare `orchestrator` prints this help (main) instead of an error.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    sweep.add_parser(commands)
    prepare.add_parser(commands)
    plan.add_parser(commands)
    status.add_parser(commands)
    results.add_parser(commands)
    report.add_parser(commands)
    plot.add_parser(commands)
    pareto.add_parser(commands)
    cancel.add_parser(commands)
    export.add_parser(commands)
    preprocessors.add_parser(commands)
    completion = commands.add_parser(
        "completion",
        help="print the shell code for tab completion of commands, options and spec paths",
        description="Print the code that makes bash or zsh complete `orchestrator` commands, options "
        'and spec paths: eval "$(orchestrator completion bash)" (in ~/.bashrc, or ~/.zshrc with zsh).',
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    completion.set_defaults(run=print_completion)
    for subparser in commands.choices.values():
        # SUPPRESS: a subcommand that was not given -q/-v keeps what the main parser set.
        add_verbosity_options(subparser, default=argparse.SUPPRESS)
        for action in subparser._actions:
            if not action.option_strings and action.dest in SPEC_ARGUMENTS:
                action.completer = _spec_completer  # type: ignore[attr-defined]
    return parser


def installed_version() -> str:
    """The installed package's version (pyproject.toml's), or "unknown" when run from a bare checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cropd-orchestrator")
    except PackageNotFoundError:
        return "unknown (not installed)"


def add_verbosity_options(parser: argparse.ArgumentParser, *, default) -> None:
    levels = parser.add_mutually_exclusive_group()
    levels.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const=logs.QUIET,
        default=default,
        help="warnings only, from this tool, Ray, Optuna, transformers and AutoAttack",
    )
    levels.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="store_const",
        const=logs.VERBOSE,
        default=default,
        help="debug logs from this tool and AutoAttack's progress; info from Ray, Optuna and transformers",
    )


def _spec_completer(prefix: str, **_) -> list[str]:
    """Folders and *.yaml / *.yml files under the typed prefix (a sweep folder or a spec)."""
    from argcomplete.completers import FilesCompleter

    return list(FilesCompleter(allowednames=("yaml", "yml"), directories=True)(prefix))


def print_completion(args: argparse.Namespace) -> int:
    import argcomplete

    sys.stdout.write(argcomplete.shellcode(["orchestrator"], shell=args.shell))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # asks the backends registry, which reads installed packages' entry points
    except UserError as err:
        print(f"orchestrator: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    if argv is None and "_ARGCOMPLETE" in os.environ:  # the shell asks for completions: answer, exit
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    if args.command is None:  # bare `orchestrator` (or only -q / -v): what it can do, not an error
        parser.print_help()
        return 0
    # No option: $CROPD_LOG_LEVEL if the shell set it, else every logger as it was.
    logs.set_level(logs.current() if args.verbosity == logs.DEFAULT else args.verbosity)
    try:
        code = args.run(args) or 0
        sys.stdout.flush()  # here, where a closed pipe is caught, not in Python's flush at exit
        return code
    except BrokenPipeError:
        # The reader went away (`orchestrator results S | head`): stop quietly, as `cat` would.
        # Point stdout at /dev/null so Python's own flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except UserError as err:
        print(f"orchestrator: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("orchestrator: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        # Damaged files the command skipped (or a sweep moved aside), all named in one line.
        warning = damaged_files.warning_line()
        if warning:
            print(warning, file=sys.stderr)
        damaged_files.forget()


if __name__ == "__main__":
    sys.exit(main())
