"""SweepSpec -> Optuna's search space, the grid points to enqueue, and Ray Tune's OptunaSearch.

Grid axes become categorical parameters and every grid point is enqueued (OptunaSearch refuses
tune.grid_search); the study lives in a JournalStorage file that optuna-dashboard can open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from orchestrator.engine.schedulers import build_pruner
from orchestrator.logs import third_party_level
from orchestrator.spec.sweep_spec import SweepSpec
from orchestrator.store.paths import SweepPaths


def optuna_space(spec: SweepSpec) -> dict[str, BaseDistribution]:
    """Every grid axis as a categorical, then the searched parameters.

    A key set by only some grid points (lambda for cropd, not for identity) gets None among
    its choices: None leaves the trial section's value in place.
    """
    space: dict[str, BaseDistribution] = {}
    keys: list[str] = []
    for point in spec.grid_points:
        keys.extend(key for key in point if key not in keys)
    for key in keys:
        choices: list[Any] = []
        for point in spec.grid_points:
            value = point.get(key)
            if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
                choices.append(value)
        space[key] = CategoricalDistribution(choices)
    for parameter in spec.search:
        if parameter.distribution == "choice":
            space[parameter.key] = CategoricalDistribution(list(parameter.values))
        elif parameter.distribution == "int":
            space[parameter.key] = IntDistribution(parameter.low, parameter.high, step=parameter.step or 1)
        else:
            space[parameter.key] = FloatDistribution(
                parameter.low, parameter.high, log=parameter.distribution == "loguniform"
            )
    return space


def points_to_evaluate(spec: SweepSpec) -> list[dict[str, Any]]:
    """The grid points, each naming every grid axis (None where the point leaves it alone)."""
    keys = [key for key in optuna_space(spec) if key not in {p.key for p in spec.search}]
    return [{key: point.get(key) for key in keys} for point in spec.grid_points]


def journal_storage(sweep_dir: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(SweepPaths(sweep_dir).optuna_journal)))


def make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=spec.sampler_seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.sampler_seed)
    return optuna.samplers.TPESampler(seed=spec.sampler_seed)


def build_searcher(spec: SweepSpec, sweep_dir: Path):
    """Ray Tune's OptunaSearch over the spec's space, objectives as metric/mode lists when several
    (GridFirstOptunaSearch: the grid points survive a killed driver, each run exactly once)."""
    from orchestrator.engine.grid_first_search import GridFirstOptunaSearch

    metrics, modes = list(spec.objectives), list(spec.objectives.values())
    optuna.logging.set_verbosity(third_party_level(optuna.logging.WARNING))
    return GridFirstOptunaSearch(
        space=optuna_space(spec),
        metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0],
        grid_points=points_to_evaluate(spec),
        sampler=make_sampler(spec),
        study_name=spec.name,
        storage=journal_storage(sweep_dir),
        pruner=build_pruner(spec.scheduler, spec.max_preprocessor_epochs) if prunes(spec) else None,
    )


def prunes(spec: SweepSpec) -> bool:
    """Whether Optuna's pruner stops trials (a searched sweep with a scheduler), not Tune's scheduler."""
    return spec.scheduler is not None and bool(spec.search)
