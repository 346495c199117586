"""SweepSpec -> Optuna: categorical grid axes, enqueued grid points, searched distributions, samplers."""

from __future__ import annotations

import pickle

import optuna
import pytest

from orchestrator.engine.search import (
    build_searcher,
    journal_storage,
    make_sampler,
    optuna_space,
    points_to_evaluate,
)
from orchestrator.spec.sweep_spec import parse_spec

UNION_GRID = [
    {"preprocessor.kind": ["identity", "vanilla"]},
    {"preprocessor.kind": ["cropd"], "preprocessor.lambda": [1, 10]},
]


def spec_of(**raw):
    return parse_spec({"trial": {"foundation": {"name": "embedded"}}, **raw}, source="study.yaml", default_name="study")


def test_grid_axes_are_categoricals_and_a_key_some_points_leave_alone_gets_none():
    spec = spec_of(grid=UNION_GRID)
    space = optuna_space(spec)
    assert space["preprocessor.kind"].choices == ("identity", "vanilla", "cropd")
    assert space["preprocessor.lambda"].choices == (None, 1, 10)
    points = points_to_evaluate(spec)
    assert len(points) == spec.num_trials == 4
    assert {"preprocessor.kind": "identity", "preprocessor.lambda": None} in points
    # Each enqueued point, applied to the base trial, is exactly the planned grid point.
    for point, planned in zip(points, spec.grid_points):
        assert spec.trial_config(point) == spec.trial_config(planned)


def test_searched_parameters_get_their_distributions_and_are_not_enqueued():
    spec = spec_of(
        grid={"preprocessor.lambda": [1, 10]},
        search={
            "trials": 3,
            "parameters": {
                "preprocessor.temperature": {"distribution": "loguniform", "low": 0.05, "high": 1.0},
                "preprocessor.epochs": {"distribution": "int", "low": 2, "high": 8, "step": 2},
                "head.mode": {"distribution": "choice", "values": ["clean", "robust"]},
            },
        },
    )
    space = optuna_space(spec)
    assert space["preprocessor.temperature"] == optuna.distributions.FloatDistribution(0.05, 1.0, log=True)
    assert space["preprocessor.epochs"] == optuna.distributions.IntDistribution(2, 8, step=2)
    assert space["head.mode"].choices == ("clean", "robust")
    assert points_to_evaluate(spec) == [{"preprocessor.lambda": 1}, {"preprocessor.lambda": 10}]
    assert spec.num_trials == 5


def test_the_study_asks_the_grid_points_first_then_samples_inside_the_space(tmp_path):
    # The same calls OptunaSearch makes: enqueue the grid, then ask with the space.
    spec = spec_of(
        grid=UNION_GRID,
        search={
            "trials": 4,
            "parameters": {"preprocessor.temperature": {"distribution": "uniform", "low": 0.1, "high": 0.9}},
        },
        seeds=[0, 1],
    )
    study = optuna.create_study(storage=journal_storage(tmp_path), study_name="s", sampler=make_sampler(spec))
    for point in points_to_evaluate(spec):
        study.enqueue_trial(point)
    asked = [study.ask(fixed_distributions=optuna_space(spec)).params for _ in range(spec.num_trials)]
    grid_part = [
        {k: v for k, v in p.items() if k != "preprocessor.temperature"} for p in asked[: len(spec.grid_points)]
    ]
    assert grid_part == points_to_evaluate(spec)
    assert all(0.1 <= p["preprocessor.temperature"] <= 0.9 for p in asked)
    assert all(p["seed"] in (0, 1) for p in asked)
    # The journal file is the study: a second reader sees every asked trial.
    assert len(optuna.load_study(study_name="s", storage=journal_storage(tmp_path)).trials) == spec.num_trials


@pytest.mark.parametrize(
    ("objectives", "metric", "mode"),
    [
        ({"val_acc_pgd20": "max"}, "val_acc_pgd20", "max"),
        ({"val_acc_natural": "max", "val_acc_pgd20": "max"}, ["val_acc_natural", "val_acc_pgd20"], ["max", "max"]),
    ],
)
def test_one_objective_or_several(tmp_path, objectives, metric, mode):
    searcher = build_searcher(spec_of(grid={"preprocessor.lambda": [1]}, objectives=objectives), tmp_path)
    assert searcher.metric == metric and searcher.mode == mode


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("tpe", optuna.samplers.TPESampler),
        ("nsga2", optuna.samplers.NSGAIISampler),
        ("random", optuna.samplers.RandomSampler),
    ],
)
def test_sampler_by_name(name, cls):
    assert isinstance(
        make_sampler(
            spec_of(
                search={
                    "sampler": name,
                    "trials": 1,
                    "parameters": {"preprocessor.lambda": {"distribution": "uniform", "low": 0, "high": 1}},
                }
            )
        ),
        cls,
    )


def _grid_part(params: dict) -> dict:
    return {key: params[key] for key in ("preprocessor.kind", "preprocessor.lambda")}


def test_a_grid_point_taken_by_a_killed_driver_is_handed_out_again_after_restore(tmp_path):
    """The journal is written at once, the searcher's checkpoint only now and then (see grid_first_search)."""
    spec = spec_of(grid=UNION_GRID)
    points = points_to_evaluate(spec)
    searcher = build_searcher(spec, tmp_path)
    pristine = pickle.dumps(searcher)  # what Tune's tuner.pkl holds: the searcher before any suggestion
    first = _grid_part(searcher.suggest("t1"))
    searcher.save(str(tmp_path / "searcher.pkl"))  # the experiment checkpoint
    taken = _grid_part(searcher.suggest("t2"))  # recorded in the journal, then the driver is SIGKILLed

    restored = pickle.loads(pristine)  # Tuner.restore: the pickled searcher, then its checkpoint
    restored.restore(str(tmp_path / "searcher.pkl"))
    rest = [_grid_part(restored.suggest(f"t{i}")) for i in range(2, len(points) + 1)]
    handed_out = [first, *rest]
    assert taken in rest  # the point the dead driver took is handed out again ...
    assert sorted(map(str, handed_out)) == sorted(map(str, points))  # ... and every grid point exactly once
    # Not sampled: with the plain OptunaSearch the last suggestion fell outside the grid.
    study = optuna.load_study(study_name=spec.name, storage=journal_storage(tmp_path))
    assert sum(t.state == optuna.trial.TrialState.WAITING for t in study.trials) == 0


def test_a_restored_searcher_that_lost_nothing_queues_nothing(tmp_path):
    spec = spec_of(grid=UNION_GRID)
    searcher = build_searcher(spec, tmp_path)
    pristine = pickle.dumps(searcher)
    first = _grid_part(searcher.suggest("t1"))
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = pickle.loads(pristine)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.requeue_lost_points() == []
    # The grid waits in the searcher, not in Optuna: the journal holds the one point handed out.
    assert len(optuna.load_study(study_name=spec.name, storage=journal_storage(tmp_path)).trials) == 1
    rest = [_grid_part(restored.suggest(f"t{i}")) for i in range(2, len(spec.grid_points) + 1)]
    assert sorted(map(str, [first, *rest])) == sorted(map(str, points_to_evaluate(spec)))
