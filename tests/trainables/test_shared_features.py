"""Clean foundation features shared across trials through the artifact store (trainables/shared_features.py)."""

from __future__ import annotations

import torch

from trainables.shared_features import FILE, SHARE_ENV, SharedFeatures, weights_digest
from trainables.trial import run_trial


def _config(tiny_foundation_config, tiny_arch, **head):
    return {
        "data": {"dataset": "digits2", "data_fraction": 0.5},
        "foundation": tiny_foundation_config,
        "preprocessor": {"kind": "cropd", "arch": tiny_arch, "epochs": 1, "batch_size": 32, "lr": 2e-3},
        "head": {"epochs": 3, **head},
        "evaluation": {"n_examples": 40, "attacks": ["pgd10"], "integrity": False},
    }


def _outcome(result: dict) -> dict:
    """What a trial computed: everything but timings and the record of what was reused."""
    return {
        k: v
        for k, v in result.items()
        if not k.startswith("time_") and k not in ("features_reused", "preprocessor_reused")
    }


def test_trials_behind_one_preprocessor_share_its_features_and_compute_what_unshared_trials_compute(
    tmp_path, tiny_foundation_config, tiny_arch, cache_root, monkeypatch
):
    clean = _config(tiny_foundation_config, tiny_arch)
    robust = _config(tiny_foundation_config, tiny_arch, mode="robust", epochs=1)
    clean_longer = _config(tiny_foundation_config, tiny_arch, epochs=4)
    artifacts = tmp_path / "shared" / "artifacts"
    shared = {
        name: run_trial(config, tmp_path / "shared" / name, artifacts=artifacts)
        for name, config in (("clean", clean), ("robust", robust), ("clean_longer", clean_longer))
    }
    assert shared["clean"]["features_reused"] == []
    assert shared["robust"]["features_reused"] == ["test"]  # a robust head attacks per batch: no train features
    assert shared["clean_longer"]["features_reused"] == ["test", "train"]
    assert shared["robust"]["preprocessor_reused"] and shared["clean_longer"]["preprocessor_reused"]
    assert len([p for p in (artifacts / "features").iterdir() if p.is_dir()]) == 2  # train and test, once each

    monkeypatch.setenv(SHARE_ENV, "0")
    alone_artifacts = tmp_path / "alone" / "artifacts"
    for name, config in (("clean", clean), ("robust", robust), ("clean_longer", clean_longer)):
        alone = run_trial(config, tmp_path / "alone" / name, artifacts=alone_artifacts)
        assert alone["features_reused"] == [] and not alone["preprocessor_reused"]
        assert _outcome(alone) == _outcome(shared[name]), name
    assert not (alone_artifacts / "features").exists()  # sharing off: every trial its own, in its workdir


def test_identity_rows_of_other_seeds_share_their_test_features(tmp_path, tiny_foundation_config):
    # Identity has no weights: its seed changes the data subset and the head, never the test features.
    def identity(seed):
        return {
            "data": {"dataset": "digits2", "data_fraction": 0.5, "seed": seed},
            "foundation": tiny_foundation_config,
            "preprocessor": {"kind": "identity", "seed": seed},
            "head": {"epochs": 2, "seed": seed},
            "evaluation": {"n_examples": 40, "attacks": ["pgd10"], "integrity": False},
        }

    artifacts = tmp_path / "artifacts"
    first = run_trial(identity(0), tmp_path / "seed0", artifacts=artifacts)
    second = run_trial(identity(1), tmp_path / "seed1", artifacts=artifacts)
    assert first["features_reused"] == []
    assert second["features_reused"] == ["test"]  # its training subset is another one: not reused
    alone = run_trial(identity(1), tmp_path / "alone", artifacts=None)
    assert _outcome(alone) == _outcome(second)


def test_a_damaged_features_file_is_moved_aside_and_computed_again(
    tmp_path, tiny_foundation_config, tiny_arch, cache_root
):
    config = _config(tiny_foundation_config, tiny_arch)
    artifacts = tmp_path / "artifacts"
    first = run_trial(config, tmp_path / "first", artifacts=artifacts)
    folders = [p for p in (artifacts / "features").iterdir() if p.is_dir()]
    for folder in folders:
        (folder / FILE).write_bytes(b"not a checkpoint")
    again = run_trial(config, tmp_path / "again", artifacts=artifacts)
    assert again["features_reused"] == []
    assert _outcome(again) == _outcome(first)
    kept_aside = [p for p in (artifacts / "features").iterdir() if ".torn-" in p.name]
    assert len(kept_aside) == len(folders) == 2
    third = run_trial(config, tmp_path / "third", artifacts=artifacts)
    assert third["features_reused"] == ["test", "train"]  # the recomputed ones were published


def test_other_weights_under_the_same_config_are_another_key(tmp_path):
    from trainables.data import load_dataset

    model = torch.nn.Linear(4, 2)
    images = load_dataset("digits2", "test")
    key = SharedFeatures(tmp_path, {"foundation": "same"}, model, "cpu").key(images)
    assert SharedFeatures(tmp_path, {"foundation": "same"}, model, "cpu").key(images) == key
    digest = weights_digest(model)
    with torch.no_grad():
        model.weight[0, 0] += 1e-6
    assert weights_digest(model) != digest
    # Batch norm holds a 0-d integer buffer (num_batches_tracked): digested too (a ResNet foundation).
    norm = torch.nn.BatchNorm2d(3)
    before = weights_digest(norm)
    norm.num_batches_tracked += 1
    assert weights_digest(norm) != before
    assert SharedFeatures(tmp_path, {"foundation": "same"}, model, "cpu").key(images) != key


def test_features_computed_once_are_what_the_next_caller_loads(tmp_path):
    from trainables.data import load_dataset

    images = load_dataset("digits2", "test")
    model = torch.nn.Linear(2, 2)
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(6.0).reshape(3, 2)

    first = SharedFeatures(tmp_path, {"x": 1}, model, "cpu").of("test", images, compute)
    store = SharedFeatures(tmp_path, {"x": 1}, model, "cpu")
    again = store.of("test", images, compute)
    assert len(calls) == 1 and torch.equal(first, again) and store.reused == {"test": True}
    other = SharedFeatures(tmp_path, {"x": 2}, model, "cpu")  # another config: its own features
    other.of("test", images, compute)
    assert len(calls) == 2 and other.reused == {"test": False}
