"""A foundation that masks at random (foundation.mask_ratio) and EOT for the attacks (evaluation.eot_samples).

Real models only: a random tiny ViT-MAE saved with save_pretrained, and the tiny embedded
foundation pre-trained on the digits (conftest's cache) with a linear probe head fitted on its
features. The counting and recording wrappers below are real nn.Modules around the real pipeline.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from tiny_settings import TINY_MAE  # tests/helpers/
from torch import nn
from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel

from trainables.attacks import pgd
from trainables.data import load_dataset, stratified_fraction
from trainables.errors import ConfigError
from trainables.evaluation import evaluate
from trainables.evaluation.integrity import _input_gradient
from trainables.evaluation.validation import validation_metrics
from trainables.foundation import (
    build_untrained_resnet,
    load_foundation,
    load_foundation_folder,
    save_foundation,
)
from trainables.head import build_linear_head, train_head
from trainables.pipeline import Pipeline
from trainables.preprocessors.simple import IdentityPreprocessor
from trainables.schema.evaluation import check_evaluation_config
from trainables.schema.foundation import resolve_foundation_config
from trainables.schema.head import resolve_head_config
from trainables.survival import (
    PGDSetting,
    _Attack,
    attack_loss,
    eot_gradient,
    is_random,
    pgd_survives,
    predict,
    reseed_random_modules,
)
from trainables.validation_probe import fit_probe_head

EPS = 0.001  # the tiny digits pipeline breaks at 0.005: at 0.001 PGD-10 leaves some points, not all


@pytest.fixture(scope="module")
def saved_mae(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-vitmae")
    torch.manual_seed(0)
    ViTMAEForPreTraining(ViTMAEConfig(**TINY_MAE)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def batch():
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def digits(tiny_foundation_config, cache_root):
    """(deterministic pipeline, the same with mask ratio 0.75, test images, labels): the embedded
    foundation with a linear probe fitted on its unmasked features of the digits' training split."""
    train = stratified_fraction(load_dataset("digits", "train"), 0.3, seed=0)
    test = load_dataset("digits", "test")
    plain = load_foundation(tiny_foundation_config, cache_root=cache_root)
    with torch.no_grad():
        features = plain(train.float_images())
    head = fit_probe_head(features, train.labels, 10)
    masked = load_foundation({**tiny_foundation_config, "mask_ratio": 0.75}, cache_root=cache_root)
    deterministic = Pipeline(IdentityPreprocessor(), plain, head).eval()
    random = Pipeline(IdentityPreprocessor(), masked, head).eval()
    return deterministic, random, test.float_images()[:64], test.labels[:64]


def _todays_features(folder, pixels: torch.Tensor, pooling: str) -> torch.Tensor:
    """What the loading code computed before mask_ratio existed: mask ratio 0, the fixed arange noise."""
    model = ViTMAEModel.from_pretrained(folder, mask_ratio=0.0).eval()
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    noise = torch.arange(16, dtype=torch.float32).expand(len(pixels), -1)
    with torch.no_grad():
        hidden = model(pixel_values=(pixels - mean) / std, noise=noise).last_hidden_state
    return hidden[:, 0] if pooling == "cls" else hidden[:, 1:].mean(dim=1)


# --- (a) the foundation: unmasked as today, masked at random but seeded --------------------------


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_mask_ratio_0_gives_todays_features_bit_for_bit(saved_mae, batch, pooling):
    expected = _todays_features(saved_mae, batch, pooling)
    for given in ({}, {"mask_ratio": 0}, {"mask_ratio": 0.0}):
        foundation = load_foundation({"name": str(saved_mae), "pooling": pooling, **given})
        assert foundation.model.config.mask_ratio == 0.0 and not is_random(foundation)
        torch.manual_seed(123)  # nothing of the global RNG is drawn
        with torch.no_grad():
            assert torch.equal(foundation(batch), expected)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_mask_ratio_075_draws_differ_and_reseeding_repeats_them(saved_mae, batch, pooling):
    foundation = load_foundation({"name": str(saved_mae), "pooling": pooling, "mask_ratio": 0.75})
    assert foundation.model.config.mask_ratio == 0.75 and is_random(foundation)
    with torch.no_grad():
        first, second = foundation(batch), foundation(batch)
        assert not torch.equal(first, second)
        foundation.reseed(7)
        torch.manual_seed(1)
        again = foundation(batch)
        foundation.reseed(7)
        torch.manual_seed(2)  # the global RNG plays no part
        repeated = foundation(batch)
        other = load_foundation({"name": str(saved_mae), "pooling": pooling, "mask_ratio": 0.75})
        other.reseed(7)
        elsewhere = other(batch)
    assert torch.equal(again, repeated) and torch.equal(again, elsewhere)
    assert torch.isfinite(again).all() and again.shape == (len(batch), TINY_MAE["hidden_size"])


def test_mean_pooling_averages_the_kept_tokens_and_cls_reads_the_cls_token(saved_mae, batch):
    mean_pooled = load_foundation({"name": str(saved_mae), "mask_ratio": 0.75})
    cls_pooled = load_foundation({"name": str(saved_mae), "mask_ratio": 0.75, "pooling": "cls"})
    noise = torch.rand(len(batch), 16, generator=torch.Generator().manual_seed(3))
    pixels = (batch - mean_pooled.mean) / mean_pooled.std
    with torch.no_grad():
        hidden = mean_pooled.model(pixel_values=pixels, noise=noise).last_hidden_state
        mean_pooled.reseed(3)
        cls_pooled.reseed(3)
        assert hidden.shape[1] == 1 + 4  # the cls token and the 4 kept of 16 patches
        assert torch.equal(mean_pooled(batch), hidden[:, 1:].mean(dim=1))
        assert torch.equal(cls_pooled(batch), hidden[:, 0])


def test_a_mask_ratio_that_keeps_no_patch_is_one_config_error(saved_mae):
    with pytest.raises(ConfigError) as caught:
        load_foundation({"name": str(saved_mae), "mask_ratio": 0.99})  # int(16 * 0.01) = 0 patches
    assert caught.value.field == "foundation.mask_ratio" and "\n" not in str(caught.value)


def test_a_resnet_folder_with_a_mask_ratio_is_refused(tmp_path):
    cfg = resolve_foundation_config({"name": "resnet18", "resnet": {"width": 4}, "pretraining": {"method": "rocl"}})
    resnet = build_untrained_resnet(cfg, trainable=False)
    save_foundation(resnet, tmp_path)
    assert load_foundation_folder(tmp_path) is not None
    with pytest.raises(ConfigError) as caught:
        load_foundation_folder(tmp_path, mask_ratio=0.5)
    assert caught.value.field == "foundation.mask_ratio"


# --- (d) the settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-0.1, 1, 1.0, 1.5, "0.5", True, None, float("nan")])
def test_a_bad_mask_ratio_is_one_line_naming_the_field(value):
    with pytest.raises(ConfigError) as caught:
        resolve_foundation_config({"name": "embedded", "mask_ratio": value})
    assert caught.value.field == "foundation.mask_ratio"
    assert str(caught.value).startswith("foundation.mask_ratio: expected a number in [0, 1)")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "given, message",
    [
        ({"name": "resnet18", "mask_ratio": 0.5}, "0 for resnet18"),
        ({"name": "resnet18", "mask_ratio": 0.5, "pretraining": {"method": "rocl"}}, "0 for resnet18"),
        ({"name": "embedded", "mask_ratio": 0.5, "pretraining": {"method": "rocl"}}, "with robust pre-training"),
    ],
)
def test_a_mask_ratio_is_refused_where_it_cannot_apply(given, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        resolve_foundation_config(given)
    assert caught.value.field == "foundation.mask_ratio" and "\n" not in str(caught.value)


def test_a_mask_ratio_on_a_resnet_without_pretraining_is_no_robust_pretraining_error():
    # `pretraining: {method: none}` resolves to no pre-training: the mask ratio is still refused, for the resnet
    with pytest.raises(ConfigError) as caught:
        resolve_foundation_config({"name": "resnet18", "mask_ratio": 0.5, "pretraining": {"method": "none"}})
    assert caught.value.field == "foundation.mask_ratio"


def test_defaults_are_left_out_so_hashes_stay():
    for given in ({}, {"mask_ratio": 0}, {"mask_ratio": 0.0}):
        assert "mask_ratio" not in resolve_foundation_config({"name": "embedded", **given})
    assert resolve_foundation_config({"name": "embedded", "mask_ratio": 0.75})["mask_ratio"] == 0.75
    assert "eot_samples" not in check_evaluation_config({"eot_samples": 1})
    assert "eot_samples" not in check_evaluation_config(None)
    assert check_evaluation_config({"eot_samples": 8})["eot_samples"] == 8


@pytest.mark.parametrize("value", [0, -1, 1.5, 2.0, True, "2", None])
def test_a_bad_eot_samples_is_one_line_naming_the_field(value):
    with pytest.raises(ConfigError) as caught:
        check_evaluation_config({"eot_samples": value})
    assert caught.value.field == "evaluation.eot_samples" and "\n" not in str(caught.value)
    assert "integer >= 1" in str(caught.value)


# --- (b) EOT 1 on a deterministic model: today's attack, bit for bit ----------------------------


def _survives_before_eot(model, y, attack, loss="ce"):
    """trainables/survival.py `_survives` as it was before EOT, verbatim."""
    x_adv = attack.start.clone()
    survives = torch.ones(len(y), dtype=torch.bool, device=y.device)
    active = torch.arange(len(y), device=y.device)
    for t in range(int(attack.steps.max()) + 1):
        done = attack.steps[active] == t
        if done.all():
            survives[active] &= predict(model, x_adv[active]) == y[active]
            break
        current = x_adv[active].requires_grad_(True)
        logits = model(current)
        holds = logits.detach().argmax(dim=1) == y[active]
        survives[active[~holds]] = False
        stepping = holds & ~done
        if not stepping.any():
            break
        (grad,) = torch.autograd.grad(attack_loss(logits, y[active], current, loss), current)
        active = active[stepping]
        moved = current.detach()[stepping] + attack.step_size[active] * grad[stepping].sign()
        x_adv[active] = moved.clamp_(attack.low[active], attack.high[active])
    return survives


def _pgd_before_eot(loss_of, x, *, eps, steps, step_size):
    """trainables/attacks.py `pgd` as it was before EOT (random start), verbatim."""
    x = x.detach()
    low, high = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)
    x_adv = (x.clone() + torch.empty_like(x).uniform_(-eps, eps)).clamp_(low, high)
    for _ in range(steps):
        x_in = x_adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_of(x_in), x_in)
        x_adv = x_adv.detach().add_(grad.sign(), alpha=step_size).clamp_(low, high)
    return x_adv.detach()


@pytest.mark.parametrize("loss", ["ce", "margin"])
def test_eot_1_on_a_deterministic_model_is_todays_pgd_bit_for_bit(digits, loss):
    model, _, images, labels = digits
    x, y = images[:32], labels[:32]
    setting = PGDSetting(EPS, 10, EPS / 5)
    torch.manual_seed(11)
    expected = _survives_before_eot(model, y, _Attack.starting(x, setting, True), loss)
    for extra in ({}, {"eot_samples": 1}):
        torch.manual_seed(11)
        got = pgd_survives(model, x, y, eps=EPS, steps=10, step_size=EPS / 5, random_start=True, loss=loss, **extra)
        assert torch.equal(got, expected)
    assert 0 < int(expected.sum()) < len(y)  # some points broken, some not: the comparison says something

    def loss_of(z):
        return F.cross_entropy(model(z), y, reduction="sum")

    torch.manual_seed(12)
    before = _pgd_before_eot(loss_of, x, eps=EPS, steps=5, step_size=EPS / 5)
    torch.manual_seed(12)
    assert torch.equal(pgd(loss_of, x, eps=EPS, steps=5, step_size=EPS / 5, random_start=True, eot_samples=1), before)
    # the integrity check's gradients too
    x_in = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(attack_loss(model(x_in), y, x_in, loss), x_in)
    assert torch.equal(_input_gradient(model, x, y, loss), grad.flatten(1))


def test_eot_1_on_a_deterministic_model_leaves_the_evaluation_as_it_was(digits):
    model, _, images, labels = digits
    config = {"eps": EPS, "attacks": ["pgd10", "pgd10_margin"], "n_examples": 32, "batch_size": 16}
    plain = evaluate(model, images, labels, config, num_classes=10, default_eps=EPS)
    explicit = evaluate(model, images, labels, {**config, "eot_samples": 1}, num_classes=10, default_eps=EPS)
    untimed = lambda result: {k: v for k, v in result.items() if not k.startswith("time_")}  # noqa: E731
    assert untimed(plain) == untimed(explicit)
    assert "randomness" not in plain["integrity_details"]
    assert not {"random_foundation", "nondeterministic_model"} & set(plain["integrity_flags"])


# --- (c) EOT k > 1 on a random foundation: k gradients per step, scored by a fresh draw ----------


class _PassLog(nn.Module):
    """The pipeline, logging every pass: whether it builds a graph (a gradient pass) or not (a check),
    its batch size, and the masking noise the foundation drew for it. `close()` removes its hook."""

    def __init__(self, pipeline: Pipeline):
        super().__init__()
        self.pipeline = pipeline
        self.passes: list[dict] = []
        self._hook = pipeline.foundation.model.register_forward_pre_hook(self._noise, with_kwargs=True)

    def _noise(self, module, args, kwargs):
        self.passes[-1]["noise"] = kwargs["noise"].clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes.append({"gradient": torch.is_grad_enabled() and x.requires_grad, "points": len(x)})
        return self.pipeline(x)

    def close(self) -> None:
        self._hook.remove()


@pytest.fixture
def pass_log(digits):
    log = _PassLog(digits[1])
    yield log
    log.close()


def test_eot_averages_k_gradients_per_step_and_scores_the_last_iterate_by_a_fresh_draw(digits, pass_log):
    _, _, images, labels = digits
    log = pass_log
    k, steps = 4, 3
    x, y = images[:16], labels[:16]
    torch.manual_seed(0)
    reseed_random_modules(log, 0)
    survives = pgd_survives(log, x, y, eps=EPS, steps=steps, step_size=EPS / 3, random_start=True, eot_samples=k)
    kinds = "".join("g" if p["gradient"] else "c" for p in log.passes)
    # every point takes all its steps, each on k gradient passes; then one check pass scores the last iterates
    assert kinds == "g" * (k * steps) + "c", kinds
    assert {p["points"] for p in log.passes} == {len(y)}
    # the check draws its own masks: none is a gradient pass's, and the k gradient draws differ too
    check_rows = log.passes[-1]["noise"]
    gradient_rows = torch.cat([p["noise"] for p in log.passes[:-1]])
    assert not (check_rows[:, None, :] == gradient_rows[None, :, :]).all(dim=2).any()
    assert len(torch.unique(gradient_rows, dim=0)) == len(gradient_rows)
    assert survives.dtype == torch.bool and len(survives) == len(y)


def test_settings_of_several_step_counts_score_each_point_once_at_its_own_last_iterate(digits, pass_log):
    from trainables.survival import survives_settings

    _, _, images, labels = digits
    log = pass_log
    chunks = [(0, torch.arange(8), images[:8], labels[:8])]
    settings = [PGDSetting(EPS, 1, EPS), PGDSetting(EPS, 3, EPS / 3)]
    pieces = survives_settings(
        log, iter(chunks), settings, random_start=True, seed_of=lambda s, n: 0, batch_size=16, eot_samples=2
    )
    kinds = "".join("g" if p["gradient"] else "c" for p in log.passes)
    assert kinds == "gg" + "c" + "gggg" + "c"  # 16 points step once; 8 are scored, 8 step twice more
    assert [p["points"] for p in log.passes] == [16, 16, 8, 8, 8, 8, 8, 8]
    assert [len(parts[0][1]) for parts in pieces] == [8, 8]


def test_the_eot_gradient_is_the_mean_of_k_single_draw_gradients(digits):
    _, random, images, labels = digits
    x, y = images[:8], labels[:8]
    reseed_random_modules(random, 5)
    averaged = eot_gradient(random, x, y, "ce", 3)
    reseed_random_modules(random, 5)
    singles = [eot_gradient(random, x, y, "ce", 1) for _ in range(3)]
    assert torch.equal(averaged, (singles[0] + singles[1] + singles[2]) / 3)
    assert not torch.equal(singles[0], singles[1])  # each pass drew its own masks


def test_a_random_foundation_is_evaluated_reproducibly_and_flagged(digits):
    deterministic, random, images, labels = digits
    config = {"eps": EPS, "attacks": ["pgd10"], "n_examples": 32, "batch_size": 16}
    generator_state = random.foundation.generator.get_state()
    first = evaluate(random, images, labels, config, num_classes=10, default_eps=EPS)
    assert torch.equal(random.foundation.generator.get_state(), generator_state)  # left as it was
    # natural accuracy: one fresh seeded draw per point; logits handed in are not used for a random model
    wrong = torch.zeros(len(images), 10)
    second = evaluate(random, images, labels, config, num_classes=10, default_eps=EPS, natural_logits=wrong)
    untimed = lambda result: {k: v for k, v in result.items() if not k.startswith("time_")}  # noqa: E731
    assert untimed(first) == untimed(second)
    assert {"random_foundation", "nondeterministic_model"} <= set(first["integrity_flags"])
    details = first["integrity_details"]["randomness"]
    assert details == {
        "random_modules": ["FoundationFeatures"],
        "mask_ratios": [0.75],
        "eot_samples": 1,
        "autoattack_eot_iter": None,
        "fresh_check": True,
    }
    with_eot = evaluate(random, images, labels, {**config, "eot_samples": 2}, num_classes=10, default_eps=EPS)
    assert "random_foundation" not in with_eot["integrity_flags"]
    assert "nondeterministic_model" in with_eot["integrity_flags"]
    assert with_eot["integrity_details"]["randomness"]["eot_samples"] == 2
    # the gradient accounting still measures (masked ViT-MAE gradients are not zero)
    assert with_eot["integrity_details"]["input_gradient"]["clean"]["zero_fraction"] == 0.0


def test_validation_attacks_use_eot_and_are_reproducible(digits, pass_log):
    _, random, images, labels = digits
    config = check_evaluation_config({"eps": EPS, "attacks": ["pgd10"], "eot_samples": 2})
    log = pass_log
    first = validation_metrics(log, images[:12], labels[:12], config, num_classes=10, default_eps=EPS)
    gradient_passes = sum(p["gradient"] for p in log.passes)
    assert gradient_passes > 0 and gradient_passes % 2 == 0
    second = validation_metrics(random, images[:12], labels[:12], config, num_classes=10, default_eps=EPS)
    assert {k: v for k, v in first.items() if not k.startswith("time_")} == {
        k: v for k, v in second.items() if not k.startswith("time_")
    }


def test_autoattack_on_a_random_foundation_records_its_randomised_check(digits):
    _, random, images, labels = digits
    result = evaluate(
        random,
        images,
        labels,
        {"eps": 0.3, "attacks": ["autoattack"], "autoattack_examples": 4, "integrity": False, "eot_samples": 2},
        num_classes=10,
        default_eps=EPS,
    )
    assert result["autoattack_version"] == "standard"  # never switched to 'rand'
    assert {"autoattack_warning", "autoattack_randomized_model"} <= set(result["integrity_flags"])
    assert result["integrity_details"]["randomness"]["autoattack_eot_iter"] == 2
    assert "autoattack_eot_iter" not in result  # no row column of its own


def test_a_head_on_a_random_foundation_sees_fresh_masks_each_epoch_reproducibly(
    tmp_path, tiny_foundation_config, cache_root
):
    train = stratified_fraction(load_dataset("digits2", "train"), 0.3, seed=0)
    cfg = resolve_head_config({"epochs": 2, "milestones": []}, foundation_mode="frozen")

    def trained(folder):
        foundation = load_foundation({**tiny_foundation_config, "mask_ratio": 0.5}, cache_root=cache_root)
        torch.manual_seed(0)
        pipeline = Pipeline(IdentityPreprocessor(), foundation, build_linear_head(foundation.feature_dim, 2))
        return train_head(pipeline, train, cfg, folder, "k", eps=8 / 255)

    first, second = trained(tmp_path / "a"), trained(tmp_path / "b")
    assert not first.features_cached  # one draw per image and epoch, not one cached draw per image
    for name, tensor in first.pipeline.head.state_dict().items():
        assert torch.equal(tensor, second.pipeline.head.state_dict()[name])
