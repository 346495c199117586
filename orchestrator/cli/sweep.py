"""`orchestrator sweep SPEC.yaml`: run a study (or resume it) here, on a Ray cluster, or on Slurm.

The spec is validated completely first; a second run of the same command resumes the sweep.
The backend (`--backend`, else the spec's `backend:`; registered in spec/backends.py) runs the
sweep here or submits it, with its own options; this command says what happened.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from orchestrator.cli.status import print_status
from orchestrator.spec.backends import add_backend_options, backend_names

WAIT_POLL_S = 5.0


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("sweep", help="run or resume the sweep a YAML spec describes")
    parser.add_argument("spec", type=Path, help="sweep spec, e.g. search_spaces/quickstart.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override the spec, Hydra-style: preprocessor.epochs=1 seeds=[0] name=smoke "
        "grid.0.preprocessor.lambda=[1] search.trials=4",
    )
    parser.add_argument("--out", type=Path, default=None, help="sweep directory (default: runs/<name>)")
    parser.add_argument(
        "--backend",
        choices=backend_names(),
        default=None,
        help="local: Ray here or at --address; slurm: submit with submitit (default: the spec's backend:, else local)",
    )
    parser.add_argument("--address", default=None, help="join a running Ray cluster (default: start Ray here)")
    parser.add_argument("--restart", action="store_true", help="move an existing sweep directory aside and start over")
    parser.add_argument("--retry-failed", action="store_true", help="on resume, run failed trials again")
    parser.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    parser.add_argument(
        "--wait", action="store_true", help="after submitting (slurm), follow the sweep until its jobs end"
    )
    add_backend_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: they pull in torch and Ray, which `orchestrator --help` and
    # the read-only commands should not wait for; a bad spec is refused before Ray is imported.
    from orchestrator.backends.registry import backend_class
    from orchestrator.spec.sweep_spec import load_spec
    from orchestrator.store.paths import default_sweep_dir

    spec = load_spec(args.spec, args.overrides)
    sweep_dir = Path(args.out or default_sweep_dir(spec.name))
    backend = backend_class(args.backend or spec.backend).from_options(spec, args)
    # The backend refuses what cannot run before writing anything, then takes the sweep's lock (a
    # second driver is refused at once) and runs the sweep here or submits it.
    launched = backend.sweep(
        spec, sweep_dir, restart=args.restart, retry_failed=args.retry_failed, live=False if args.plain else None
    )
    if launched.outcome is not None:  # run here, to its end
        outcome = launched.outcome
        print_outcome(outcome.sweep_dir)
        return 0 if outcome.failed == 0 and outcome.unfinished == 0 else 1
    return follow_submitted(args, backend, launched.jobs, sweep_dir.resolve())


def print_outcome(sweep_dir: Path) -> None:
    """What a finished run leaves on screen: the counts and failures, then the paper-style table
    with the paired differences against the default reference (`orchestrator status` lists trials)."""
    from orchestrator.analysis.frames import load
    from orchestrator.cli.report import report_text

    print_status(sweep_dir, per_trial=False)
    trials = load(sweep_dir)
    if len(trials):
        print()
        print(report_text(sweep_dir, trials))


def follow_submitted(args: argparse.Namespace, backend, jobs: list, sweep_dir: Path) -> int:
    """Say what was submitted; with --wait, follow the sweep until its jobs end, then its outcome."""
    from orchestrator.store.counts import sweep_counts

    if not jobs:
        print(f"orchestrator: every planned trial of {sweep_dir} has a result; nothing submitted", file=sys.stderr)
    for job in jobs:
        print(backend.describe(job), file=sys.stderr)
    if not args.wait:
        print(f"follow it with `orchestrator status {sweep_dir}`", file=sys.stderr)
        return 0
    while backend.live_jobs(sweep_dir):
        time.sleep(WAIT_POLL_S)
    print_outcome(sweep_dir)
    counts = sweep_counts(sweep_dir)
    return 0 if counts["finished"] + counts["stopped"] == counts["planned"] else 1
