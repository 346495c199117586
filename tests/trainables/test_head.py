"""Linear head training: feature caching, clean and robust modes, fine-tuning, resume, bad input."""

from __future__ import annotations

import pytest
import torch

from trainables.data import load_dataset, stratified_fraction
from trainables.errors import ConfigError
from trainables.foundation import load_foundation
from trainables.head import build_linear_head, train_head
from trainables.pipeline import Pipeline
from trainables.preprocessors.simple import IdentityPreprocessor
from trainables.schema.head import resolve_head_config


@pytest.fixture(scope="module")
def train_data():
    return stratified_fraction(load_dataset("digits2", "train"), 0.5, seed=0)


def _pipeline(tiny_foundation_config, cache_root, mode="frozen"):
    torch.manual_seed(0)
    foundation = load_foundation({**tiny_foundation_config, "mode": mode}, cache_root=cache_root)
    return Pipeline(IdentityPreprocessor(), foundation, build_linear_head(foundation.feature_dim, 2))


def _head_weights(pipeline):
    return {k: v.clone() for k, v in pipeline.head.state_dict().items()}


def test_clean_head_on_frozen_foundation_trains_on_cached_features(
    tmp_path, train_data, tiny_foundation_config, cache_root
):
    pipeline = _pipeline(tiny_foundation_config, cache_root)
    foundation_before = {k: v.clone() for k, v in pipeline.foundation.state_dict().items()}
    cfg = resolve_head_config({"epochs": 100, "milestones": []}, foundation_mode="frozen")
    assert cfg["lr"] == 1e-2
    result = train_head(pipeline, train_data, cfg, tmp_path / "ckpt", "k", eps=8 / 255)
    assert result.features_cached and result.params == pipeline.foundation.feature_dim * 2 + 2
    # the test foundation is pre-trained for 2 epochs only: the head must learn, not be perfect
    assert result.history[-1]["train_acc"] > max(0.8, result.history[0]["train_acc"])
    for name, tensor in pipeline.foundation.state_dict().items():
        assert torch.equal(tensor, foundation_before[name])


def test_resumed_head_matches_uninterrupted(tmp_path, train_data, tiny_foundation_config, cache_root):
    cfg = resolve_head_config({"epochs": 4, "milestones": [2]}, foundation_mode="frozen")
    straight = _pipeline(tiny_foundation_config, cache_root)
    train_head(straight, train_data, cfg, tmp_path / "a", "k", eps=8 / 255)

    class Stop(Exception):
        pass

    def stop_at_two(record):
        if record["epoch"] == 2:
            raise Stop

    interrupted = _pipeline(tiny_foundation_config, cache_root)
    with pytest.raises(Stop):
        train_head(interrupted, train_data, cfg, tmp_path / "b", "k", eps=8 / 255, on_epoch=stop_at_two)
    resumed = _pipeline(tiny_foundation_config, cache_root)  # a fresh process would rebuild the head
    epochs_run = []
    result = train_head(
        resumed, train_data, cfg, tmp_path / "b", "k", eps=8 / 255, on_epoch=lambda r: epochs_run.append(r["epoch"])
    )
    assert epochs_run == [2, 3, 4]  # the checkpointed epoch 2 said again, then 3 and 4 run
    assert [r["lr"] for r in result.history] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3])  # decay at milestone 2
    a, b = _head_weights(straight), _head_weights(resumed)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_robust_head_attacks_the_whole_pipeline(tmp_path, train_data, tiny_foundation_config, cache_root):
    pipeline = _pipeline(tiny_foundation_config, cache_root)
    small = stratified_fraction(train_data, 0.3, seed=1)
    cfg = resolve_head_config({"mode": "robust", "epochs": 1, "attack_steps": 2}, foundation_mode="frozen")
    result = train_head(pipeline, small, cfg, tmp_path, "k", eps=8 / 255)
    assert not result.features_cached
    assert result.history[0]["mode"] == "robust" and torch.isfinite(torch.tensor(result.history[0]["loss"]))


def test_adversarial_finetune_updates_the_foundation(tmp_path, train_data, tiny_foundation_config, cache_root):
    pipeline = _pipeline(tiny_foundation_config, cache_root, mode="adversarial_finetune")
    before = {k: v.clone() for k, v in pipeline.foundation.state_dict().items()}
    small = stratified_fraction(train_data, 0.2, seed=1)
    cfg = resolve_head_config(
        {"mode": "robust", "epochs": 1, "attack_steps": 1}, foundation_mode="adversarial_finetune"
    )
    assert cfg["lr"] == 1e-4
    result = train_head(pipeline, small, cfg, tmp_path, "k", eps=8 / 255)
    assert result.params > pipeline.foundation.feature_dim * 2 + 2
    assert any(not torch.equal(v, before[k]) for k, v in pipeline.foundation.state_dict().items())


def test_head_bad_input():
    with pytest.raises(ConfigError, match="head.mode"):
        resolve_head_config({"mode": "clean"}, foundation_mode="adversarial_finetune")
    with pytest.raises(ConfigError, match="head.mode"):
        resolve_head_config({"mode": "adversarial"}, foundation_mode="frozen")
    with pytest.raises(ConfigError, match="head.milestones"):
        resolve_head_config({"milestones": [70, 30]}, foundation_mode="frozen")


def test_an_sgd_head_as_advcl_trains_and_the_default_config_is_unchanged(
    tmp_path, train_data, tiny_foundation_config, cache_root
):
    """AdvCL's SLF trains its linear head with SGD (lr 0.01, momentum 0.9): head.optimizer sgd."""
    default = resolve_head_config({"epochs": 3, "milestones": []}, foundation_mode="frozen")
    assert "optimizer" not in default  # older configs keep their hashes
    assert (
        resolve_head_config({"epochs": 3, "milestones": [], "optimizer": "adamw"}, foundation_mode="frozen") == default
    )
    sgd = resolve_head_config({"epochs": 3, "milestones": [], "optimizer": "sgd", "lr": 0.01}, foundation_mode="frozen")
    heads = {}
    for name, cfg in (("adamw", {**default, "lr": 0.01}), ("sgd", sgd)):
        pipeline = _pipeline(tiny_foundation_config, cache_root)
        start = _head_weights(pipeline)
        train_head(pipeline, train_data, cfg, tmp_path / name, "k", eps=8 / 255)
        heads[name] = _head_weights(pipeline)
        assert not torch.equal(heads[name]["weight"], start["weight"])
    assert not torch.equal(heads["adamw"]["weight"], heads["sgd"]["weight"])  # same start, other optimiser
    with pytest.raises(ConfigError, match=r"head\.optimizer"):
        resolve_head_config({"optimizer": "adam"}, foundation_mode="frozen")
