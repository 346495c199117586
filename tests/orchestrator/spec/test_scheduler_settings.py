"""The `scheduler:` setting (orchestrator/spec/schedulers.py): its checks, one line naming the file and
field; its mapping onto Ray Tune's schedulers (orchestrator/engine/schedulers.py); and Slurm's array
mode refusing it. The schedulers stopping trials in real sweeps are tests/integration/test_schedulers.py.
"""

from __future__ import annotations

import pytest

from orchestrator.spec.sweep_spec import parse_spec
from trainables.errors import UserError

VALIDATION = {"every": 1, "points": 20, "fit_images": 40}


def _spec(tiny_foundation_config, tiny_arch, **changes) -> dict:
    raw = {
        "name": "sched",
        "trial": {
            "data": {"dataset": "digits2", "data_fraction": 0.5},
            "foundation": tiny_foundation_config,
            "preprocessor": {"kind": "cropd", "arch": tiny_arch, "epochs": 3, "validation": VALIDATION},
        },
        "grid": {"preprocessor.lambda": [1, 10]},
        "objectives": {"val_acc_pgd20": "max"},
        "scheduler": {"kind": "asha", "metric": "val_acc_pgd5"},
    }
    for key, value in changes.items():
        raw[key] = value
    return raw


@pytest.mark.parametrize(
    "change, field",
    [
        ({"objectives": {"val_acc_natural": "max", "val_acc_pgd20": "max"}}, "scheduler"),
        ({"scheduler": {"kind": "ashа", "metric": "val_acc_pgd5"}}, "scheduler.kind"),  # a Cyrillic a
        ({"scheduler": {"kind": "asha", "metric": "acc_pgd20"}}, "scheduler.metric"),
        ({"scheduler": {"kind": "asha", "metric": "val_acc_pgd10"}}, "scheduler.metric"),  # trials measure PGD-5
        ({"scheduler": {"kind": "asha", "metric": "val_acc_pgd5", "brackets": 2}}, "scheduler.brackets"),
        ({"scheduler": {"kind": "median", "metric": "val_acc_pgd5", "grace": 2}}, "scheduler.grace"),
        ({"scheduler": {"kind": "asha", "metric": "val_acc_pgd5", "grace_period": 4, "max_t": 2}}, "scheduler.max_t"),
        ({"scheduler": "asha"}, "scheduler"),
    ],
)
def test_a_bad_scheduler_is_one_line_naming_the_file_and_field(tiny_foundation_config, tiny_arch, change, field):
    with pytest.raises(UserError) as caught:
        parse_spec(_spec(tiny_foundation_config, tiny_arch, **change), source="s.yaml", default_name="s")
    message = str(caught.value)
    assert message.startswith(f"s.yaml: {field}") and "\n" not in message, message


def test_trials_that_train_without_the_measurement_are_refused(tiny_foundation_config, tiny_arch):
    raw = _spec(tiny_foundation_config, tiny_arch)
    raw["grid"] = [{"preprocessor.kind": ["identity"]}, {"preprocessor.kind": ["vanilla"]}]
    raw["trial"]["preprocessor"].pop("validation")
    with pytest.raises(UserError) as caught:
        parse_spec(raw, source="s.yaml", default_name="s")
    assert "trial 2 (preprocessor.kind vanilla) has no preprocessor.validation" in str(caught.value)
    # Identity trains nothing and reports nothing: alone it is fine, and simply runs.
    raw["grid"] = [{"preprocessor.kind": ["identity"]}]
    assert parse_spec(raw, source="s.yaml", default_name="s").scheduler.kind == "asha"


def test_each_kind_maps_onto_its_ray_tune_scheduler(tiny_foundation_config, tiny_arch):
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    from orchestrator.engine.schedulers import build_scheduler
    from orchestrator.spec.schedulers import TIME_ATTR

    def built(**scheduler):
        spec = parse_spec(
            _spec(tiny_foundation_config, tiny_arch, scheduler={"metric": "val_acc_pgd5", **scheduler}),
            source="s.yaml",
            default_name="s",
        )
        return build_scheduler(spec.scheduler, spec.max_preprocessor_epochs)

    asha = built(kind="asha", grace_period=1, reduction_factor=2)
    assert isinstance(asha, ASHAScheduler) and len(asha._brackets) == 1
    assert (asha._time_attr, asha._metric, asha._max_t, asha._stop_last_trials) == (TIME_ATTR, "val_acc_pgd5", 3, False)
    assert [milestone for milestone, _ in asha._brackets[0]._rungs] == [2, 1]  # below max_t 3 (the epochs)
    hyperband = built(kind="hyperband", grace_period=1, max_t=3)
    assert isinstance(hyperband, ASHAScheduler) and len(hyperband._brackets) == 3
    median = built(kind="median", grace_period=2, min_samples_required=2, mode="min")
    assert isinstance(median, MedianStoppingRule)
    assert (median._metric, median._mode, median._grace_period, median._min_samples_required) == (
        "val_acc_pgd5",
        "min",
        2,
        2,
    )


def test_slurms_array_mode_refuses_a_scheduler_and_trackers(tiny_foundation_config, tiny_arch):
    from orchestrator.backends.slurm.backend import _check_fits
    from orchestrator.backends.slurm.settings import SlurmSettings

    spec = parse_spec(
        _spec(tiny_foundation_config, tiny_arch, trackers=["tensorboard"]), source="s.yaml", default_name="s"
    )
    _check_fits(spec, SlurmSettings(mode="ray"), "s.yaml")  # Ray Tune runs them there
    with pytest.raises(UserError) as caught:
        _check_fits(spec, SlurmSettings(mode="array"), "s.yaml")
    assert str(caught.value).startswith("s.yaml: scheduler: expected none in Slurm's array mode")
    spec.scheduler = None
    with pytest.raises(UserError, match="^s.yaml: trackers: expected none in Slurm's array mode"):
        _check_fits(spec, SlurmSettings(mode="array"), "s.yaml")
