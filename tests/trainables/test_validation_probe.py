"""The robust signal during pre-processor training (trainables/validation_probe.py).

A tiny CRoPD on a slice of the embedded digits, in front of a fixed differentiable feature model
(pooled pixels) standing in for the foundation, keeps the file to seconds.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.data import load_dataset, stratified_fraction
from trainables.errors import ConfigError
from trainables.preprocessors import fit_preprocessor, resolve_preprocessor_config
from trainables.pseudo_labels import FeatureModel
from trainables.schema import validate_trial_config
from trainables.validation_probe import ValidationProbe, held_out_split


@pytest.fixture(scope="module")
def small_train():
    return stratified_fraction(load_dataset("digits2", "train"), 0.3, seed=0)


def _foundation() -> FeatureModel:
    return FeatureModel({"name": "pooled-pixels"}, nn.Sequential(nn.AvgPool2d(4), nn.Flatten()))


def _cfg(tiny_arch, **overrides):
    return {"kind": "cropd", "arch": tiny_arch, "epochs": 3, "batch_size": 16, "lr": 1e-3, **overrides}


def test_the_held_out_split_is_fixed_disjoint_and_per_class(small_train):
    kept, held = held_out_split(small_train, 0.2, seed=0)
    again_kept, again_held = held_out_split(small_train, 0.2, seed=0)
    assert torch.equal(held.images, again_held.images) and torch.equal(kept.labels, again_kept.labels)
    assert len(kept) + len(held) == len(small_train)
    as_rows = lambda data: {bytes(image.numpy()) for image in data.images}  # noqa: E731
    assert as_rows(kept).isdisjoint(as_rows(held))
    for label in range(small_train.num_classes):
        members = int((small_train.labels == label).sum())
        assert int((held.labels == label).sum()) == max(1, round(0.2 * members))


def test_validation_epochs_record_natural_and_pgd_accuracy_and_leave_training_as_it_was(
    small_train, tiny_arch, tmp_path, monkeypatch
):
    cfg = _cfg(tiny_arch, validation={"every": 2, "fraction": 0.4, "points": 20, "fit_images": 40})
    measured = fit_preprocessor(cfg, small_train, tmp_path / "a", foundation=_foundation(), eps=8 / 255)
    assert [r["epoch"] for r in measured.history if "val_acc_natural" in r] == [2, 3]  # every 2nd, and the last
    for record in measured.history[1:]:
        assert 0 <= record["val_acc_pgd5"] <= record["val_acc_natural"] <= 1
        assert record["val_points"] == 20 and record["val_time_s"] > 0
    # The attack does something at 8/255.
    assert measured.history[-1]["val_acc_pgd5"] < measured.history[-1]["val_acc_natural"]

    # The same weights measure the same (nothing random): a fresh probe on the final weights.
    kept, held = held_out_split(small_train, 0.4, seed=0)
    resolved = resolve_preprocessor_config(cfg)["validation"]
    again = ValidationProbe.from_config(resolved, kept, held, _foundation().module, 8 / 255, "cpu")
    remeasured = again.measure(measured.module, 3)
    assert {k: v for k, v in remeasured.items() if k != "val_time_s"} == {
        k: v for k, v in measured.history[-1].items() if k.startswith("val_") and k != "val_time_s"
    }

    # Measuring changes no weight: the same config trained with the probe doing nothing.
    monkeypatch.setattr(ValidationProbe, "measure", lambda self, preprocessor, epoch: {})
    unmeasured = fit_preprocessor(cfg, small_train, tmp_path / "b", foundation=_foundation(), eps=8 / 255)
    for name, value in measured.module.state_dict().items():
        assert torch.equal(value, unmeasured.module.state_dict()[name]), name
    assert "val_acc_natural" not in unmeasured.history[-1]


def test_a_resumed_run_reports_the_measured_epoch_again(small_train, tiny_arch, tmp_path):
    cfg = _cfg(tiny_arch, validation={"every": 2, "points": 20, "fit_images": 32})
    seen = []

    def stop_after_two(record):
        seen.append(record)
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_preprocessor(cfg, small_train, tmp_path, foundation=_foundation(), on_epoch=stop_after_two)
    again = []
    fit_preprocessor(cfg, small_train, tmp_path, foundation=_foundation(), on_epoch=again.append)
    assert again[0]["epoch"] == 2 and again[0]["val_acc_natural"] == seen[-1]["val_acc_natural"]
    assert [r["epoch"] for r in again] == [2, 3] and "val_acc_pgd5" in again[1]


def test_validation_is_off_by_default_and_bad_settings_are_one_line(tiny_arch):
    assert "validation" not in resolve_preprocessor_config(_cfg(tiny_arch))
    trial = {"data": {"dataset": "digits2"}, "foundation": {"name": "embedded"}, "preprocessor": _cfg(tiny_arch)}
    with_off = validate_trial_config({**trial, "preprocessor": {**trial["preprocessor"], "validation": None}})
    assert with_off == validate_trial_config(trial)  # null is off: the same config, the same hash
    for given, field in (
        ({"fraction": 0.1}, "preprocessor.validation.every"),
        ({"every": 0}, "preprocessor.validation.every"),
        ({"every": 2, "fraction": 0.9}, "preprocessor.validation.fraction"),
        ({"every": 2, "pionts": 10}, "preprocessor.validation.pionts"),
        ("often", "preprocessor.validation"),
    ):
        with pytest.raises(ConfigError) as caught:
            resolve_preprocessor_config(_cfg(tiny_arch, validation=given))
        assert str(caught.value).startswith(field) and "\n" not in str(caught.value), str(caught.value)
