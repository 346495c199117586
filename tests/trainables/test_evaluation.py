"""Robustness evaluation on tiny seeded classifiers: PGD strength, bootstrap intervals, integrity flags, AutoAttack."""

from __future__ import annotations

import math
import re
import sys

import pytest
import torch
import torch.nn.functional as F

from trainables.errors import ConfigError
from trainables.evaluation import evaluate
from trainables.schema.evaluation import resolve_evaluation_config

PGD_ONLY = ["pgd10", "pgd20"]


def _blobs(n: int, num_classes: int, *, seed: int = 1, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs around close class prototypes: separable in 192 dimensions, fragile in L-inf."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = 0.5 + 0.03 * torch.randn(num_classes, 3, size, size, generator=generator)
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=generator)]
    images = (prototypes[labels] + 0.05 * torch.randn(n, 3, size, size, generator=generator)).clamp(0, 1)
    return images, labels


def _train(images: torch.Tensor, labels: torch.Tensor, num_classes: int, *, steps: int = 100) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(images[0].numel(), 32), torch.nn.ReLU(), torch.nn.Linear(32, num_classes)
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimiser.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def ten_class():
    images, labels = _blobs(400, 10)
    return _train(images, labels, 10), images[:200], labels[:200]


@pytest.fixture(scope="module")
def binary():
    images, labels = _blobs(200, 2, seed=3)
    model = _train(images, labels, 2)
    assert (model(images).argmax(dim=1) == labels).float().mean() >= 0.9  # training worked
    return model, images[:100], labels[:100]


def _assert_bounds_bracket(result: dict, name: str) -> None:
    assert result[f"acc_{name}_lo"] <= result[f"acc_{name}"] <= result[f"acc_{name}_hi"]


def test_pgd_collapses_an_undefended_model_and_flags_stay_clear(ten_class):
    model, images, labels = ten_class
    result = evaluate(model, images, labels, {"eps": 0.03, "attacks": PGD_ONLY}, num_classes=10, default_eps=8 / 255)
    assert result["acc_natural"] >= 0.85
    assert result["acc_pgd20"] <= result["acc_pgd10"] <= result["acc_natural"]
    assert result["acc_pgd10"] <= result["acc_natural"] - 0.5
    for name in ("natural", "pgd10", "pgd20"):
        _assert_bounds_bracket(result, name)
        assert result[f"n_{name}"] == 200
    # not run: NaN, never a 0 that reads as "no robustness"
    assert math.isnan(result["acc_autoattack"]) and math.isnan(result["acc_autoattack_lo"])
    assert result["n_autoattack"] == 0 and result["autoattack_version"] is None
    assert result["integrity_flags"] == []
    gradients = result["integrity_details"]["input_gradient"]
    assert gradients["clean"]["zero_fraction"] == gradients["random_start"]["zero_fraction"] == 0.0
    # eps x 1/4, 1/2, 1, 2, then the unbounded point, where PGD breaks every point
    assert [eps for eps, _ in result["sweep_eps"]] == pytest.approx([0.0075, 0.015, 0.03, 0.06, 1.0])
    assert result["sweep_eps"][-1][1] == 0.0
    assert [steps for steps, _ in result["sweep_steps"]] == [1, 10, 50]
    assert result["time_evaluation_s"] > 0


def test_sweep_settings_in_shared_batches_give_what_one_run_per_setting_gives(ten_class):
    # Shared batches mix settings of different eps, step sizes and step counts (1 to 20); every
    # point must end exactly as in its own run (same random start, same path), whatever the batch.
    from trainables.evaluation import Batches, robust_correct_settings
    from trainables.seeding import derive_seed
    from trainables.survival import PGDSetting, survives_settings

    model, images, labels = ten_class
    batches = Batches(images, labels, torch.arange(100), 32, "cpu")
    natural = model(images[:100]).argmax(dim=1) == labels[:100]
    settings = [PGDSetting(0.005, 10, 0.00125), PGDSetting(0.02, 10, 0.005), PGDSetting(0.01, 1, 0.025)]
    settings.append(PGDSetting(0.01, 20, 0.00125))
    seed_parts = (3, "sweep")
    separate = robust_correct_settings(
        model, batches, natural, settings, random_start=True, seed_parts=seed_parts, shared_batches=False
    )
    rates = [float(separate[(s.eps, s.steps)].float().mean()) for s in settings]
    assert len(set(rates)) >= 3 and 0 < min(rates) < max(rates) < 1  # settings that differ: not vacuous
    shared = robust_correct_settings(
        model, batches, natural, settings, random_start=True, seed_parts=seed_parts, shared_batches=True
    )
    for batch_size in (48, 400):  # a shared batch size other than the chunks' (seeds follow the chunks)
        chunks = [(n, p, *batches.get(p)) for n, p in batches.chunks(natural.nonzero().flatten())]
        pieces = survives_settings(
            model,
            iter(chunks),
            settings,
            random_start=True,
            seed_of=lambda s, n: derive_seed(*seed_parts, s.eps, s.steps, n),
            batch_size=batch_size,
        )
        for setting, parts in zip(settings, pieces):
            robust = separate[(setting.eps, setting.steps)]
            assert all(torch.equal(robust[positions], survives) for positions, survives in parts)
            assert sum(len(positions) for positions, _ in parts) == int(natural.sum())
    for key, robust in separate.items():
        assert torch.equal(robust, shared[key])
        assert not robust[~natural].any()  # a naturally wrong point is never robust


def test_the_evaluations_sweep_is_the_same_with_and_without_shared_batches(ten_class, monkeypatch):
    import trainables.evaluation as evaluation

    model, images, labels = ten_class
    config = {"eps": 0.03, "attacks": ["pgd10"]}
    results = []
    for shared in (True, False):
        monkeypatch.setitem(evaluation.SWEEP_SHARED_BATCHES, "cpu", shared)
        results.append(evaluate(model, images, labels, config, num_classes=10, default_eps=8 / 255))
    assert results[0]["sweep_eps"] == results[1]["sweep_eps"]
    assert results[0]["sweep_steps"] == results[1]["sweep_steps"]
    assert [acc for _, acc in results[0]["sweep_eps"]] != [results[0]["sweep_eps"][0][1]] * 4


def test_a_configured_pgd_step_is_used_and_recorded(ten_class):
    # AdvCL's tables attack with PGD-20 at a fixed step (2/255); the papers' default is eps/10.
    model, images, labels = ten_class
    base = {"eps": 0.03, "attacks": ["pgd20"], "integrity": False, "random_start": False}
    default = evaluate(model, images, labels, base, num_classes=10, default_eps=8 / 255)
    assert default["pgd20_step_size"] == pytest.approx(0.003) and default["pgd10_step_size"] == pytest.approx(0.006)
    tiny = evaluate(
        model, images, labels, {**base, "pgd_step_size": {"pgd20": 1e-4}}, num_classes=10, default_eps=8 / 255
    )
    assert tiny["pgd20_step_size"] == 1e-4
    assert tiny["acc_pgd20"] > default["acc_pgd20"] + 0.2  # 20 steps of 1e-4 cannot reach what eps/10 steps do


@pytest.mark.parametrize("steps", [{"pgd20": 0}, {"pgd30": 0.01}, {}, [0.01]])
def test_a_bad_pgd_step_is_one_clear_error(steps):
    with pytest.raises(ConfigError) as err:
        resolve_evaluation_config({"pgd_step_size": steps}, num_test=10, default_eps=8 / 255)
    assert err.value.field == "evaluation.pgd_step_size"


def _textbook_pgd_accuracy(model, images, labels, *, eps, steps, step_size, seed):
    """Madry et al.'s PGD written out: uniform start, signed-gradient steps, projection, final iterate."""
    torch.manual_seed(seed)
    x_adv = (images + torch.empty_like(images).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), labels)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + step_size * grad.sign()
        x_adv = torch.min(torch.max(x_adv, images - eps), images + eps).clamp(0, 1)
    with torch.no_grad():
        return (model(x_adv).argmax(dim=1) == labels).float().mean().item()


def test_our_pgd_is_at_least_as_strong_as_a_textbook_pgd(ten_class):
    model, images, labels = ten_class
    eps = 0.01  # robust accuracy in the middle, so the comparison can go either way
    result = evaluate(
        model,
        images,
        labels,
        {"eps": eps, "attacks": PGD_ONLY, "integrity": False},
        num_classes=10,
        default_eps=8 / 255,
    )
    theirs10 = _textbook_pgd_accuracy(model, images, labels, eps=eps, steps=10, step_size=eps / 5, seed=0)
    theirs20 = _textbook_pgd_accuracy(model, images, labels, eps=eps, steps=20, step_size=eps / 10, seed=0)
    assert 0.15 < theirs10 < 0.85, "eps no longer gives a mid-range robust accuracy: the comparison is vacuous"
    # Same 200 points, eps, steps, step size and random start; tolerance: 2 points (1%) of random-start noise.
    tolerance = 2 / len(labels)
    assert result["acc_pgd10"] <= theirs10 + tolerance
    assert result["acc_pgd20"] <= theirs20 + tolerance


def test_dropping_broken_points_from_the_batch_changes_no_outcome(ten_class):
    # The evaluation stops attacking a point once an iterate fools the model; the reference below
    # attacks every point for every step (checking every iterate) and must agree point by point.
    from trainables.attacks import pgd
    from trainables.survival import attack_loss, pgd_survives

    model, images, labels = ten_class
    eps, steps = 0.01, 10
    torch.manual_seed(11)
    shrinking = pgd_survives(model, images, labels, eps=eps, steps=steps, step_size=eps / 5, random_start=True)
    survives = torch.ones(len(labels), dtype=torch.bool)

    def loss_of(x_adv):
        logits = model(x_adv)
        survives.logical_and_(logits.detach().argmax(dim=1) == labels)
        return attack_loss(logits, labels, x_adv)

    torch.manual_seed(11)
    final = pgd(loss_of, images, eps=eps, steps=steps, step_size=eps / 5, random_start=True)
    with torch.no_grad():
        survives &= model(final).argmax(dim=1) == labels
    assert 0.15 < survives.float().mean() < 0.85  # some points break early, some hold: the test is not vacuous
    assert torch.equal(shrinking, survives)


def _seventy_percent_task(n: int):
    """A fixed random linear classifier with labels chosen so exactly 70% of its predictions are right."""
    generator = torch.Generator().manual_seed(5)
    images = torch.rand(n, 3, 8, 8, generator=generator)
    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 4)).eval()
    with torch.no_grad():
        predicted = model(images).argmax(dim=1)
    wrong = torch.randperm(n, generator=generator)[: int(0.3 * n)]
    labels = predicted.clone()
    labels[wrong] = (predicted[wrong] + 1) % 4
    return model, images, labels


def test_bootstrap_bounds_bracket_and_narrow_with_more_points():
    model, images, labels = _seventy_percent_task(800)
    widths = {}
    for n in (50, 800):
        result = evaluate(
            model,
            images,
            labels,
            {"attacks": [], "n_examples": n, "integrity": False},
            num_classes=4,
            default_eps=8 / 255,
        )
        assert result["n_natural"] == n
        _assert_bounds_bracket(result, "natural")
        assert result["acc_natural_lo"] < result["acc_natural_hi"]
        widths[n] = result["acc_natural_hi"] - result["acc_natural_lo"]
    assert result["acc_natural"] == pytest.approx(0.7)
    # 16x the points: about 4x narrower (binomial width ~ 1/sqrt(n)); 2.5x leaves room for resampling noise.
    assert widths[800] * 2.5 < widths[50]
    assert widths[800] == pytest.approx(2 * 1.96 * math.sqrt(0.7 * 0.3 / 800), rel=0.2)


class _Quantise(torch.nn.Module):
    """Rounding to 8-bit levels: invisible to accuracy, zero gradient everywhere (gradient masking)."""

    def forward(self, x):
        return torch.round(x * 255) / 255


class _Detach(torch.nn.Module):
    def forward(self, x):
        return x.detach()


@pytest.mark.parametrize("masking", [_Quantise, _Detach], ids=["round", "detach"])
def test_integrity_flags_fire_on_a_gradient_masking_model(ten_class, masking):
    model, images, labels = ten_class
    masked = torch.nn.Sequential(masking(), model)
    plain = evaluate(model, images, labels, {"eps": 0.03, "attacks": ["pgd10"]}, num_classes=10, default_eps=0.03)
    result = evaluate(masked, images, labels, {"eps": 0.03, "attacks": ["pgd10"]}, num_classes=10, default_eps=0.03)
    assert "zero_input_gradient" in result["integrity_flags"]
    gradients = result["integrity_details"]["input_gradient"]
    assert gradients["clean"]["zero_fraction"] == gradients["random_start"]["zero_fraction"] == 1.0
    assert gradients["clean"]["margin_zero_fraction"] == 1.0  # masked for every loss, not a saturated softmax
    # the false robustness the flag warns about: PGD barely moves the masked model
    assert result["acc_pgd10"] >= plain["acc_pgd10"] + 0.5
    assert plain["integrity_flags"] == []


class _NaNGradient(torch.nn.Module):
    """Adds sqrt(x - x) = 0: values unchanged, but d/dx sqrt at 0 is inf and inf * 0 is NaN."""

    def forward(self, x):
        return x + torch.sqrt(x - x)


class _AlwaysDropout(torch.nn.Module):
    def forward(self, x):
        return F.dropout(x, p=0.5, training=True)  # random at test time, whatever the module mode


def test_nonfinite_gradient_and_randomised_model_are_flagged(ten_class):
    model, images, labels = ten_class
    config = {"eps": 0.03, "attacks": ["pgd10"], "n_examples": 32}
    nan_grad = evaluate(
        torch.nn.Sequential(_NaNGradient(), model), images, labels, config, num_classes=10, default_eps=0.03
    )
    assert "nonfinite_input_gradient" in nan_grad["integrity_flags"]
    random = evaluate(
        torch.nn.Sequential(_AlwaysDropout(), model), images, labels, config, num_classes=10, default_eps=0.03
    )
    assert "nondeterministic_model" in random["integrity_flags"]


def test_evaluation_runs_in_eval_mode_and_restores_each_mode(ten_class):
    model, images, labels = ten_class
    pipeline = torch.nn.Sequential(torch.nn.Dropout(0.5), model)
    pipeline.train()
    model.eval()  # a frozen part inside a training pipeline keeps its own mode
    result = evaluate(
        pipeline,
        images,
        labels,
        {"eps": 0.03, "attacks": ["pgd10"], "n_examples": 32},
        num_classes=10,
        default_eps=0.03,
    )
    assert "nondeterministic_model" not in result["integrity_flags"]  # dropout was off during the evaluation
    assert pipeline.training and pipeline[0].training and not model.training


@pytest.mark.parametrize("eps, expect_survivors", [(0.1, False), (0.002, True)], ids=["fragile", "survivors"])
def test_autoattack_custom_for_a_binary_task(binary, eps, expect_survivors):
    model, images, labels = binary
    result = evaluate(
        model,
        images,
        labels,
        {"eps": eps, "attacks": ["autoattack"], "autoattack_examples": 6, "integrity": False},
        num_classes=2,
        default_eps=8 / 255,
    )
    assert result["autoattack_version"] == "custom"
    assert result["autoattack_list"] == ["apgd-ce", "fab", "square"]
    assert result["n_autoattack"] == 6
    assert result["acc_autoattack"] <= result["autoattack_acc_natural"]
    assert not result["autoattack_outside_budget"]
    _assert_bounds_bracket(result, "autoattack")
    if expect_survivors:  # all three attacks ran on robust points without failing
        assert result["acc_autoattack"] > 0
    else:
        assert result["acc_autoattack"] < result["autoattack_acc_natural"]


@pytest.mark.parametrize("eps, expect_survivors", [(0.1, False), (0.002, True)], ids=["fragile", "survivors"])
def test_autoattack_standard_for_four_classes(eps, expect_survivors):
    images, labels = _blobs(200, 4, seed=3)
    model = _train(images, labels, 4)
    # Survivors reach APGD-T/FAB-T: with pyautoattack's 9 fixed target classes they would crash on 4 classes.
    result = evaluate(
        model,
        images[:100],
        labels[:100],
        {"eps": eps, "attacks": ["pgd10", "autoattack"], "autoattack_examples": 4, "integrity": False},
        num_classes=4,
        default_eps=8 / 255,
    )
    assert result["autoattack_version"] == "standard"
    assert result["autoattack_list"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert result["n_autoattack"] == 4
    assert result["acc_autoattack"] <= result["autoattack_acc_natural"]
    assert "autoattack_above_pgd10" not in result["integrity_flags"]
    if expect_survivors:
        assert result["acc_autoattack"] > 0
    else:
        assert result["acc_autoattack"] < result["autoattack_acc_natural"]


def test_autoattack_warnings_are_recorded_not_printed_and_tracing_survives(ten_class, caplog):
    model, images, labels = ten_class

    def tracer(frame, event, arg):  # stands in for coverage or a debugger
        return None

    sys.settrace(tracer)
    try:
        result = evaluate(
            torch.nn.Sequential(_AlwaysDropout(), model),
            images,
            labels,
            {"eps": 0.1, "attacks": ["autoattack"], "autoattack_examples": 4, "integrity": False},
            num_classes=10,
            default_eps=8 / 255,
        )
        # pyautoattack's dynamic-defence check ends with sys.settrace(None)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)
    assert "autoattack_warning" in result["integrity_flags"]
    assert any("randomized" in message for message in result["integrity_details"]["autoattack_warnings"])
    assert not [record for record in caplog.records if record.name == "auto-attack"]  # quiet by default


class _Tripwire(torch.nn.Module):
    def forward(self, x):
        raise AssertionError("the model ran although the config was bad")


@pytest.mark.parametrize(
    "config, field, message",
    [
        ({"eps": -0.1}, "evaluation.eps", "number >= 0"),
        ({"attacks": ["pgd10", "pgd_20"]}, "evaluation.attacks", "did you mean 'pgd20'"),
        ({"attacks": ["autoatack"]}, "evaluation.attacks", "did you mean 'autoattack'"),
        ({"attacks": ["pgd10", "worst"]}, "evaluation.attacks", "names from"),  # an accuracy, not an attack
        ({"n_examples": 11}, "evaluation.n_examples", "at most the 10 test points"),
        ({"n_examples": 0}, "evaluation.n_examples", "integer >= 1"),
        ({"n_examples": 5, "autoattack_examples": 6}, "evaluation.autoattack_examples", "at most n_examples (5)"),
        ({"bootstrap_resamples": 5}, "evaluation.bootstrap_resamples", ">= 10"),
        ({"random_strat": False}, "evaluation.random_strat", "did you mean 'random_start'"),
    ],
)
def test_bad_config_is_refused_before_any_work(config, field, message):
    images, labels = torch.rand(10, 3, 8, 8), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        evaluate(_Tripwire(), images, labels, config, num_classes=2, default_eps=8 / 255)
    assert caught.value.field == field


def test_config_defaults_resolve():
    config = resolve_evaluation_config(None, num_test=50, default_eps=8 / 255)
    assert config["eps"] == 8 / 255 and config["n_examples"] == 50
    assert config["attacks"] == ["pgd10", "pgd20", "pgd10_margin", "pgd20_margin", "autoattack"]
    assert config["autoattack_examples"] == 50  # the unasked-for default of 400 shrinks to the 50 points
    assert resolve_evaluation_config(None, num_test=1000, default_eps=8 / 255)["autoattack_examples"] == 400
    assert (config["batch_size"], config["bootstrap_resamples"], config["seed"]) == (128, 1000, 0)
    assert config["integrity"] is True and config["random_start"] is True


def test_same_seed_gives_identical_results_and_leaves_global_rng_alone(binary):
    model, images, labels = binary
    config = {"eps": 0.03, "attacks": ["pgd10", "pgd20", "autoattack"], "autoattack_examples": 4, "batch_size": 32}
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = evaluate(model, images, labels, config, num_classes=2, default_eps=0.03)
    assert torch.equal(torch.random.get_rng_state(), before)
    second = evaluate(model, images, labels, config, num_classes=2, default_eps=0.03)
    untimed = lambda result: {k: v for k, v in result.items() if not k.startswith("time_")}  # noqa: E731
    assert untimed(first) == untimed(second)
    assert 0 < first["acc_pgd10"] < first["acc_natural"]  # random starts matter at this eps


class _OneClass(torch.nn.Module):
    """What an auto-encoder stuck at its mean image gives a classifier: one answer for every input."""

    def __init__(self, num_classes: int, answer: int):
        super().__init__()
        self.bias = torch.nn.Parameter(F.one_hot(torch.tensor(answer), num_classes).float())
        self.scale = torch.nn.Parameter(torch.tensor(1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias + self.scale * x.flatten(1)[:, : self.bias.numel()]


def test_a_pipeline_that_answers_one_class_is_flagged_though_its_robust_accuracy_equals_its_natural(ten_class):
    model, images, labels = ten_class
    degenerate = _OneClass(10, answer=3)
    result = evaluate(
        degenerate, images, labels, {"eps": 0.03, "attacks": PGD_ONLY}, num_classes=10, default_eps=8 / 255
    )
    share = float((labels == 3).float().mean())
    assert result["acc_natural"] == pytest.approx(share) and result["acc_pgd20"] == pytest.approx(share)  # "robust"
    assert "constant_predictions" in result["integrity_flags"]
    assert result["integrity_details"]["majority_prediction_share"] == 1.0
    honest = evaluate(model, images, labels, {"eps": 0.03, "attacks": PGD_ONLY}, num_classes=10, default_eps=8 / 255)
    assert "constant_predictions" not in honest["integrity_flags"]
    assert honest["integrity_details"]["majority_prediction_share"] < 0.3
