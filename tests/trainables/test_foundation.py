"""Tests of trainables.foundation: real tiny ViT-MAE checkpoints on disk, loaded through the real code.

No mocks: every checkpoint here is a genuine `save_pretrained` folder (a random tiny
ViTMAEForPreTraining, or the embedded foundation pre-trained on the digits), and every load goes
through `load_foundation`, offline (HF_HUB_OFFLINE=1 from conftest).
"""

from __future__ import annotations

import json
import logging
import shutil
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_settings import TINY_MAE  # tests/helpers/
from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel
from transformers.utils import logging as transformers_logging

from trainables.errors import ConfigError
from trainables.foundation import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FoundationFeatures,
    load_foundation,
    pretrain_embedded_foundation,
)

HIDDEN = TINY_MAE["hidden_size"]


@pytest.fixture(scope="module")
def saved_mae(tmp_path_factory):
    """A random tiny ViT-MAE pre-training checkpoint (encoder + decoder), saved as a hub model would be."""
    folder = tmp_path_factory.mktemp("tiny-vitmae")
    torch.manual_seed(0)
    model = ViTMAEForPreTraining(ViTMAEConfig(**TINY_MAE))
    model.save_pretrained(folder)
    return folder, model


@pytest.fixture(scope="module")
def batch():
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


# --- 1. loading from a local path: deterministic features ------------------------------------


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_local_checkpoint_gives_bit_identical_features(saved_mae, batch, pooling):
    folder, _ = saved_mae
    first = load_foundation({"name": str(folder), "pooling": pooling})
    assert isinstance(first, FoundationFeatures)
    assert first.feature_dim == HIDDEN
    with torch.no_grad():
        a, b = first(batch), first(batch)
        other = load_foundation({"name": str(folder), "pooling": pooling})(batch)
    assert a.shape == (batch.shape[0], HIDDEN)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b), "two calls on the same batch differ"
    assert torch.equal(a, other), "two separately loaded instances differ"


def test_pooling_choices_give_different_features(saved_mae, batch):
    folder, _ = saved_mae
    with torch.no_grad():
        mean = load_foundation({"name": str(folder), "pooling": "mean"})(batch)
        cls = load_foundation({"name": str(folder), "pooling": "cls"})(batch)
    assert not torch.allclose(mean, cls)


def test_encoder_weights_are_the_saved_ones(saved_mae):
    """The checkpoint's `vit.*` weights really arrive (not a fresh random init with a load report)."""
    folder, model = saved_mae
    loaded = load_foundation({"name": str(folder)}).model.state_dict()
    saved = model.vit.state_dict()
    assert set(saved) == set(loaded)
    for key, value in saved.items():
        assert torch.equal(loaded[key], value), key
    assert load_foundation({"name": str(folder)}).model.config.mask_ratio == 0.0


def test_features_of_a_sample_do_not_depend_on_its_batch(saved_mae, batch):
    folder, _ = saved_mae
    foundation = load_foundation({"name": str(folder)})
    with torch.no_grad():
        together = foundation(batch)
        alone = torch.cat([foundation(batch[i : i + 1]) for i in range(batch.shape[0])])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_loading_a_pretraining_checkpoint_logs_no_unexpected_key_report(saved_mae):
    """The decoder weights of a pre-training checkpoint are expected leftovers: no load report,
    and the caller's transformers verbosity is restored afterwards."""
    folder, _ = saved_mae
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    root = transformers_logging.get_logger()  # the "transformers" library logger
    handler = Collect(level=logging.DEBUG)
    root.addHandler(handler)
    before = transformers_logging.get_verbosity()
    try:
        transformers_logging.set_verbosity_warning()
        load_foundation({"name": str(folder)})
        assert transformers_logging.get_verbosity() == transformers_logging.WARNING
        # control: the raw load with the same verbosity does report the unused decoder keys
        ViTMAEModel.from_pretrained(folder)
    finally:
        root.removeHandler(handler)
        transformers_logging.set_verbosity(before)
    reports = [r.getMessage() for r in records if "LOAD REPORT" in r.getMessage()]
    assert len(reports) == 1, "expected exactly the control load to report"
    assert "UNEXPECTED" in reports[0]


# --- 2. contrast: the raw HuggingFace model is not deterministic ------------------------------


def test_raw_vitmae_is_random_even_in_eval_mode(saved_mae, batch):
    """Without our pinning the same input gives different outputs, so the test above means something."""
    folder, _ = saved_mae
    raw = ViTMAEModel.from_pretrained(folder).eval()  # mask_ratio 0.75 as saved
    assert raw.config.mask_ratio == 0.75
    with torch.no_grad():
        a = raw(pixel_values=batch).last_hidden_state
        b = raw(pixel_values=batch).last_hidden_state
    assert a.shape == b.shape == (batch.shape[0], 1 + 4, HIDDEN)  # only 4 of 16 patches kept
    assert not torch.equal(a, b)

    # mask_ratio 0 alone keeps every patch but still shuffles their order at random.
    unmasked = ViTMAEModel.from_pretrained(folder, mask_ratio=0.0).eval()
    with torch.no_grad():
        c = unmasked(pixel_values=batch).last_hidden_state
        d = unmasked(pixel_values=batch).last_hidden_state
    assert c.shape == (batch.shape[0], 1 + 16, HIDDEN)
    assert not torch.equal(c, d)


# --- 3. resizing and normalisation -------------------------------------------------------------


def test_smaller_inputs_are_upscaled_differentiably(saved_mae):
    folder, _ = saved_mae
    foundation = load_foundation({"name": str(folder)})
    small = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2), requires_grad=True)
    features = foundation(small)
    assert features.shape == (3, HIDDEN)
    features.pow(2).sum().backward()
    assert small.grad is not None
    assert torch.isfinite(small.grad).all()
    assert small.grad.abs().sum() > 0
    # every input pixel reaches the features through bilinear upscaling
    assert (small.grad.abs().sum(dim=1) > 0).all()
    with torch.no_grad():
        upscaled = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
        assert torch.equal(foundation(small), foundation(upscaled))
        # a non-square input is resized too
        assert foundation(torch.rand(2, 3, 24, 40)).shape == (2, HIDDEN)


def test_preprocessor_config_mean_std_are_used(saved_mae, batch, tmp_path):
    folder, _ = saved_mae
    custom = tmp_path / "custom-norm"
    shutil.copytree(folder, custom)
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.15)
    (custom / "preprocessor_config.json").write_text(json.dumps({"image_mean": list(mean), "image_std": list(std)}))

    default = load_foundation({"name": str(folder)})
    custom_foundation = load_foundation({"name": str(custom)})
    with torch.no_grad():
        a = default(batch)
        b = custom_foundation(batch)
        assert not torch.allclose(a, b, atol=1e-3), "custom image_mean/std had no effect"
        # exactly those statistics: feed the ImageNet-normalised model the image whose normalised
        # pixels equal the custom-normalised ones, and the features agree.
        m1, s1 = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        m2, s2 = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        equivalent = (batch - m2) / s2 * s1 + m1
        torch.testing.assert_close(default(equivalent), b, rtol=1e-4, atol=1e-5)


# --- 4. frozen and finetune modes --------------------------------------------------------------


def test_frozen_mode_has_no_trainable_parameters_and_stays_in_eval(saved_mae, batch):
    folder, _ = saved_mae
    foundation = load_foundation({"name": str(folder)})  # mode defaults to frozen
    params = list(foundation.parameters())
    assert params and not any(p.requires_grad for p in params)
    assert foundation.train() is foundation
    assert not foundation.training
    assert not any(m.training for m in foundation.modules())
    # an enclosing pipeline switching to train mode cannot unfreeze it either
    pipeline = torch.nn.Sequential(foundation)
    pipeline.train()
    assert not any(m.training for m in foundation.modules())
    # frozen, yet still differentiable with respect to its input (attacks need this)
    x = batch.clone().requires_grad_(True)
    foundation(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in params)


def test_finetune_mode_trains_every_encoder_weight(saved_mae, batch):
    folder, _ = saved_mae
    foundation = load_foundation({"name": str(folder), "mode": "finetune"})
    foundation.train()
    assert foundation.training and foundation.model.training
    named = dict(foundation.named_parameters())
    # The sin-cos position embedding is a Parameter HF keeps fixed; whether fine-tuning frees it
    # is a design choice, so only the learned weights are required here.
    learned = {n: p for n, p in named.items() if not n.endswith("position_embeddings")}
    assert learned and all(p.requires_grad for p in learned.values())
    foundation(batch).pow(2).mean().backward()
    for name, p in learned.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert sum(p.grad.abs().sum() for p in learned.values()) > 0
    foundation.eval()
    assert not foundation.model.training


# --- 5. bad input -------------------------------------------------------------------------------


def test_missing_path_raises_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_foundation({"name": str(tmp_path / "no-such-folder")})
    assert "foundation.name" in str(err.value)


def test_hub_name_not_in_cache_raises_config_error_offline():
    with pytest.raises(ConfigError) as err:
        load_foundation({"name": "cropd-tests/no-such-vit-mae"})
    message = str(err.value)
    assert "foundation.name" in message
    assert "cropd-tests/no-such-vit-mae" in message
    assert "allow_download" in message


def test_folder_without_config_json_raises_config_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError) as err:
        load_foundation({"name": str(tmp_path)})
    assert err.value.field == "foundation.name"
    assert "config.json" in str(err.value)


def test_corrupt_weights_raise_config_error(saved_mae, tmp_path):
    folder, _ = saved_mae
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError) as err:
        load_foundation({"name": str(broken)})
    assert err.value.field == "foundation.name"


def test_unknown_key_raises_config_error_with_did_you_mean(saved_mae):
    folder, _ = saved_mae
    with pytest.raises(ConfigError) as err:
        load_foundation({"nmae": str(folder)})
    assert err.value.field == "foundation.nmae"
    assert "did you mean 'name'" in str(err.value)


@pytest.mark.parametrize(
    "given, field",
    [
        ({"mode": "adversarial"}, "foundation.mode"),
        ({"pooling": "max"}, "foundation.pooling"),
        ({"allow_download": "yes"}, "foundation.allow_download"),
        ({"name": ""}, "foundation.name"),
        ({"name": "embedded", "embedded": {"epoch": 2}}, "foundation.embedded.epoch"),
        ({"name": "embedded", "embedded": {"patch_size": 5}}, "foundation.embedded.patch_size"),
        ({"name": "embedded", "embedded": {"mask_ratio": 1.0}}, "foundation.embedded.mask_ratio"),
    ],
)
def test_bad_values_name_their_field(given, field, tmp_path):
    with pytest.raises(ConfigError) as err:
        load_foundation(given, cache_root=tmp_path)
    assert err.value.field == field
    assert str(err.value).startswith(field)
    assert not (tmp_path / "foundations").exists() or not any((tmp_path / "foundations").iterdir())


def test_did_you_mean_for_embedded_keys(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_foundation({"name": "embedded", "embedded": {"epoch": 2}}, cache_root=tmp_path)


# --- 6. the embedded foundation (Algorithm 1 step 1) ----------------------------------------


@pytest.fixture(scope="module")
def embedded(cache_root, tiny_foundation_config):
    """The session's tiny embedded foundation: built (or reused) once, with its folder."""
    started = time.perf_counter()
    foundation = load_foundation(tiny_foundation_config, cache_root=cache_root)
    first_s = time.perf_counter() - started
    folder = pretrain_embedded_foundation(tiny_foundation_config["embedded"], cache_root=cache_root)
    return foundation, folder, first_s


def test_embedded_foundation_is_cached_not_retrained(embedded, cache_root, tiny_foundation_config):
    _, folder, _ = embedded
    assert folder.parent == cache_root / "foundations"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    record = (folder / "pretraining.json").read_text()
    epochs_seen = []
    started = time.perf_counter()
    again = pretrain_embedded_foundation(
        tiny_foundation_config["embedded"], cache_root=cache_root, on_epoch=epochs_seen.append
    )
    foundation = load_foundation(tiny_foundation_config, cache_root=cache_root)
    elapsed = time.perf_counter() - started
    assert again == folder
    assert epochs_seen == [], "the cached foundation was pre-trained again"
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert (folder / "pretraining.json").read_text() == record
    assert elapsed < 1.0, f"reusing the cached foundation took {elapsed:.2f}s"
    assert foundation.feature_dim == tiny_foundation_config["embedded"]["hidden_size"]
    # no half-built scratch folders left beside it
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".tmp")]


def test_embedded_folder_is_a_plain_save_pretrained_checkpoint(embedded, tiny_foundation_config, batch):
    foundation, folder, _ = embedded
    assert (folder / "config.json").is_file()
    assert (folder / "model.safetensors").is_file()
    record = json.loads((folder / "pretraining.json").read_text())
    assert record["config"]["epochs"] == tiny_foundation_config["embedded"]["epochs"]
    assert record["train_images"] == 1347  # the digits TRAIN split only
    assert np.isfinite(record["final_loss"])
    saved_config = json.loads((folder / "config.json").read_text())
    assert saved_config["model_type"] == "vit_mae"
    assert saved_config["hidden_size"] == tiny_foundation_config["embedded"]["hidden_size"]
    # loading the folder by path (the hub-model code path) gives the very same features
    by_path = load_foundation({"name": str(folder)})
    with torch.no_grad():
        assert torch.equal(foundation(batch), by_path(batch))
        assert torch.equal(foundation(batch), foundation(batch))


def test_other_embedded_config_gets_its_own_folder(embedded, cache_root, tiny_foundation_config, batch):
    foundation, folder, _ = embedded
    other_cfg = {**tiny_foundation_config["embedded"], "epochs": 1}
    epochs_seen = []
    other = pretrain_embedded_foundation(other_cfg, cache_root=cache_root, on_epoch=epochs_seen.append)
    assert other != folder and other.parent == folder.parent
    assert [e["epoch"] for e in epochs_seen] == [1]
    assert all(e["stage"] == "foundation" and np.isfinite(e["loss"]) for e in epochs_seen)
    assert (folder / "config.json").is_file(), "the first foundation was disturbed"
    with torch.no_grad():
        assert not torch.allclose(load_foundation({"name": str(other)})(batch), foundation(batch))


def test_embedded_pretraining_is_reproducible(embedded, tmp_path, tiny_foundation_config):
    """Same config and thread count, fresh caches: the same weights, bit for bit (seeded data order, masks, init).

    Both are built here: the session's cached one may come from a one-thread Ray worker, and CPU
    float sums differ between thread counts (results record torch_threads for that reason).
    """
    _, folder, _ = embedded
    first = pretrain_embedded_foundation(tiny_foundation_config["embedded"], cache_root=tmp_path / "first")
    again = pretrain_embedded_foundation(tiny_foundation_config["embedded"], cache_root=tmp_path / "again")
    assert first.name == again.name == folder.name
    assert (first / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()


def test_embedded_features_separate_digits(embedded):
    """A linear probe on the frozen features of digits2 (0 vs 1) beats chance by far."""
    from sklearn.linear_model import LogisticRegression

    from trainables.data import load_dataset

    foundation, _, _ = embedded
    train, test = load_dataset("digits2", "train"), load_dataset("digits2", "test")
    with torch.no_grad():
        x_train = foundation(train.float_images()).numpy()
        x_test = foundation(test.float_images()).numpy()
    probe = LogisticRegression(max_iter=2000).fit(x_train, train.labels.numpy())
    accuracy = probe.score(x_test, test.labels.numpy())
    assert accuracy > 0.8, f"linear-probe accuracy on digits2 features: {accuracy:.3f}"
