"""Robust foundation pre-training (AdvCL, RoCL; issue 7 part 2) and the SLF / ALF / AFF schemes.

Real runs on the embedded digits with a tiny ViT-MAE and a narrow ResNet-18: the settings' checks,
the ResNet itself, the attack, the cache, resume, and whole trials under each fine-tuning scheme.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from trainables.artifacts import config_hash
from trainables.data import load_dataset, stratified_fraction
from trainables.encoders import CifarResNet18, ResNetFeatures
from trainables.errors import ConfigError
from trainables.foundation import ROBUST_RECORD, build_untrained_resnet, load_foundation, load_foundation_folder
from trainables.losses import multiview_nt_xent
from trainables.multiview import adversarial_view
from trainables.pipeline import Pipeline
from trainables.robust_pretraining import ContrastiveEncoder, at_chance, chance_loss, robust_foundation_folder
from trainables.schema import validate_trial_config
from trainables.schema.foundation import resolve_foundation_config
from trainables.training_loop import make_optimizer
from trainables.trial import run_trial

TINY_RESNET = {"width": 4, "image_size": 16}
SCHEMES = {  # AdvCL's three fine-tuning schemes as (foundation.mode, head.mode)
    "SLF": ("frozen", "clean"),
    "ALF": ("frozen", "robust"),
    "AFF": ("adversarial_finetune", "robust"),
}


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def small_train():
    return stratified_fraction(load_dataset("digits", "train"), 0.1, seed=0)  # 144 images


def _pretraining(method: str, **overrides) -> dict:
    settings = {"method": method, "epochs": 2, "batch_size": 32, "attack_steps": 2}
    if method == "advcl":
        settings["fft_radius"] = 2
    return {**settings, **overrides}


def _resnet(method: str = "rocl", **overrides) -> dict:
    return {"name": "resnet18", "resnet": dict(TINY_RESNET), "pretraining": _pretraining(method, **overrides)}


def _trial(foundation: dict, scheme: str) -> dict:
    foundation_mode, head_mode = SCHEMES[scheme]
    return {
        "data": {"dataset": "digits", "data_fraction": 0.1},
        "foundation": {**foundation, "mode": foundation_mode},
        "preprocessor": {"kind": "identity"},
        "head": {"mode": head_mode, "epochs": 3, "milestones": [2], "attack_steps": 2},
        "evaluation": {"n_examples": 32, "attacks": ["pgd10"]},
    }


# --- settings ---------------------------------------------------------------------------------


def test_no_pretraining_leaves_the_config_and_its_hash_as_before(tiny_foundation_config):
    plain = resolve_foundation_config(tiny_foundation_config)
    assert set(plain) == {"name", "mode", "pooling", "allow_download", "embedded"}  # the keys configs had before
    with_none = resolve_foundation_config({**tiny_foundation_config, "pretraining": {"method": "none", "epochs": 3}})
    assert config_hash(with_none) == config_hash(plain)
    robust = resolve_foundation_config({**tiny_foundation_config, "pretraining": {"method": "rocl", "views": "t1+t2"}})
    assert robust["pretraining"]["attack_steps"] == 7 and robust["pretraining"]["attack_step_size"] == 0.007  # RoCL's
    assert (
        "views" not in robust["pretraining"] and robust["pretraining"]["lr"] == 1e-4
    )  # advcl's setting ignored; starts pre-trained
    advcl = resolve_foundation_config(_resnet("advcl", views="t1+adversarial", attack_steps=None))["pretraining"]
    assert (
        advcl["attack_steps"] == 5 and advcl["views"] == ["adversarial", "t1"] and advcl["lr"] == 1e-3
    )  # built untrained


@pytest.mark.parametrize(
    ("foundation", "field"),
    [
        ({"name": "resnet18"}, "foundation.pretraining.method"),
        ({"name": "resnet18", "pretraining": {"method": "none"}}, "foundation.pretraining.method"),
        ({"name": "embedded", "resnet": {"width": 8}}, "foundation.resnet"),
        ({"name": "resnet18", "resnet": {"widht": 8}, "pretraining": {}}, "foundation.resnet.widht"),
        ({"name": "embedded", "pretraining": {"method": "simclr"}}, "foundation.pretraining.method"),
        (
            {"name": "embedded", "pretraining": {"method": "advcl", "views": ["adversarial"]}},
            "foundation.pretraining.views",
        ),
        (
            {"name": "embedded", "pretraining": {"method": "advcl", "views": "adversarial+t3"}},
            "foundation.pretraining.views",
        ),
        (
            {"name": "embedded", "pretraining": {"method": "advcl", "pseudo_clusters": [1]}},
            "foundation.pretraining.pseudo_clusters",
        ),
        (
            {"name": "embedded", "pretraining": {"method": "advcl", "fft_radius": 17}},
            "foundation.pretraining.fft_radius",
        ),
        (
            {"name": "embedded", "pretraining": {"method": "rocl", "temperature": 0}},
            "foundation.pretraining.temperature",
        ),
        ({"name": "embedded", "pretraining": "advcl"}, "foundation.pretraining"),
        # an untrained ResNet has no features for ClusterFit to cluster: pseudo_model must name one
        (
            {"name": "resnet18", "pretraining": {"method": "advcl", "pseudo_clusters": [2]}},
            "foundation.pretraining.pseudo_model",
        ),
    ],
)
def test_bad_pretraining_settings_are_one_error_naming_the_field(foundation, field):
    with pytest.raises(ConfigError) as caught:
        validate_trial_config({"data": {"dataset": "digits"}, "foundation": foundation})
    assert caught.value.field == field


def test_more_clusters_than_images_is_refused_before_anything_is_written(tmp_path, small_train, cache_root):
    cfg = resolve_foundation_config(
        {"name": "embedded", "pretraining": _pretraining("advcl", pseudo_clusters=[2, 500])}
    )
    with pytest.raises(ConfigError, match="at most the number of training images") as caught:
        robust_foundation_folder(cfg, small_train, cache_root=tmp_path)
    assert caught.value.field == "foundation.pretraining.pseudo_clusters"
    assert not list(tmp_path.iterdir())


# --- the ResNet and the attack ------------------------------------------------------------------


def test_resnet18_is_the_cifar_variant_of_the_right_size():
    network = CifarResNet18(64)
    # ResNet-18 without its classifier: 11,173,962 parameters with CIFAR-10's 512x10 fc, less 5,130.
    assert sum(p.numel() for p in network.parameters()) == 11_168_832
    assert network(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    # 3x3 stride-1 stem and no max-pool: the first stage still sees 32x32 (torchvision's sees 8x8).
    assert network.blocks[0](network.stem(torch.rand(1, 3, 32, 32))).shape[-1] == 32


def test_a_frozen_resnet_keeps_its_batch_norm_statistics_in_a_training_pipeline():
    foundation = build_untrained_resnet(resolve_foundation_config(_resnet()), trainable=False)
    pipeline = Pipeline(torch.nn.Identity(), foundation, torch.nn.Linear(foundation.feature_dim, 10)).train()
    before = {k: v.clone() for k, v in foundation.state_dict().items()}
    pipeline(torch.rand(8, 3, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in foundation.state_dict().items())
    assert not foundation.training and pipeline.head.training


def test_the_instance_wise_attack_raises_the_contrastive_loss_and_stays_in_the_ball():
    torch.manual_seed(0)
    foundation = build_untrained_resnet(resolve_foundation_config(_resnet()), trainable=True)
    model = ContrastiveEncoder(foundation, 32, 16, [])
    t1, t2 = torch.rand(8, 3, 32, 32), torch.rand(8, 3, 32, 32)
    cfg = {"eps": 8 / 255, "attack_steps": 5, "attack_step_size": 2 / 255, "temperature": 0.5}
    adversarial = adversarial_view(model, t1, [t2], cfg)
    assert (adversarial - t1).abs().max() <= 8 / 255 + 1e-6 and adversarial.min() >= 0 and adversarial.max() <= 1
    assert model.training  # the attack ran in eval mode and gave the mode back
    model.eval()
    with torch.no_grad():
        z2 = model.embed(t2)
        assert multiview_nt_xent([model.embed(adversarial), z2], 0.5) > multiview_nt_xent([model.embed(t1), z2], 0.5)


# --- pre-training: artifact, cache, resume ------------------------------------------------------


def test_pretraining_is_cached_and_a_resumed_run_ends_with_the_same_weights(tmp_path, small_train):
    cfg = resolve_foundation_config(
        _resnet("advcl", pseudo_clusters=[2, 5], pseudo_model="embedded", pseudo_lambda=0.5)
    )
    records = []
    straight = robust_foundation_folder(cfg, small_train, cache_root=tmp_path / "a", on_epoch=records.append)
    assert [(r["stage"], r["method"], r["epoch"]) for r in records] == [
        ("foundation", "advcl", 1),
        ("foundation", "advcl", 2),
    ]
    assert all(math.isfinite(r["loss_pseudo_ce"]) and math.isfinite(r["loss_contrastive"]) for r in records)
    record = json.loads((straight / ROBUST_RECORD).read_text())
    assert record["pretraining"]["method"] == "advcl" and record["time_s"] > 0 and len(record["history"]) == 2

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        robust_foundation_folder(cfg, small_train, cache_root=tmp_path / "b", on_epoch=stop_after_first)
    resumed_epochs = []
    resumed = robust_foundation_folder(cfg, small_train, cache_root=tmp_path / "b", on_epoch=resumed_epochs.append)
    assert [r["epoch"] for r in resumed_epochs] == [1, 2]  # epoch 1 from its checkpoint, said again; epoch 2 run
    first, second = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert first.keys() == second.keys() and all(
        torch.equal(first[k], second[k]) for k in first
    )  # batch-norm buffers too
    untrained = build_untrained_resnet(cfg, trainable=False).model.state_dict()
    assert not torch.equal(untrained["stem.0.weight"], first["stem.0.weight"])  # it did train

    reused = []
    assert robust_foundation_folder(cfg, small_train, cache_root=tmp_path / "a", on_epoch=reused.append) == straight
    assert reused == []  # published once, then reused
    loaded = load_foundation_folder(straight)
    assert isinstance(loaded, ResNetFeatures) and loaded.pretraining["time_s"] == record["time_s"]


def test_a_pretrained_vit_mae_starts_from_its_mae_weights_and_loads_back_as_a_vit(
    tmp_path, small_train, tiny_foundation_config
):
    cfg = resolve_foundation_config({**tiny_foundation_config, "pretraining": _pretraining("rocl", epochs=1)})
    folder = robust_foundation_folder(cfg, small_train, cache_root=tmp_path)
    robust = load_foundation_folder(folder)
    start = load_foundation(tiny_foundation_config, cache_root=tmp_path)
    assert robust.feature_dim == start.feature_dim and torch.equal(robust.mean, start.mean)
    weights = dict(robust.model.named_parameters())
    changed = [name for name, value in start.model.named_parameters() if not torch.equal(value, weights[name])]
    assert changed  # one epoch moved the MAE weights it started from
    images = small_train.float_images(torch.arange(4))
    assert torch.equal(robust(images), robust(images))  # deterministic: no masking, no dropout


# --- SLF / ALF / AFF: whole trials, each resumable ----------------------------------------------


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_each_fine_tuning_scheme_runs_and_resumes_to_the_same_result(
    tmp_path, tiny_foundation_config, cache_root, scheme
):
    config = _trial({**tiny_foundation_config, "pretraining": _pretraining("rocl")}, scheme)
    straight = run_trial(config, tmp_path / "straight")

    def stop_in_head(record):
        if record["stage"] == "head" and record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        run_trial(config, tmp_path / "resumed", on_epoch=stop_in_head)
    seen = []
    resumed = run_trial(config, tmp_path / "resumed", on_epoch=seen.append)
    # The pre-trained foundation was reused; the head's checkpointed epoch 2 said again, then 3.
    assert [(r["stage"], r["epoch"]) for r in seen] == [("head", 2), ("head", 3)]
    for metric in ("acc_natural", "acc_pgd10", "acc_natural_lo", "acc_pgd10_hi"):
        assert resumed[metric] == straight[metric], metric
    assert resumed["time_foundation_pretraining_s"] == straight["time_foundation_pretraining_s"] > 0
    trains_foundation = SCHEMES[scheme][0] != "frozen"
    assert (resumed["params_head"] > resumed["params_foundation"]) == trains_foundation  # AFF trains the whole encoder


def test_a_resnet_trial_records_its_pretraining_and_resnet_settings(tmp_path, cache_root):
    config = _trial(_resnet("rocl"), "SLF")
    seen = []
    result = run_trial(config, tmp_path / "trial", on_epoch=seen.append)
    assert [r["stage"] for r in seen] == ["foundation", "foundation", "head", "head", "head"]
    assert result["params_foundation"] == sum(p.numel() for p in CifarResNet18(4).parameters())
    assert 0 <= result["acc_pgd10"] <= result["acc_natural"] <= 1


def test_a_collapsed_encoder_sits_exactly_at_the_chance_loss_and_is_flagged():
    constant = torch.ones(8, 4)
    chance = float(chance_loss(3, 8))
    assert float(multiview_nt_xent([constant, constant, constant], 0.5)) == pytest.approx(chance)  # log(23)
    record = {
        "pretraining": {"method": "rocl", "batch_size": 8},
        "train_images": {"images": 100},
        "history": [{"loss_contrastive": chance - 0.01}],
    }
    assert at_chance(record)
    record["history"][-1]["loss_contrastive"] = 0.95 * chance
    assert not at_chance(record)
    # advcl's chance depends on its view count; a training set smaller than a batch is one batch
    record = {
        "pretraining": {"method": "advcl", "views": ["adversarial", "t1"], "batch_size": 64},
        "train_images": {"images": 10},
        "history": [{"loss_contrastive": math.log(19)}],
    }
    assert at_chance(record)


def test_sgd_pretraining_is_its_own_cached_foundation_and_resumes_with_its_momentum(tmp_path, small_train):
    """AdvCL's and RoCL's code pre-train with SGD (momentum 0.9): `optimizer: sgd` runs that, is keyed
    apart from the AdamW default, and leaves configs that do not name it (and their hashes) as before."""
    adamw = resolve_foundation_config(_resnet("rocl"))
    assert "optimizer" not in adamw["pretraining"]
    assert config_hash(resolve_foundation_config(_resnet("rocl", optimizer="adamw"))) == config_hash(adamw)
    sgd = resolve_foundation_config(_resnet("rocl", optimizer="sgd", lr=0.05))
    assert sgd["pretraining"]["optimizer"] == "sgd"

    optimizer = make_optimizer(torch.nn.Linear(2, 2), sgd["pretraining"])
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    assert isinstance(make_optimizer(torch.nn.Linear(2, 2), adamw["pretraining"]), torch.optim.AdamW)

    straight = robust_foundation_folder(sgd, small_train, cache_root=tmp_path / "a")
    with_adamw = robust_foundation_folder(adamw, small_train, cache_root=tmp_path / "a")
    assert straight != with_adamw
    sgd_weights = load_file(str(straight / "model.safetensors"))
    assert not torch.equal(
        sgd_weights["stem.0.weight"], load_file(str(with_adamw / "model.safetensors"))["stem.0.weight"]
    )

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        robust_foundation_folder(sgd, small_train, cache_root=tmp_path / "b", on_epoch=stop_after_first)
    resumed = robust_foundation_folder(sgd, small_train, cache_root=tmp_path / "b")
    first, second = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    # the momentum buffers came back from the checkpoint: the resumed run ends where the straight one did
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_an_unknown_pretraining_optimizer_is_one_error_naming_the_field():
    with pytest.raises(ConfigError, match=r"foundation\.pretraining\.optimizer"):
        resolve_foundation_config(_resnet("rocl", optimizer="lamb"))


def test_a_foundation_can_pretrain_on_another_datasets_whole_training_split(tmp_path, cache_root):
    """CRoPD Table 10: a RoCL foundation for CIFAR-2 pre-trained on CIFAR-10. Here: digits2 trials
    whose foundation pre-trains on all of digits' training images."""
    config = _trial(_resnet("rocl", dataset="digits", epochs=1), "SLF")
    config["data"] = {"dataset": "digits2", "data_fraction": 0.2}
    run_trial(config, tmp_path / "trial")
    records = [json.loads(path.read_text()) for path in cache_root.rglob(ROBUST_RECORD)]
    mine = [r for r in records if r["pretraining"].get("dataset") == "digits"]
    assert len(mine) == 1
    assert mine[0]["train_images"] == {"name": "digits", "images": len(load_dataset("digits", "train"))}

    with pytest.raises(ConfigError, match=r"foundation\.pretraining\.dataset"):
        validate_trial_config({**config, "foundation": _resnet("rocl", dataset="cifar")})
    with pytest.raises(ConfigError, match=r"foundation\.pretraining\.dataset.*32px"):
        validate_trial_config({**config, "foundation": _resnet("rocl", dataset="stl10")})
