"""`orchestrator report <sweep>`: the paper-style table (Natural, PGD-10, PGD-20, AutoAttack).

Markdown by default, LaTeX for the paper, CSV for a spreadsheet, JSON for a script (one object
on stdout, nothing else there); -o writes a file instead of printing. Seeds of one configuration
are one row: mean ± half of its 95% interval, and the test points behind each column. Then the
paired differences of every row against a reference row (Vanilla by default) on the same test
points: McNemar's mid-p and Tango's interval with one seed, a sign-flip test over points and a
seed x point bootstrap with several, Holm-adjusted over the table (orchestrator/analysis/paired.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    from orchestrator.analysis.report import FORMATS

    parser = commands.add_parser(
        "report",
        help="the paper-style table of a sweep (markdown, LaTeX, CSV or JSON)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("target", type=Path, help="a sweep directory, its spec, or a results folder")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (default: the -o file's suffix: .md, .tex, .csv, .json; else markdown)",
    )
    parser.add_argument("--where", metavar="SQL", help="a DuckDB condition on the trials to include")
    parser.add_argument(
        "--compare-to",
        action="append",
        metavar="REFERENCE",
        help="paired differences against this configuration: a pre-processor kind (vanilla) or settings "
        "(preprocessor.kind=cropd,preprocessor.lambda=1); repeat for several; 'none' for no comparison "
        "(default: vanilla when the sweep has it, else identity)",
    )
    parser.add_argument(
        "--costs",
        action="store_true",
        help="the cost view instead (paper Tables 11 and 12): seconds per stage and parameter counts per row",
    )
    parser.add_argument("-o", "--output", type=Path, help="write the table to this file (default: print it)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.analysis.frames import finished_trials
    from orchestrator.cli.outputs import report_format
    from trainables.artifacts import atomic_write_bytes

    fmt = report_format(args.output, args.format)  # before any work: a wrong file name costs nothing
    trials = finished_trials(args.target, where=args.where)
    if args.costs:
        from orchestrator.analysis.costs import render_costs

        text = render_costs(trials, fmt)
    else:
        text = report_text(args.target, trials, fmt, args.compare_to)
    if args.output is None:
        sys.stdout.write(text)
    else:
        atomic_write_bytes(args.output, text.encode())
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def report_text(target: Path, trials, fmt: str = "markdown", compare_to: list[str] | None = None) -> str:
    """The table and its paired comparisons (the default reference unless `compare_to` says)."""
    from orchestrator.analysis.frames import configurations, present_metrics
    from orchestrator.analysis.paired import sweep_comparisons
    from orchestrator.analysis.provenance import check_one_foundation_per_configuration, warn_about_compute
    from orchestrator.analysis.report import render

    check_one_foundation_per_configuration(trials, configurations(trials))
    warn_about_compute(trials)
    state = _state(target) or {}  # read once: the plan, the planned count
    plan = state.get("plan") if isinstance(state.get("plan"), dict) else None
    comparisons = sweep_comparisons(
        target, trials, compare_to, present_metrics(trials), planned_kinds=planned_kinds(plan)
    )
    if comparisons is None:
        print("orchestrator: no per-example outcomes in these results: no paired comparison", file=sys.stderr)
    text = render(trials, fmt, comparisons or [], selected_on_test=bool(plan and plan.get("select_on_test") is True))
    planned = state.get("num_trials")
    still_to_run = _still_to_run(target) if isinstance(planned, int) else 0
    return _with_progress(text, fmt, len(trials), planned if isinstance(planned, int) else None, still_to_run)


def _with_progress(text: str, fmt: str, finished: int, planned: int | None, still_to_run: int) -> str:
    """`text` with "k of N planned trials finished" ahead of it while trials are still to run
    (started or not started), so a report of a running sweep never reads as final (also said on
    stderr, for CSV). A sweep whose other trials failed or were stopped early is complete."""
    if planned is None or still_to_run == 0:
        return text
    line = (
        f"Partial: {finished} of {planned} planned trials finished; "
        "rows, bold and comparisons change as the rest finish."
    )
    print(f"orchestrator: {line}", file=sys.stderr)
    if fmt == "markdown":
        return f"**{line}**\n\n{text}"
    if fmt == "latex":
        return f"% {line}\n{text}"
    if fmt == "json":
        import json

        document = json.loads(text)
        document["progress"] = {"finished": finished, "planned": planned}
        return json.dumps(document, indent=2) + "\n"
    return text


def planned_kinds(plan: dict | None) -> list[str]:
    """The pre-processor kinds the sweep's plan runs (its grid and its trial section)."""
    if not plan:
        return []
    kinds = [plan.get("trial", {}).get("preprocessor", {}).get("kind")]
    grid = plan.get("grid") or []
    for entry in grid if isinstance(grid, list) else [grid]:
        values = entry.get("preprocessor.kind") if isinstance(entry, dict) else None
        kinds += values if isinstance(values, list) else [values]
    return [kind for kind in dict.fromkeys(kinds) if isinstance(kind, str)]


def _state(target: Path) -> dict | None:
    from orchestrator.store.parquet import read_state
    from orchestrator.store.paths import SweepPaths
    from trainables.errors import UserError

    if not Path(target).is_dir() or not SweepPaths(target).state.is_file():
        return None  # a spec or a copy of results/: no plan to read
    try:
        return read_state(target)
    except UserError:  # a damaged plan does not stop a report of the results beside it
        return None


def _still_to_run(target: Path) -> int:
    """Planned trials of the sweep folder `target` that are running or not started."""
    from orchestrator.store.counts import sweep_counts

    counts = sweep_counts(Path(target))
    return counts["started"] + counts["not started"]
