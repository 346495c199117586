"""Pre-processors: deterministic masking, every kind trains, resume == uninterrupted, bad input.

Tiny architectures on a slice of the embedded digits keep the whole file to seconds.
"""

from __future__ import annotations

import json

import pytest
import torch

from trainables.data import load_dataset, stratified_fraction
from trainables.errors import CheckpointError, ConfigError
from trainables.preprocessors import (
    MaskedAutoencoder,
    checkerboard_noise,
    fit_preprocessor,
    load_preprocessor,
    resolve_preprocessor_config,
)


@pytest.fixture(scope="module")
def small_train():
    return stratified_fraction(load_dataset("digits2", "train"), 0.2, seed=0)


def _cfg(tiny_arch, **overrides):
    return {
        "kind": "cropd",
        "arch": tiny_arch,
        "epochs": 3,
        "batch_size": 16,
        "lr": 1e-3,
        "warmup_epochs": 1,
        **overrides,
    }


def test_checkerboard_halves_are_complementary_and_fixed():
    noise_a, noise_b = checkerboard_noise(4)
    keep_a = set(torch.argsort(noise_a)[:8].tolist())
    keep_b = set(torch.argsort(noise_b)[:8].tolist())
    assert keep_a.isdisjoint(keep_b) and keep_a | keep_b == set(range(16))
    again_a, _ = checkerboard_noise(4)
    assert torch.equal(noise_a, again_a)


def test_model_masks_are_identical_every_call_and_complementary(tiny_arch):
    model = MaskedAutoencoder(resolve_preprocessor_config({"arch": tiny_arch}, image_size=32)["arch"], 32)
    first_a, first_b = model.masks()
    for _ in range(3):
        mask_a, mask_b = model.masks()
        assert torch.equal(mask_a, first_a) and torch.equal(mask_b, first_b)
    assert torch.equal(first_a + first_b, torch.ones_like(first_a))  # every patch removed in exactly one pass
    assert first_a.sum() == first_a.numel() / 2


def test_autoencoder_is_deterministic_in_train_and_eval_mode(tiny_arch):
    torch.manual_seed(0)
    arch = resolve_preprocessor_config({"arch": tiny_arch}, image_size=32)["arch"]
    model = MaskedAutoencoder(arch, 32)
    x = torch.rand(3, 3, 32, 32)
    for mode in (True, False):  # no randomness in train mode either
        model.train(mode)
        assert torch.equal(model(x), model(x))
    assert model.embed(x).shape == (3, arch["projector_dim"])


def _own_and_other_patch_gradients(model: MaskedAutoencoder, patch: int) -> tuple[float, float]:
    """Largest |d output patch (0,0) / d input| inside that patch, and outside it."""
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    model(x)[:, :, :patch, :patch].sum().backward()
    own = x.grad[:, :, :patch, :patch].abs().max().item()
    outside = x.grad.clone()
    outside[:, :, :patch, :patch] = 0
    return own, outside.abs().max().item()


def test_average_is_the_default_and_lets_a_patch_see_itself_while_masked_never_does(tiny_arch):
    torch.manual_seed(0)
    default = resolve_preprocessor_config({"arch": tiny_arch}, image_size=32)["arch"]
    assert default["combine"] == "average"  # DIR's semantics are the default
    assert resolve_preprocessor_config({})["fgsm_random_start"] is False  # the paper's plain FGSM
    patch = default["patch_size"]
    # 'average': each output patch is the mean of the pass that saw it and the pass that inpainted it.
    own, outside = _own_and_other_patch_gradients(MaskedAutoencoder(default, 32), patch)
    assert own > 0 and outside > 0
    # 'masked' (our variant): an output patch never sees its own input patch, only the others.
    own, outside = _own_and_other_patch_gradients(MaskedAutoencoder({**default, "combine": "masked"}, 32), patch)
    assert own == 0 and outside > 0


def _weights(module):
    return {name: tensor.clone() for name, tensor in module.state_dict().items()}


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("kind", ["cropd", "arae"])
def test_resumed_training_ends_with_the_same_weights(tmp_path, small_train, tiny_arch, kind):
    cfg = _cfg(tiny_arch, kind=kind, attack_steps=2)
    uninterrupted = fit_preprocessor(cfg, small_train, tmp_path / "straight")

    seen = []

    def stop_after_two(record):
        seen.append(record["epoch"])
        if record["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit_preprocessor(cfg, small_train, tmp_path / "resumed", on_epoch=stop_after_two)
    checkpoints = list((tmp_path / "resumed" / "preprocessors").glob("*.checkpoints/epoch-*.pt"))
    assert sorted(path.name for path in checkpoints) == ["epoch-0001.pt", "epoch-0002.pt"]
    resumed = fit_preprocessor(cfg, small_train, tmp_path / "resumed", on_epoch=lambda r: seen.append(r["epoch"]))

    # The resumed call says epoch 2 again (its checkpoint's record: a killed process may not have
    # reported it) and runs epoch 3 only.
    assert seen == [1, 2, 2, 3]
    straight, again = _weights(uninterrupted.module), _weights(resumed.module)
    assert straight.keys() == again.keys()
    for name in straight:
        assert torch.equal(straight[name], again[name]), name
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in uninterrupted.history])
    assert not list((tmp_path / "resumed" / "preprocessors").glob("*.checkpoints"))  # cleaned after publishing


def test_fitted_preprocessor_is_reused_and_loads_back(tmp_path, small_train, tiny_arch):
    cfg = _cfg(tiny_arch, epochs=1, **{"lambda": 10.0})
    first = fit_preprocessor(cfg, small_train, tmp_path)
    assert first.params > 0 and first.time_s > 0 and len(first.history) == 1
    assert {"loss", "loss_reconstruction", "loss_contrastive", "lr"} <= set(first.history[0])
    second = fit_preprocessor(cfg, small_train, tmp_path)
    assert second.reused and second.path == first.path
    loaded = load_preprocessor(first.path)
    x = small_train.float_images(torch.arange(4))
    with torch.no_grad():
        assert torch.equal(loaded.module(x), first.module.eval()(x))
    other = fit_preprocessor(_cfg(tiny_arch, epochs=1, **{"lambda": 1.0}), small_train, tmp_path)
    assert other.path != first.path  # lambda is part of the artifact key


@pytest.mark.parametrize("kind", ["vanilla", "encoder_only"])
def test_other_trained_kinds_run(tmp_path, small_train, tiny_arch, kind):
    fitted = fit_preprocessor(_cfg(tiny_arch, kind=kind, epochs=1, attack_steps=1), small_train, tmp_path)
    assert all(
        torch.isfinite(torch.tensor(value)) for key, value in fitted.history[0].items() if key.startswith("loss")
    )
    x = small_train.float_images(torch.arange(5))
    out = fitted.module(x)
    if kind == "encoder_only":  # the Table 8 baseline is a classifier: logits out
        assert out.shape == (5, small_train.num_classes)
    else:
        assert out.shape == x.shape


def test_identity_passes_images_through(tmp_path, small_train):
    fitted = fit_preprocessor({"kind": "identity"}, small_train, tmp_path)
    x = small_train.float_images(torch.arange(3))
    assert torch.equal(fitted.module(x), x) and fitted.params == 0
    assert not (tmp_path / "preprocessors").exists()  # nothing to publish


def test_vae_round_trip_from_local_path(tmp_path, small_train):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=2, sample_size=32)
    vae.save_pretrained(tmp_path / "vae")
    fitted = fit_preprocessor({"kind": "vae", "path": str(tmp_path / "vae")}, small_train, tmp_path)
    x = small_train.float_images(torch.arange(2)).requires_grad_(True)
    out = fitted.module(x)
    assert out.shape == x.shape
    assert torch.equal(out, fitted.module(x))  # posterior mode, not a sample
    out.sum().backward()
    assert x.grad.abs().sum() > 0  # differentiable: attacks can go through it
    with pytest.raises(ConfigError, match="preprocessor.path"):
        fit_preprocessor({"kind": "vae", "path": str(tmp_path / "missing")}, small_train, tmp_path)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"lambda": -1.0}, "preprocessor.lambda"),
        ({"temperature": 0.0}, "preprocessor.temperature"),
        ({"temperature": -0.5}, "preprocessor.temperature"),
        ({"eps": -0.01}, "preprocessor.eps"),
        ({"kind": "cropdd"}, "preprocessor.kind"),
        ({"lamda": 1.0}, "preprocessor.lamda"),
        ({"arch": {"patch_size": 5}}, "preprocessor.arch.patch_size"),
        ({"arch": "huge"}, "preprocessor.arch"),
        ({"epochs": 0}, "preprocessor.epochs"),
    ],
)
def test_bad_config_is_one_clear_error_and_writes_nothing(tmp_path, small_train, overrides, field):
    with pytest.raises(ConfigError) as caught:
        fit_preprocessor({"kind": "cropd", **overrides}, small_train, tmp_path)
    message = str(caught.value)
    assert message.startswith(field + ":") and "expected" in message and "\n" not in message
    assert not any(tmp_path.iterdir())


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'lambda'"):
        resolve_preprocessor_config({"lamda": 1.0})


def test_a_checkpoint_that_does_not_load_is_moved_aside_and_the_one_before_it_used(tmp_path, small_train, tiny_arch):
    cfg = _cfg(tiny_arch)
    uninterrupted = fit_preprocessor(cfg, small_train, tmp_path / "straight")

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit_preprocessor(cfg, small_train, tmp_path, on_epoch=stop_after_two)
    (checkpoint,) = (tmp_path / "preprocessors").glob("*.checkpoints/epoch-0002.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # truncated, as by a crash mid-copy
    seen = []
    with pytest.warns(
        UserWarning, match=r"epoch-0002.pt: not a readable checkpoint.*resuming from the checkpoint before it"
    ):
        resumed = fit_preprocessor(cfg, small_train, tmp_path, on_epoch=lambda r: seen.append(r["epoch"]))
    assert seen == [1, 2, 3]  # epoch 1's record said again, epochs 2 and 3 trained again
    assert (checkpoint.parent / "unreadable" / "epoch-0002.pt").stat().st_size == 100  # kept, not deleted
    for name, value in uninterrupted.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[name]), name


def test_missing_or_corrupt_saved_preprocessor(tmp_path, small_train, tiny_arch):
    with pytest.raises(CheckpointError, match="not a saved pre-processor"):
        load_preprocessor(tmp_path / "nothing-here")
    fitted = fit_preprocessor(_cfg(tiny_arch, epochs=1), small_train, tmp_path)
    (fitted.path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_preprocessor(fitted.path)
    meta = json.loads((fitted.path / "preprocessor.json").read_text())
    assert meta["data"]["images"] == len(small_train)


def test_fresh_autoencoder_gradients_stay_bounded():
    """Regression: zero-initialised cls/mask tokens with LayerNorm eps 1e-12 overflowed float32
    gradients on the first CRoPD step of the default config."""
    torch.manual_seed(0)
    cfg = resolve_preprocessor_config({"kind": "cropd"}, image_size=32)
    model = MaskedAutoencoder(cfg["arch"], 32)
    assert model.mae.vit.embeddings.cls_token.abs().max() > 0 and model.mae.decoder.mask_token.abs().max() > 0
    from trainables.preprocessors.objectives import cropd_step

    images = load_dataset("digits2", "train").float_images(torch.arange(64))
    cropd_step(model, images, None, cfg)["loss"].backward()
    largest = max(p.grad.abs().max().item() for p in model.parameters() if p.grad is not None)
    assert largest < 1e3


def test_fresh_autoencoder_knows_patch_positions():
    """Regression: transformers 5.23 builds ViT-MAE with all-zero position embeddings, which
    left the decoder unable to tell one masked patch from another (it predicted the mean)."""
    arch = resolve_preprocessor_config({}, image_size=32)["arch"]
    model = MaskedAutoencoder(arch, 32)
    encoder_positions = model.mae.vit.embeddings.position_embeddings[0, 1:]
    decoder_positions = model.mae.decoder.decoder_pos_embed[0, 1:]
    for positions in (encoder_positions, decoder_positions):
        assert torch.unique(positions, dim=0).shape[0] == positions.shape[0]  # one distinct code per patch


def test_vanilla_reconstructs_better_than_the_mean_image(tmp_path):
    train, test = load_dataset("digits2", "train"), load_dataset("digits2", "test")
    # Small batches: many updates for little compute (10 epochs at batch 8 reach ~0.2 of the
    # mean-image error in ~20 s, where 40 epochs at batch 32 took over a minute).
    fitted = fit_preprocessor(
        {"kind": "vanilla", "epochs": 10, "batch_size": 8, "lr": 1e-3, "warmup_epochs": 1, "augment": False},
        train,
        tmp_path,
    )
    x = test.float_images()
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(fitted.module.eval()(x), x).item()
    predicting_the_mean = ((x - x.mean(dim=0, keepdim=True)) ** 2).mean().item()
    assert mse < 0.8 * predicting_the_mean, (mse, predicting_the_mean)


@pytest.mark.parametrize("kind", ["cropd", "arae", "encoder_only"])
def test_the_training_attack_budget_defaults_to_the_datasets(kind):
    # App. A: ImagenetTe is attacked at 4/255; the pre-processor's own attack follows the dataset
    # unless the section names its eps.
    from trainables.schema import validate_trial_config

    def eps_of(dataset, **given):
        trial = {"data": {"dataset": dataset}, "preprocessor": {"kind": kind, "arch": "paper224", **given}}
        if dataset != "imagenette":
            trial["preprocessor"]["arch"] = "paper32"
        return validate_trial_config(trial)["preprocessor"]["eps"]

    assert eps_of("imagenette") == pytest.approx(4 / 255)
    assert eps_of("cifar10") == pytest.approx(8 / 255)
    assert eps_of("imagenette", eps=8 / 255) == pytest.approx(8 / 255)


def test_a_batch_size_schedule_changes_the_batch_from_its_epoch_and_leaves_other_configs_alone(
    tmp_path, tiny_arch, cache_root
):
    # Table 6's CIFAR-2: batch 32, then 256 from epoch 150. Here 16, then 64 after 2 epochs.
    from trainables.artifacts import config_hash
    from trainables.data import load_dataset
    from trainables.preprocessors import fit_preprocessor

    plain = resolve_preprocessor_config({"kind": "vanilla", "arch": tiny_arch, "batch_size": 16})
    assert "batch_size_schedule" not in plain  # unset: the config and its hash are as before the setting
    given = {"kind": "vanilla", "arch": tiny_arch, "batch_size": 16, "epochs": 3, "batch_size_schedule": {"2": 64}}
    cfg = resolve_preprocessor_config(given)
    assert cfg["batch_size_schedule"] == {2: 64}  # string keys (JSON) become epochs
    assert config_hash(cfg) == config_hash(resolve_preprocessor_config({**given, "batch_size_schedule": {2: 64}}))
    train = load_dataset("digits2", "train")
    fitted = fit_preprocessor(given, train, tmp_path)
    assert [r["batch_size"] for r in fitted.history] == [16, 16, 64]
    assert [r["lr"] for r in fitted.history] == [
        r["lr"] for r in fit_preprocessor({**given, "batch_size_schedule": None}, train, tmp_path / "plain").history
    ]  # the learning-rate schedule is per epoch, whatever the batch


@pytest.mark.parametrize("schedule", [{0: 64}, {2: 1}, {"x": 64}, [64], {2: 64.5}])
def test_a_bad_batch_size_schedule_is_one_clear_error(schedule):
    with pytest.raises(ConfigError) as err:
        resolve_preprocessor_config({"kind": "vanilla", "batch_size_schedule": schedule})
    assert err.value.field == "preprocessor.batch_size_schedule"
