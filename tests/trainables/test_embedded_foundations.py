"""The shipped digits foundation: one file for every machine, loaded by digest, recorded in rows.

The embedded foundation used to be pre-trained on the spot, and three CPU instruction sets gave
three foundations 14-15% apart in their weights; the same config meant another model on another
machine. These tests check that the default digits foundation is the shipped file (never trained
here), that a damaged one is refused, what the weights digest does and does not depend on, and
that an Identity trial on it gives the same numbers under two CPU capabilities.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from trainables import shipped_foundations
from trainables.errors import ConfigError
from trainables.foundation import load_foundation, load_foundation_folder, pretrain_embedded_foundation, save_foundation
from trainables.provenance import compute_identity, weights_digest

DIGITS_FOLDER, DIGITS_DIGEST = shipped_foundations.SHIPPED["digits"]


def test_the_default_embedded_foundation_is_the_shipped_file_and_is_never_trained(tmp_path):
    epochs = []
    foundation = load_foundation({"name": "embedded"}, cache_root=tmp_path, on_pretrain_epoch=epochs.append)
    assert epochs == [] and not (tmp_path / "foundations").exists()
    assert pretrain_embedded_foundation(None, cache_root=tmp_path) == shipped_foundations.FOLDER / DIGITS_FOLDER
    assert weights_digest(foundation) == DIGITS_DIGEST
    record = json.loads((shipped_foundations.FOLDER / DIGITS_FOLDER / "pretraining.json").read_text())
    assert record["config"]["dataset"] == "digits" and record["train_images"] == 1347
    assert {"device_name", "cpu_capability", "torch", "threads"} <= set(record["compute"])


def test_other_digits_settings_are_pre_trained_into_the_cache_not_the_shipped_folder(tmp_path):
    folder = pretrain_embedded_foundation(
        {"epochs": 1, "hidden_size": 16, "intermediate_size": 32}, cache_root=tmp_path
    )
    assert folder.parent == tmp_path / "foundations"
    assert shipped_foundations.shipped_digest(folder) is None


def _copy_of_shipped(tmp_path, monkeypatch):
    copy = tmp_path / "shipped"
    shutil.copytree(shipped_foundations.FOLDER, copy)
    monkeypatch.setattr(shipped_foundations, "FOLDER", copy)
    return copy / DIGITS_FOLDER


def test_a_damaged_shipped_file_is_refused_in_one_line_and_left_alone(tmp_path, monkeypatch):
    folder = _copy_of_shipped(tmp_path, monkeypatch)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ConfigError) as err:
        load_foundation({"name": "embedded"}, cache_root=tmp_path / "cache")
    assert str(err.value).startswith("foundation.embedded:") and "\n" not in str(err.value)
    assert "model.safetensors does not match the sha256" in str(err.value)
    assert weights.read_bytes() == bytes(data), "a shipped file is never moved aside or rebuilt"
    assert not (tmp_path / "cache" / "foundations").exists()


def test_shipped_weights_that_are_not_the_recorded_digest_are_refused(tmp_path, monkeypatch):
    """A consistent manifest is not enough: the weights themselves must be the shipped digest."""
    _copy_of_shipped(tmp_path, monkeypatch)
    monkeypatch.setitem(shipped_foundations.SHIPPED, "digits", (DIGITS_FOLDER, "0123456789abcdef"))
    with pytest.raises(
        ConfigError, match=f"the shipped weights \\(digest 0123456789abcdef\\).*got 'digest {DIGITS_DIGEST}"
    ):
        load_foundation({"name": "embedded"}, cache_root=tmp_path / "cache")


def test_the_weights_digest_is_of_the_weights_not_the_file(tmp_path):
    foundation = load_foundation({"name": "embedded"})
    save_foundation(foundation, tmp_path)  # another folder, another file, the same weights
    again = load_foundation_folder(tmp_path)
    assert weights_digest(again) == weights_digest(foundation) == DIGITS_DIGEST
    with torch.no_grad():
        next(again.model.parameters()).view(-1)[0] += 1e-6
    assert weights_digest(again) != DIGITS_DIGEST
    other_normalisation = load_foundation_folder(tmp_path)
    other_normalisation.mean = other_normalisation.mean + 0.01
    assert weights_digest(other_normalisation) != DIGITS_DIGEST  # the model the attacks see changed


def test_compute_identity_names_the_cpu_kernels():
    identity = compute_identity("cpu")
    assert identity["device_name"] == "cpu"
    assert identity["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


# --- the same numbers under two CPU capabilities --------------------------------------------------

_IDENTITY_TRIAL = textwrap.dedent(
    """
    import json, sys, torch
    torch.set_num_threads(1)
    from trainables.trial import run_trial
    config = {
        "data": {"dataset": "digits", "data_fraction": 0.5},
        "foundation": {"name": "embedded"},
        "preprocessor": {"kind": "identity"},
        "head": {"epochs": 30, "milestones": [10, 20]},
        "evaluation": {"n_examples": 120, "attacks": ["pgd10", "pgd10_margin"], "validation_attacks": ["pgd10"],
                       "integrity": False},
    }
    result = run_trial(config, sys.argv[1])
    keys = ["acc_natural", "acc_pgd10", "acc_pgd10_margin", "val_acc_natural", "val_acc_pgd10",
            "foundation_digest", "cpu_capability"]
    print(json.dumps({key: result[key] for key in keys}))
    """
)


def _identity_trial(tmp_path, capability: str) -> dict:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "OMP_NUM_THREADS": "1", "CROPD_CACHE": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", _IDENTITY_TRIAL, str(tmp_path / f"trial-{capability}")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_identity_trial_on_the_shipped_foundation_gives_the_same_numbers_on_two_cpu_capabilities(tmp_path):
    """The foundation no longer diverges: on the shipped weights, the features of the two kernels
    differ in the last bits only, and the head trained on them makes the same predictions."""
    native = torch.backends.cpu.get_cpu_capability().lower()
    if native == "default":
        pytest.skip("this CPU runs PyTorch's default kernels only: there is no second capability to compare")
    default, vectorised = _identity_trial(tmp_path, "default"), _identity_trial(tmp_path, native)
    assert (default["cpu_capability"], vectorised["cpu_capability"]) == ("DEFAULT", native.upper())
    assert default.pop("cpu_capability") != vectorised.pop("cpu_capability")
    assert default["foundation_digest"] == vectorised["foundation_digest"] == DIGITS_DIGEST
    assert default == vectorised


# --- a foundation per data set: CIFAR-2's, built once into the cache --------------------------------


def _cifar2_arrays(root, count: int = 24) -> None:
    """A small cifar2 in the arrays layout (the real one is ../shared/data/cifar2)."""
    import numpy as np

    generator = np.random.default_rng(0)
    (root / "cifar2").mkdir(parents=True)
    for split in ("train", "test"):
        labels = np.arange(count) % 2
        images = generator.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
        images[labels == 1, :, :, 0] = 255  # something to tell the classes apart
        np.savez(root / "cifar2" / f"{split}.npz", x=images, y=labels.astype(np.uint8))


def test_the_cifar2_preset_is_a_larger_foundation_and_settings_still_override_it():
    from trainables.schema.foundation import EMBEDDED_PRESETS, resolve_embedded_config

    digits, cifar2 = resolve_embedded_config(None), resolve_embedded_config({"dataset": "cifar2"})
    assert digits["dataset"] == "digits" and digits["hidden_size"] == 64 and digits["num_hidden_layers"] == 2
    assert all(cifar2[key] == value for key, value in EMBEDDED_PRESETS["cifar2"].items())
    assert cifar2["hidden_size"] > digits["hidden_size"] and cifar2["num_hidden_layers"] > digits["num_hidden_layers"]
    assert resolve_embedded_config({"dataset": "cifar2", "epochs": 2})["epochs"] == 2
    with pytest.raises(ConfigError, match="^foundation.embedded.dataset: expected 'digits' or 'cifar2'"):
        resolve_embedded_config({"dataset": "svhn"})


def test_a_cifar2_foundation_is_pre_trained_once_on_its_training_split_and_keyed_by_its_images(tmp_path):
    root = tmp_path / "data"
    _cifar2_arrays(root)
    settings = {"dataset": "cifar2", "epochs": 1, "hidden_size": 16, "intermediate_size": 32, "batch_size": 8}
    epochs = []
    folder = pretrain_embedded_foundation(
        settings, cache_root=tmp_path / "cache", data_root=root, on_epoch=epochs.append
    )
    record = json.loads((folder / "pretraining.json").read_text())
    assert [e["epoch"] for e in epochs] == [1] and record["train_images"] == 24
    assert record["config"]["dataset"] == "cifar2" and record["compute"]["cpu_capability"]
    again = pretrain_embedded_foundation(
        settings, cache_root=tmp_path / "cache", data_root=root, on_epoch=epochs.append
    )
    assert again == folder and len(epochs) == 1, "built twice"
    # Other training pixels under the same settings: another foundation, in another folder.
    other_root = tmp_path / "other"
    _cifar2_arrays(other_root, count=26)
    other = pretrain_embedded_foundation(settings, cache_root=tmp_path / "cache", data_root=other_root)
    assert other != folder
    assert weights_digest(load_foundation_folder(other)) != weights_digest(load_foundation_folder(folder))
