"""`orchestrator report <sweep> [<sweep> …]`: the paper-style table (Natural, PGD-10, PGD-20, AutoAttack).

Markdown by default, LaTeX for the paper, CSV for a spreadsheet, JSON for a script (one object
on stdout, nothing else there); -o writes a file instead of printing. Seeds of one configuration
are one row: mean ± half of its 95% interval, and the test points behind each column. Then the
paired differences of every row against a reference row (Vanilla by default) on the same test
points: McNemar's mid-p and Tango's interval with one seed, a sign-flip test over points and a
seed x point bootstrap with several, Holm-adjusted over the table (orchestrator/analysis/paired.py).
Several sweeps make one table with a sweep column, and by default a second comparison: each row
against its twin in the first sweep given (several_sweeps.py).
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
    parser.add_argument(
        "targets",
        type=Path,
        nargs="+",
        metavar="target",
        help="a sweep directory, its spec, or a results folder; several: one table with a sweep column, "
        "and each row against its twin in the first sweep",
    )
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
    parser.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="write the one-file HTML report (tables, paired differences, figures, spec, provenance) to FILE",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.analysis.several_sweeps import finished_trials_of
    from orchestrator.cli.outputs import report_format
    from trainables.artifacts import atomic_write_bytes
    from trainables.errors import UserError

    if args.html is not None:  # --html FILE: -o FILE in the html format
        if args.output is not None or args.costs:
            raise UserError("--html: give either --html FILE or -o FILE, and not with --costs")
        args.output, args.format = args.html, args.format or "html"
    fmt = report_format(args.output, args.format)  # before any work: a wrong file name costs nothing
    trials = finished_trials_of(args.targets, where=args.where)
    if args.costs:
        from orchestrator.analysis.costs import render_costs

        text = render_costs(trials, fmt)
    else:
        text = report_text(args.targets, trials, fmt, args.compare_to)
    if args.output is None:
        sys.stdout.write(text)
    else:
        atomic_write_bytes(args.output, text.encode())
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def report_text(targets: Path | list[Path], trials, fmt: str = "markdown", compare_to: list[str] | None = None) -> str:
    """The table and its paired comparisons (the default reference unless `compare_to` says) of
    one sweep, or of several (`trials` as several_sweeps.finished_trials_of stacked them)."""
    from orchestrator.analysis.frames import configurations, present_metrics
    from orchestrator.analysis.paired import sweep_comparisons
    from orchestrator.analysis.provenance import check_one_foundation_per_configuration, warn_about_compute
    from orchestrator.analysis.report import render

    targets = [Path(t) for t in targets] if isinstance(targets, (list, tuple)) else [Path(targets)]
    check_one_foundation_per_configuration(trials, configurations(trials))
    warn_about_compute(trials)
    states = [_state(target) or {} for target in targets]  # read once: the plans, the planned counts
    plans = [state["plan"] for state in states if isinstance(state.get("plan"), dict)]
    kinds = [kind for plan in plans for kind in planned_kinds(plan)]
    comparisons = sweep_comparisons(targets, trials, compare_to, present_metrics(trials), planned_kinds=kinds)
    if comparisons is None:
        print("orchestrator: no per-example outcomes in these results: no paired comparison", file=sys.stderr)
    selected_on_test = any(plan.get("select_on_test") is True for plan in plans)
    text = render(trials, fmt, comparisons or [], selected_on_test=selected_on_test)
    planned = [state.get("num_trials") for state in states]
    progress = None  # (finished, planned) while trials are still to run
    if all(isinstance(n, int) for n in planned) and sum(_still_to_run(target) for target in targets):
        progress = (len(trials), sum(planned))
    if fmt == "html":
        return _html_report(targets, trials, text, progress)
    return _with_progress(text, fmt, progress)


def _progress_line(progress: tuple[int, int]) -> str:
    finished, planned = progress
    return (
        f"Partial: {finished} of {planned} planned trials finished; "
        "rows, bold and comparisons change as the rest finish."
    )


def _with_progress(text: str, fmt: str, progress: tuple[int, int] | None) -> str:
    """`text` with "k of N planned trials finished" ahead of it while trials are still to run
    (started or not started), so a report of a running sweep never reads as final (also said on
    stderr, for CSV). A sweep whose other trials failed or were stopped early is complete."""
    if progress is None:
        return text
    finished, planned = progress
    line = _progress_line(progress)
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


def _html_report(targets: list[Path], trials, tables_html: str, progress: tuple[int, int] | None) -> str:
    """The one-file HTML report (analysis/html_page.py) around the tables `render` wrote."""
    import datetime

    import yaml

    from orchestrator.analysis.html_page import page, svg_of
    from orchestrator.analysis.summary_figure import summary_figure
    from orchestrator.store.paths import SweepPaths

    names = ", ".join(dict.fromkeys(trials["sweep"]))
    figures = []
    found = summary_figure(trials, title=names)
    if found is not None:
        figures.append((svg_of(found[0]), found[1]))
    lambdas = trials.get("preprocessor.lambda")
    if lambdas is not None and lambdas.dropna().nunique() > 1:  # the paper's lambda ablation as a curve
        from orchestrator.analysis.frames import present_metrics
        from orchestrator.analysis.plots import tradeoff_figure
        from trainables.schema.results import NATURAL, WORST, accuracy_column

        drawn = present_metrics(trials, (accuracy_column(NATURAL), accuracy_column(WORST)))
        figure = tradeoff_figure(trials, "preprocessor.lambda", drawn, title=f"{names}: accuracy against λ")
        figures.append(
            (svg_of(figure), "Accuracy in % against λ (log scale), per head; the legend says what the whiskers are.")
        )
    specs = []
    for target in targets:
        copy = SweepPaths(target).spec_copy if target.is_dir() else target
        state = _state(target) or {}
        if copy.is_file():
            specs.append((str(target), copy.read_text()))
        elif isinstance(state.get("plan"), dict):
            specs.append((str(target), yaml.safe_dump(state["plan"], sort_keys=False)))
    generated = (
        f"{len(trials)} finished trials of {names}; report written "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by `orchestrator report`"
    )
    if progress is not None:
        print(f"orchestrator: {_progress_line(progress)}", file=sys.stderr)
    return page(
        title=f"Report: {names}",
        tables_html=tables_html,
        banner=_progress_line(progress) if progress is not None else None,
        figures=figures,
        specs=specs,
        trials=trials,
        generated=generated,
    )
