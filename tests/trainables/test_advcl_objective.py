"""AdvCL as a pre-processor objective: multi-view NT-Xent by hand, the FFT split, pseudo-labels, bad input, a fit.

Tiny auto-encoders on a slice of the embedded digits keep the whole file to seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from trainables import pseudo_labels as pseudo_module
from trainables.data import load_dataset, stratified_fraction
from trainables.errors import ConfigError
from trainables.frequency import frequency_split, low_pass_mask
from trainables.losses import multiview_nt_xent
from trainables.multiview import make_views
from trainables.preprocessors import fit_preprocessor, load_preprocessor, resolve_preprocessor_config
from trainables.preprocessors.fit import artifact_folder, data_fingerprint
from trainables.pseudo_labels import FeatureModel, pseudo_labels


@pytest.fixture(scope="module")
def small_train():
    return stratified_fraction(load_dataset("digits2", "train"), 0.2, seed=0)


def _pooled_pixels() -> FeatureModel:
    """A stand-in pre-trained model: 4x4 average-pooled pixels (fast, deterministic)."""
    return FeatureModel({"name": "pooled-pixels"}, nn.Sequential(nn.AvgPool2d(4), nn.Flatten()))


def _advcl(tiny_arch, **overrides):
    return {
        "kind": "advcl",
        "arch": tiny_arch,
        "epochs": 2,
        "batch_size": 16,
        "lr": 1e-3,
        "attack_steps": 1,
        **overrides,
    }


# --- the multi-view NT-Xent (eq. 5) ------------------------------------------------------------


def _cosine(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def _multiview_by_hand(views, t):
    """Eq. (5) with plain floats: every (view i, image b) is an anchor; its positives are the other
    views of image b; its denominator runs over every other (view, image) pair. Averaged over the
    m - 1 positives of an anchor, then over the m * B anchors."""
    m, batch = len(views), len(views[0])
    total = 0.0
    for i in range(m):
        for b in range(batch):
            anchor = views[i][b]
            denominator = sum(
                math.exp(_cosine(anchor, views[k][c]) / t) for k in range(m) for c in range(batch) if (k, c) != (i, b)
            )
            for j in range(m):
                if j != i:
                    total += -math.log(math.exp(_cosine(anchor, views[j][b]) / t) / denominator) / (m - 1)
    return total / (m * batch)


@pytest.mark.parametrize("count", [3, 4])
@pytest.mark.parametrize("t", [0.2, 0.5])
def test_multiview_nt_xent_matches_hand_computation(count, t):
    generator = torch.Generator().manual_seed(count)
    base = torch.randn(5, 6, generator=generator, dtype=torch.float64)
    views = [base + 0.5 * torch.randn(5, 6, generator=generator, dtype=torch.float64) for _ in range(count)]
    ours = multiview_nt_xent(views, t).item()
    assert ours == pytest.approx(_multiview_by_hand([v.tolist() for v in views], t), rel=1e-10)
    # symmetric in its views: the order of the view list does not matter
    assert multiview_nt_xent(views[::-1], t).item() == pytest.approx(ours, rel=1e-10)


def test_multiview_nt_xent_rewards_agreeing_views_and_checks_its_input():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(6, 8, generator=generator)
    agreeing = multiview_nt_xent([z, 2 * z, z + 0.01], 0.5)
    mismatched = multiview_nt_xent([z, z.roll(1, dims=0), z.roll(2, dims=0)], 0.5)
    assert agreeing < mismatched
    with pytest.raises(ValueError, match="at least 2 views"):
        multiview_nt_xent([z], 0.5)
    with pytest.raises(ValueError, match="one"):
        multiview_nt_xent([z, z[:3]], 0.5)


# --- the frequency views (eq. 8) ---------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 15])
@pytest.mark.parametrize("radius", [1, 4, 8])
def test_high_plus_low_reconstructs_x(size, radius):
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    low, high = frequency_split(x, radius)
    assert torch.allclose(low + high, x, atol=1e-6)
    # the mask is symmetric under f -> -f, so nothing is lost by keeping the real part
    imaginary = torch.fft.ifft2(torch.fft.fft2(x) * low_pass_mask(size, size, radius)).imag
    assert imaginary.abs().max() < 1e-5


def test_low_is_low_and_high_is_high():
    constant = torch.full((1, 3, 32, 32), 0.7)
    low, high = frequency_split(constant, 8)
    assert torch.allclose(low, constant, atol=1e-6) and high.abs().max() < 1e-6  # only the zero frequency
    rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    checkerboard = (((rows + cols) % 2).float() * 0.5 + 0.25).expand(1, 3, 32, 32)  # Nyquist frequency around 0.5
    low, high = frequency_split(checkerboard, 8)
    assert torch.allclose(low, torch.full_like(low, 0.5), atol=1e-6)
    assert torch.allclose(high, checkerboard - 0.5, atol=1e-6)


def test_high_matches_the_papers_centred_spectrum_definition():
    """q_h(i, j) = 1[d((i, j), c) >= r] q(i, j) on the fftshift-ed spectrum, c its centre (AdvCL's code: size / 2)."""
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    r = 8
    centred = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))
    keep = torch.tensor([[math.dist((i, j), (16, 16)) >= r for j in range(32)] for i in range(32)])
    expected = torch.fft.ifft2(torch.fft.ifftshift(centred * keep, dim=(-2, -1))).real
    assert torch.allclose(frequency_split(x, r)[1], expected, atol=1e-6)


def test_views_are_what_the_config_names_and_frequency_views_have_xs_contrast(small_train, tiny_arch):
    images = small_train.float_images(torch.arange(8))
    cfg = resolve_preprocessor_config(
        _advcl(tiny_arch, augment=False, views="adversarial+t1+high+low", fft_radius=4), image_size=32
    )
    torch.manual_seed(0)
    x, views = make_views(images, cfg["views"], augment=False, fft_radius=cfg["fft_radius"])
    assert torch.equal(x, images) and list(views) == ["t1", "high", "low"]  # the adversarial view is the step's PGD
    assert not torch.equal(views["t1"], images)  # an augmentation draw
    low, high = frequency_split(x, 4)
    for name, part in (("high", high), ("low", low)):
        view = views[name]
        assert torch.allclose(view.mean(dim=(0, 2, 3)), x.mean(dim=(0, 2, 3)), atol=1e-5)
        assert torch.allclose(view.std(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)), atol=1e-4)
        # the same image content, only shifted and scaled per channel
        correlation = torch.corrcoef(torch.stack([view[:, 0].flatten(), part[:, 0].flatten()]))[0, 1]
        assert correlation > 0.9999
    augmented, _ = make_views(images, cfg["views"], augment=True, fft_radius=cfg["fft_radius"])
    assert not torch.equal(augmented, images)  # with augment on, x is itself an augmentation draw, as for cropd


# --- pseudo-labels (eq. 10) --------------------------------------------------------------------


def test_pseudo_labels_are_stable_for_a_seed_and_reused_from_cache(tmp_path, small_train, monkeypatch):
    calls = []
    real_kmeans = pseudo_module.KMeans

    def counting_kmeans(*args, **kwargs):
        calls.append(kwargs["n_clusters"])
        return real_kmeans(*args, **kwargs)

    monkeypatch.setattr(pseudo_module, "KMeans", counting_kmeans)
    key = data_fingerprint(small_train)
    first = pseudo_labels(small_train, [2, 5], _pooled_pixels(), tmp_path / "a", data_key=key, seed=3)
    assert first.shape == (len(small_train), 2) and first.dtype == torch.int64
    assert set(first[:, 0].tolist()) == {0, 1} and first[:, 1].max() < 5
    assert calls == [2, 5]
    fresh = pseudo_labels(small_train, [2, 5], _pooled_pixels(), tmp_path / "b", data_key=key, seed=3)
    assert torch.equal(first, fresh) and calls == [2, 5, 2, 5]  # recomputed elsewhere: identical

    files = sorted((tmp_path / "a").glob("k*.pt"))
    assert len(files) == 2
    stamps = [f.stat().st_mtime_ns for f in files]
    model_that_must_not_run = FeatureModel({"name": "pooled-pixels"}, nn.Identity())  # same identity, broken features
    again = pseudo_labels(small_train, [5, 2], model_that_must_not_run, tmp_path / "a", data_key=key, seed=3)
    assert torch.equal(again, first[:, [1, 0]])
    assert calls == [2, 5, 2, 5]  # no K-means: both read from the cache
    assert [f.stat().st_mtime_ns for f in files] == stamps
    pseudo_labels(small_train, [2], _pooled_pixels(), tmp_path / "a", data_key=key, seed=4)
    assert calls[-1] == 2 and len(list((tmp_path / "a").glob("k*.pt"))) == 3  # another seed is another file


# --- bad input: one clear error each, before anything is written --------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"views": ["t1"]}, "preprocessor.views"),
        ({"views": "adversarial"}, "preprocessor.views"),
        ({"views": []}, "preprocessor.views"),
        ({"views": ["adversarial", "t3"]}, "preprocessor.views"),
        ({"views": ["t1", "t1", "high"]}, "preprocessor.views"),
        ({"views": 4}, "preprocessor.views"),
        ({"fft_radius": 0}, "preprocessor.fft_radius"),
        ({"fft_radius": -2}, "preprocessor.fft_radius"),
        ({"fft_radius": 17}, "preprocessor.fft_radius"),  # 32px images: at most 16
        ({"pseudo_clusters": [1]}, "preprocessor.pseudo_clusters"),
        ({"pseudo_clusters": [10, 2, 10]}, "preprocessor.pseudo_clusters"),
        ({"pseudo_clusters": "2+10+10"}, "preprocessor.pseudo_clusters"),
        ({"pseudo_clusters": "2+ten"}, "preprocessor.pseudo_clusters"),
        ({"pseudo_clusters": [100000]}, "preprocessor.pseudo_clusters"),  # more clusters than training images
        ({"pseudo_lambda": -0.1}, "preprocessor.pseudo_lambda"),
        ({"pseudo_clusters": [2]}, "preprocessor.pseudo_model"),  # no model to cluster features of
    ],
)
def test_bad_advcl_config_is_one_clear_error_and_writes_nothing(tmp_path, small_train, tiny_arch, overrides, field):
    with pytest.raises(ConfigError) as caught:
        fit_preprocessor(_advcl(tiny_arch, **overrides), small_train, tmp_path)
    message = str(caught.value)
    assert message.startswith(field + ":") and "expected" in message and "\n" not in message
    assert not any(tmp_path.iterdir())


def test_unknown_view_suggests_a_known_one():
    with pytest.raises(ConfigError, match="did you mean 'high'"):
        resolve_preprocessor_config({"kind": "advcl", "views": ["adversarial", "hihg"]})


# --- config and artifact identity --------------------------------------------------------------


def test_existing_kinds_keep_their_configs_and_advcl_settings_change_its_key(small_train, tmp_path, tiny_arch):
    # The keys every kind resolved to before advcl existed: their trial and artifact hashes stay.
    before = {
        "arch",
        "attack_step_size",
        "attack_steps",
        "augment",
        "batch_size",
        "epochs",
        "eps",
        "fgsm_random_start",
        "gamma",
        "kind",
        "lambda",
        "lr",
        "path",
        "seed",
        "temperature",
        "warmup_epochs",
        "weight_decay",
    }
    for kind in ("identity", "vanilla", "cropd", "encoder_only"):
        assert set(resolve_preprocessor_config({"kind": kind})) == before
    # ARAE's changed on purpose (issue 32): its attack became FGSM by default, a new training
    # (tests/trainables/test_arae.py); the setting naming it is ARAE's alone.
    assert set(resolve_preprocessor_config({"kind": "arae"})) == before | {"arae_attack"}
    assert resolve_preprocessor_config({"kind": "arae"})["attack_steps"] == 10  # advcl's PGD-5 default is its own
    assert resolve_preprocessor_config({"kind": "advcl"})["attack_steps"] == 5

    # The list form and the sweep-friendly joined form are one config, in a canonical order.
    as_list = resolve_preprocessor_config(
        _advcl(tiny_arch, views=["high", "t1", "adversarial"], pseudo_clusters=[10, 2])
    )
    as_text = resolve_preprocessor_config(_advcl(tiny_arch, views="adversarial+t1+high", pseudo_clusters="2+10"))
    assert (
        as_list == as_text
        and as_list["views"] == ["adversarial", "t1", "high"]
        and as_list["pseudo_clusters"] == [2, 10]
    )
    assert resolve_preprocessor_config(_advcl(tiny_arch, pseudo_clusters=10))["pseudo_clusters"] == [10]

    def folder(features=None, **overrides):
        return artifact_folder(
            resolve_preprocessor_config(_advcl(tiny_arch, **overrides)), small_train, tmp_path, features
        )

    assert folder() != folder(views=["adversarial", "t1", "t2"])
    assert folder() != folder(fft_radius=4)
    assert folder(_pooled_pixels(), pseudo_clusters=[2]) != folder(_pooled_pixels(), pseudo_clusters=[2, 3])
    other_model = FeatureModel({"name": "another"}, nn.Identity())
    assert folder(_pooled_pixels(), pseudo_clusters=[2]) != folder(other_model, pseudo_clusters=[2])


# --- training end to end -----------------------------------------------------------------------


def _weights(module):
    return {name: tensor.clone() for name, tensor in module.state_dict().items()}


class Interrupt(Exception):
    pass


def test_advcl_fit_runs_resumes_and_reuses_pseudo_labels(
    tmp_path, small_train, tiny_arch, tiny_foundation_config, cache_root, monkeypatch
):
    """Pseudo-labels from the (tiny) foundation by default; a resumed fit equals an uninterrupted one."""
    calls = []
    real_kmeans = pseudo_module.KMeans
    monkeypatch.setattr(pseudo_module, "KMeans", lambda *a, **k: calls.append(k["n_clusters"]) or real_kmeans(*a, **k))
    foundation = FeatureModel.of_foundation(tiny_foundation_config)  # loaded (pre-trained once) on first need
    cfg = _advcl(tiny_arch, views=["adversarial", "t1", "t2", "high", "low"], pseudo_clusters=[2, 3])

    straight = fit_preprocessor(cfg, small_train, tmp_path / "straight", foundation=foundation)
    assert calls == [2, 3]
    record = straight.history[-1]
    assert {"loss", "loss_reconstruction", "loss_contrastive", "loss_pseudo_ce"} <= set(record)
    assert all(np.isfinite(value) for key, value in record.items() if key.startswith("loss"))
    x = small_train.float_images(torch.arange(4))
    assert straight.module(x).shape == x.shape  # still images to images

    def stop_after_one(record):
        if record["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit_preprocessor(cfg, small_train, tmp_path / "resumed", foundation=foundation, on_epoch=stop_after_one)
    resumed = fit_preprocessor(cfg, small_train, tmp_path / "resumed", foundation=foundation)
    assert calls == [2, 3, 2, 3]  # a new artifact folder clusters once; its resume reads the cache
    expected, got = _weights(straight.module), _weights(resumed.module)
    assert expected.keys() == got.keys() and any(name.startswith("pseudo_heads.") for name in got)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name

    loaded = load_preprocessor(straight.path)  # the heads are part of the saved module
    with torch.no_grad():
        assert torch.equal(loaded.module(x), straight.module.eval()(x))
    # Another advcl config on the same data and model shares the cached labels.
    fit_preprocessor(
        {**cfg, "epochs": 1, "views": ["t1", "high"]}, small_train, tmp_path / "straight", foundation=foundation
    )
    assert calls == [2, 3, 2, 3]


def test_advcl_without_pseudo_labels_needs_no_model(tmp_path, small_train, tiny_arch):
    fitted = fit_preprocessor(_advcl(tiny_arch, epochs=1, views="adversarial+t1+t2"), small_train, tmp_path)
    assert "loss_pseudo_ce" not in fitted.history[0] and np.isfinite(fitted.history[0]["loss_contrastive"])
    assert not (tmp_path / "pseudo_labels").exists()
