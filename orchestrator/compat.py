"""Old module paths of the sweep side, mapped to where the code lives now: one table, one finder.

Pickles name classes and functions by module path, and some outlive a move of the code:
- Ray Tune's experiment folder: tuner.pkl holds the searcher (GridFirstSearch) and the callbacks
  (progress, trial failures); ray/<trial>/error.pkl a failed trial's exception class; both are read
  back when a sweep resumes (Tuner.restore).
- submitit's job pickles name the Slurm job callables (SweepDriver, ArrayTrial), loaded when a
  submitted job starts or is requeued, possibly after an upgrade of this package.
- Notebooks and scripts import modules by their old names.
Until the package was grouped into cli/ spec/ backends/ engine/ store/ analysis/, every module of
orchestrator/ lay flat; `ALIASES` maps each old name to its new home. The finder below, installed
by orchestrator/__init__.py (so before any submodule is imported), answers an import of an old name
with the new module itself (the technique of setuptools' _distutils_hack): `import
orchestrator.trial_runner` gives orchestrator.engine.trial, and unpickling
orchestrator.trial_runner.RecordedFailure finds the class where it is now. tests/orchestrator/test_compat.py
unpickles under every old path and resumes a sweep folder written before the move.
A module that moves again gets one more line here, never a shim file.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

ALIASES = {
    # the flat layout, until 2026-12 (15dd327)
    "orchestrator.backend_registry": "orchestrator.backends.registry",
    "orchestrator.cancel_command": "orchestrator.cli.cancel",
    "orchestrator.export_command": "orchestrator.cli.export",
    "orchestrator.fetch": "orchestrator.spec.fetch",
    "orchestrator.grid_first_search": "orchestrator.engine.grid_first_search",
    "orchestrator.inputs": "orchestrator.spec.needs",
    "orchestrator.optuna_pruning": "orchestrator.engine.optuna_pruning",
    "orchestrator.overrides": "orchestrator.spec.overrides",
    "orchestrator.paired": "orchestrator.analysis.paired",
    "orchestrator.pareto_command": "orchestrator.cli.pareto",
    "orchestrator.plain_json": "orchestrator.analysis.plain_json",
    # Not "orchestrator.plan" (the old path of spec/estimate.py): importing it would bind the module
    # over the Python API's orchestrator.plan() (import sets a submodule as its package's attribute).
    "orchestrator.plan_command": "orchestrator.cli.plan",
    "orchestrator.plot_command": "orchestrator.cli.plot",
    "orchestrator.plots": "orchestrator.analysis.plots",
    "orchestrator.prepare_command": "orchestrator.cli.prepare",
    "orchestrator.preprocessors_command": "orchestrator.cli.preprocessors",
    "orchestrator.private_apis": "orchestrator.engine.private_apis",
    "orchestrator.progress": "orchestrator.engine.progress",
    "orchestrator.ray_cluster": "orchestrator.engine.ray_cluster",
    "orchestrator.ray_processes": "orchestrator.engine.ray_processes",
    "orchestrator.ray_trackers": "orchestrator.engine.ray_trackers",
    "orchestrator.report": "orchestrator.analysis.report",
    "orchestrator.report_command": "orchestrator.cli.report",
    # results.py was split into store/rows.py, parquet.py and query.py: nothing of it is pickled,
    # and its old path gives the module of the rows (an old import of a query name fails there).
    "orchestrator.results": "orchestrator.store.rows",
    "orchestrator.results_cache": "orchestrator.store.cache",
    "orchestrator.results_command": "orchestrator.cli.results",
    "orchestrator.runner": "orchestrator.engine.runner",
    "orchestrator.safe_query": "orchestrator.store.safe_query",
    "orchestrator.schedulers": "orchestrator.spec.schedulers",
    "orchestrator.search": "orchestrator.engine.search",
    "orchestrator.slurm_settings": "orchestrator.backends.slurm.settings",
    "orchestrator.status_command": "orchestrator.cli.status",
    "orchestrator.stopped_trials": "orchestrator.engine.stopped_trials",
    "orchestrator.sweep_command": "orchestrator.cli.sweep",
    "orchestrator.sweep_lock": "orchestrator.store.lock",
    "orchestrator.sweep_paths": "orchestrator.store.paths",
    "orchestrator.sweep_target": "orchestrator.spec.target",
    "orchestrator.trackers": "orchestrator.spec.trackers",
    "orchestrator.trained_models": "orchestrator.analysis.trained_models",
    "orchestrator.trial_failures": "orchestrator.engine.trial_failures",
    "orchestrator.trial_runner": "orchestrator.engine.trial",
    "orchestrator.unreadable": "orchestrator.store.damaged_files",
    "orchestrator.verbosity": "orchestrator.logs",
    # shims of earlier moves, which were files of their own
    "orchestrator.trainable": "orchestrator.engine.trial",  # trial_runner's name until 2026-10
    "orchestrator.backends.slurm_job": "orchestrator.backends.slurm.job",
}
# Old modules that are packages now, so no alias can stand for them: the package itself answers
# an attribute it lacks from the module that holds the old module's code (`former_attribute`, called
# by the package's __getattr__). An unpickler asking for orchestrator.spec.SweepSpec (submitit's
# job pickles hold a SweepSpec) and a console script written by an older install
# (`from orchestrator.cli import main`) both need this.
FORMER_MODULES = {
    "orchestrator.analysis": "orchestrator.analysis.frames",
    "orchestrator.cli": "orchestrator.cli.app",
    "orchestrator.spec": "orchestrator.spec.sweep_spec",
}


def former_attribute(package: str, name: str):
    """`name` from the module that now holds the code of the old module `package` (see above)."""
    if name.startswith("__") or package not in FORMER_MODULES:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(FORMER_MODULES[package]), name)
    except AttributeError:
        raise AttributeError(f"module {package!r} has no attribute {name!r}") from None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass  # the target module ran when it was imported


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Answers an import of an old module path with the module that now holds its code."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in ALIASES:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(ALIASES[fullname]))


def install() -> None:
    """Put the finder on sys.meta_path once (orchestrator/__init__.py calls this on import)."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
