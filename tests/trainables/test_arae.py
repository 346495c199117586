"""ARAE's training attack: FGSM by default (the paper's App. A), rohban-lab's PGD as a named option.

A real tiny auto-encoder on seeded random images; the attack's loss evaluations are counted by
wrapping the model's own `embed`, and the perturbation is read off the example it returns.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainables.artifacts import config_hash
from trainables.attacks import fgsm
from trainables.errors import ConfigError
from trainables.preprocessors import MaskedAutoencoder, fit_preprocessor, resolve_preprocessor_config
from trainables.preprocessors.objectives import arae_attack, arae_step
from trainables.schema.preprocessor import artifact_key_config

EPS = 8 / 255


def _arae(tiny_arch, **given):
    return resolve_preprocessor_config({"kind": "arae", "arch": tiny_arch, "eps": EPS, **given}, image_size=32)


@pytest.fixture
def model_and_images(tiny_arch):
    torch.manual_seed(0)
    model = MaskedAutoencoder(_arae(tiny_arch)["arch"], 32)
    # Kept away from 0 and 1 so that no pixel of the eps-ball is clipped by the image range.
    x = 0.1 + 0.8 * torch.rand(4, 3, 32, 32)
    return model, x


def _counting_embed(model: MaskedAutoencoder) -> list[int]:
    """Counts the calls of model.embed (the real one still runs); returns the counter."""
    calls = []
    real = model.embed

    def embed(x):
        calls.append(1)
        return real(x)

    model.embed = embed
    return calls


def test_the_default_is_fgsm_and_only_arae_carries_the_setting(tiny_arch):
    assert _arae(tiny_arch)["arae_attack"] == "fgsm"
    for kind in ("identity", "vanilla", "cropd", "vae", "encoder_only", "advcl"):
        given = {"kind": kind, "path": "somewhere"} if kind == "vae" else {"kind": kind}
        # Another kind's configs (and so their hashes) are as they were before the setting.
        assert "arae_attack" not in resolve_preprocessor_config(given), kind
    # PGD and FGSM auto-encoders are different artifacts, never one reused as the other.
    fgsm_key, pgd_key = (artifact_key_config(_arae(tiny_arch, arae_attack=a)) for a in ("fgsm", "pgd"))
    assert fgsm_key["arae_attack"] == "fgsm" and config_hash(fgsm_key) != config_hash(pgd_key)


@pytest.mark.parametrize("bad", ["PGD", "pgd10", "", None, 1])
def test_a_wrong_attack_is_refused_in_one_line_naming_the_field(tiny_arch, bad):
    with pytest.raises(ConfigError) as caught:
        _arae(tiny_arch, arae_attack=bad)
    message = str(caught.value)
    assert message.startswith("preprocessor.arae_attack: expected one of ['fgsm', 'pgd']") and "\n" not in message


def test_the_trial_schema_refuses_it_too(tiny_arch):
    from trainables.schema import validate_trial_config

    trial = {"data": {"dataset": "digits2"}, "preprocessor": {"kind": "arae", "arch": tiny_arch, "arae_attack": "x"}}
    with pytest.raises(ConfigError, match=r"^preprocessor\.arae_attack: expected one of"):
        validate_trial_config(trial)


def test_fgsm_moves_every_pixel_by_exactly_eps_with_one_gradient(tiny_arch, model_and_images):
    model, x = model_and_images
    with torch.no_grad():
        reference = model.embed(x)
    evaluations = []

    def latent_distance(xa):
        evaluations.append(1)
        return F.mse_loss(model.embed(xa), reference)

    torch.manual_seed(1)
    x_adv = arae_attack(latent_distance, x, _arae(tiny_arch, attack_steps=7))  # steps: PGD's only
    assert len(evaluations) == 1
    # One signed step: |x_adv - x| is eps at every pixel (none is clipped by [0, 1] here), not the
    # spread of a random start or of a projected walk.
    torch.testing.assert_close((x_adv - x).abs(), torch.full_like(x, EPS), rtol=0, atol=1e-6)
    # ... and it is an ascent step: the latent distance grows from zero.
    with torch.no_grad():
        assert F.mse_loss(model.embed(x_adv), reference) > 0


def test_fgsm_keeps_to_the_image_range_where_the_ball_leaves_it(tiny_arch, model_and_images):
    model, _ = model_and_images
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    x[0, 0, :4] = 0.0
    x[0, 1, :4] = 1.0
    with torch.no_grad():
        reference = model.embed(x)
    torch.manual_seed(1)
    x_adv = arae_attack(lambda xa: F.mse_loss(model.embed(xa), reference), x, _arae(tiny_arch))
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    inside = ((x - EPS) >= 0) & ((x + EPS) <= 1)
    torch.testing.assert_close((x_adv - x).abs()[inside], torch.full_like(x[inside], EPS), rtol=0, atol=1e-6)


def test_fgsm_from_x_itself_would_not_move_which_is_why_it_starts_at_random(model_and_images):
    # The latent distance is at its minimum at x: its gradient there is exactly zero and
    # sign(0) = 0, so the textbook FGSM from x returns x. ARAE's gradient is read at a random start.
    model, x = model_and_images
    with torch.no_grad():
        reference = model.embed(x)
    x_plain = fgsm(lambda xa: F.mse_loss(model.embed(xa), reference), x, eps=EPS, random_start=False)
    assert torch.equal(x_plain, x)


def test_pgd_takes_its_steps_and_fgsm_ignores_them(tiny_arch, model_and_images):
    model, x = model_and_images
    calls = _counting_embed(model)
    labels = torch.zeros(len(x), dtype=torch.long)

    def step(**given):
        calls.clear()
        torch.manual_seed(3)
        loss = arae_step(model, x, labels, _arae(tiny_arch, **given))["loss"]
        return loss.item(), len(calls)

    # embed calls: the clean reference, one per attack step, and the clean latent of the loss.
    assert step(arae_attack="pgd", attack_steps=3)[1] == 1 + 3 + 1
    assert step(arae_attack="pgd")[1] == 1 + 10 + 1  # rohban-lab's PGD-10, the steps default
    fgsm_1, calls_1 = step(attack_steps=1)
    fgsm_5, calls_5 = step(attack_steps=5)
    assert calls_1 == calls_5 == 1 + 1 + 1 and fgsm_1 == fgsm_5  # the same single step either way
    assert step(arae_attack="pgd", attack_steps=5)[0] != fgsm_5


def test_an_eps_of_zero_trains_on_the_clean_images(tiny_arch, model_and_images):
    model, x = model_and_images
    with torch.no_grad():
        reference = model.embed(x)
    for attack in ("fgsm", "pgd"):
        cfg = _arae(tiny_arch, arae_attack=attack, eps=0.0)
        assert torch.equal(arae_attack(lambda xa: F.mse_loss(model.embed(xa), reference), x, cfg), x)


def test_both_attacks_train_an_auto_encoder(tmp_path, tiny_arch):
    from trainables.data import load_dataset, stratified_fraction

    train = stratified_fraction(load_dataset("digits2", "train"), 0.1, seed=0)
    paths = set()
    for attack in ("fgsm", "pgd"):
        given = {"kind": "arae", "arch": tiny_arch, "epochs": 1, "batch_size": 16, "arae_attack": attack}
        fitted = fit_preprocessor({**given, "attack_steps": 2}, train, tmp_path)
        assert fitted.config["arae_attack"] == attack
        assert all(torch.isfinite(torch.tensor(v)) for k, v in fitted.history[0].items() if k.startswith("loss"))
        paths.add(fitted.path)
    assert len(paths) == 2  # one artifact each
