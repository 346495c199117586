"""The sweep side of the project: command line, specs, search, backends, results, analysis.

It drives `trainables` (the science) and is the only side that knows about Ray, Optuna or Slurm.
From Python: `orchestrator.plan(spec)`, `orchestrator.sweep(spec)` (returns the finished trials),
`orchestrator.render_report(sweep)` and `orchestrator.load_epochs(sweep)` do what the commands
do (cli/api.py: the commands as functions). For notebooks: `orchestrator.load_results("runs/quickstart")` (pandas),
`orchestrator.results_relation(...)` (DuckDB) and `orchestrator.load_examples(...)` (per-example
outcomes), all reading only the sweep's Parquet files; `orchestrator.paired_difference(a, b)`
compares two configurations on the same test points. `orchestrator.load_pipeline(sweep, trial)`
rebuilds a finished trial's trained model (torch.nn.Module, eval mode).
"""

from . import compat

# Old module paths (pickles in sweep folders and Slurm jobs, old imports) resolve: see compat.py.
compat.install()

__all__ = [
    "plan",
    "sweep",
    "render_report",
    "load_epochs",
    "load_results",
    "results_relation",
    "load_examples",
    "pareto_front",
    "paper_table",
    "paired_difference",
    "compare_to_reference",
    "load_pipeline",
]

# Re-exported lazily (PEP 562), so `import orchestrator` stays instant and pulls in nothing heavy.
_EXPORTS = {
    "plan": ("cli.api", "plan"),
    "sweep": ("cli.api", "sweep"),
    "render_report": ("cli.api", "render_report"),
    "load_epochs": ("cli.api", "load_epochs"),
    "load_results": ("analysis.frames", "load"),
    "results_relation": ("analysis.frames", "relation"),
    "load_examples": ("analysis.frames", "load_examples"),
    "pareto_front": ("analysis.frames", "pareto_front"),
    "paper_table": ("analysis.report", "paper_table"),
    "paired_difference": ("analysis.paired", "paired_difference"),
    "compare_to_reference": ("analysis.paired", "compare_to_reference"),
    "load_pipeline": ("analysis.trained_models", "load_pipeline"),
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    from importlib import import_module

    module, attribute = _EXPORTS[name]
    return getattr(import_module(f"{__name__}.{module}"), attribute)


def __dir__() -> list[str]:
    # The lazily re-exported names too, so a notebook's completion (dir(orchestrator)) finds them.
    return sorted(set(globals()) | set(__all__))
