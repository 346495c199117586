"""The sweep side of the project: command line, specs, search, backends, results, analysis.

It drives `trainables` (the science) and is the only side that knows about Ray, Optuna or Slurm.
For notebooks: `orchestrator.load_results("runs/quickstart")` (pandas) and
`orchestrator.results_relation(...)` (DuckDB), both reading only the sweep's Parquet files.
"""
__all__ = ["load_results", "results_relation", "pareto_front", "paper_table"]

# Re-exported lazily (PEP 562), so `import orchestrator` stays instant and pulls in nothing heavy.
_EXPORTS = {"load_results": ("analysis", "load"), "results_relation": ("analysis", "relation"),
            "pareto_front": ("analysis", "pareto_front"), "paper_table": ("report", "paper_table")}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    from importlib import import_module

    module, attribute = _EXPORTS[name]
    return getattr(import_module(f"{__name__}.{module}"), attribute)
