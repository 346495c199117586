"""The validation split: held out of the training split, stratified, fixed by its own seed; a trial
never trains on it and reports its val_* metrics, which are what sweeps select on."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.data import data_fingerprint, load_dataset, stratified_fraction, validation_split
from trainables.errors import ConfigError
from trainables.schema import validate_trial_config
from trainables.schema.compute import DEFAULT_COMPUTE
from trainables.schema.data import VALIDATION_IMAGES
from trainables.schema.results import validation_columns
from trainables.trial import run_trial, train_stages


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train")


def _indices(part, whole) -> set[int]:
    """Positions in `whole` of the images of `part` (the digits' images are distinct)."""
    keys = {bytes(image.numpy().tobytes()): i for i, image in enumerate(whole.images)}
    return {keys[bytes(image.numpy().tobytes())] for image in part.images}


def test_the_split_is_exact_stratified_disjoint_and_fixed_by_its_seed(digits):
    rest, held = validation_split(digits, 250, seed=0)
    assert len(held) == 250 and len(rest) == len(digits) - 250
    assert not _indices(rest, digits) & _indices(held, digits)
    # Per class in proportion to its size: 10 classes of ~135 images, 250 held -> 24 or 25 each.
    counts = torch.bincount(held.labels, minlength=10)
    assert int(counts.sum()) == 250 and int(counts.min()) >= 24 and int(counts.max()) <= 26
    again_rest, again = validation_split(digits, 250, seed=0)
    assert torch.equal(again.images, held.images) and torch.equal(again_rest.labels, rest.labels)
    _, other = validation_split(digits, 250, seed=1)
    assert not torch.equal(other.images, held.images)


def test_no_validation_split_and_one_too_large_is_one_line(digits):
    rest, held = validation_split(digits, 0, seed=0)
    assert len(held) == 0 and len(rest) == len(digits)
    with pytest.raises(ConfigError) as info:
        validation_split(digits, len(digits), seed=0)
    assert info.value.field == "data.validation_images" and "\n" not in str(info.value)


def test_the_dataset_default_is_resolved_into_the_config_so_it_is_part_of_the_hash():
    config = validate_trial_config({"data": {"dataset": "digits2"}})
    assert config["data"]["validation_images"] == VALIDATION_IMAGES["digits2"]
    assert validate_trial_config({"data": {"validation_images": 0}})["data"]["validation_images"] == 0
    with pytest.raises(ConfigError) as info:
        validate_trial_config({"data": {"validation_images": -1}})
    assert info.value.field == "data.validation_images"


def _config(foundation, arch, **data):
    return {
        "data": {"dataset": "digits2", **data},
        "foundation": foundation,
        "preprocessor": {"kind": "vanilla", "arch": arch, "epochs": 1},
        "head": {"epochs": 2},
        "evaluation": {"attacks": ["pgd10"], "n_examples": 40, "autoattack_examples": 0, "integrity": False},
    }


def test_a_trial_trains_on_neither_validation_nor_test_and_reports_val_metrics(
    tiny_foundation_config, tiny_arch, tmp_path, cache_root
):
    config = validate_trial_config(_config(tiny_foundation_config, tiny_arch, data_fraction=0.5))
    trained = train_stages(config, DEFAULT_COMPUTE, tmp_path / "stages", None, "cpu", None)
    whole = load_dataset("digits2", "train")
    rest, held = validation_split(whole, VALIDATION_IMAGES["digits2"], seed=0)
    assert data_fingerprint(trained.validation) == data_fingerprint(held)
    # The fraction is drawn from what the validation split left.
    train = stratified_fraction(rest, 0.5, seed=0)
    assert not _indices(train, whole) & _indices(held, whole)

    result = run_trial(_config(tiny_foundation_config, tiny_arch), tmp_path / "trial")
    assert result["val_points"] == VALIDATION_IMAGES["digits2"]
    assert result["validation_split"] == data_fingerprint(held)
    for name in ("natural", "pgd10"):
        value, low, high = (result[column] for column in validation_columns(name))
        assert 0 <= low <= value <= high <= 1
    assert math.isnan(result[validation_columns("pgd20")[0]])  # not asked for: NaN, never 0
    assert result["time_validation_s"] > 0
    # Another data seed trains on other images but is selected on the same validation split.
    other = run_trial(_config(tiny_foundation_config, tiny_arch, seed=1), tmp_path / "other")
    assert other["validation_split"] == result["validation_split"]
