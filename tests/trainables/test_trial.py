"""A whole trial from one nested config: every stage, the result schema, resume, bad input."""

from __future__ import annotations

import math

import pytest

from trainables.errors import ConfigError
from trainables.schema import validate_trial_config
from trainables.trial import RESULT_FILE, run_trial


def _config(tiny_foundation_config, tiny_arch, **head):
    return {
        "data": {"dataset": "digits2", "data_fraction": 0.5},
        "foundation": tiny_foundation_config,
        "preprocessor": {"kind": "cropd", "arch": tiny_arch, "epochs": 2, "batch_size": 32, "lr": 2e-3},
        "head": {"epochs": 5, **head},
        # AutoAttack through a whole pipeline is minutes on CPU; test_evaluation covers it on small models
        "evaluation": {"n_examples": 40, "attacks": ["pgd10", "pgd20"]},
    }


def test_trial_runs_every_stage_and_returns_the_schema(tmp_path, tiny_foundation_config, tiny_arch, cache_root):
    records = []
    result = run_trial(_config(tiny_foundation_config, tiny_arch), tmp_path / "trial", on_epoch=records.append)
    assert math.isnan(result["acc_autoattack"])  # not run: NaN, never 0
    for metric in ("acc_natural", "acc_pgd10", "acc_pgd20"):
        assert 0 <= result[metric] <= 1
        assert result[f"{metric}_lo"] <= result[metric] <= result[f"{metric}_hi"]
    assert result["acc_pgd20"] <= result["acc_natural"]
    for stage in ("data", "foundation", "preprocessor", "head", "evaluation"):
        assert result[f"time_{stage}_s"] >= 0
    assert result["params_preprocessor"] > 0 and result["params_head"] > 0 and result["params_foundation"] > 0
    assert isinstance(result["integrity_flags"], list)
    assert {r["stage"] for r in records} == {"preprocessor", "head"}  # per-epoch metrics were streamed
    assert (tmp_path / "trial" / RESULT_FILE).is_file()

    again = run_trial(_config(tiny_foundation_config, tiny_arch), tmp_path / "trial", on_epoch=records.append)
    assert again == result and len(records) == 7  # a finished trial is not rerun


def test_trial_resumes_the_interrupted_stage(tmp_path, tiny_foundation_config, tiny_arch, cache_root):
    class Stop(Exception):
        pass

    def stop_in_head(record):
        if record["stage"] == "head" and record["epoch"] == 3:
            raise Stop

    config = _config(tiny_foundation_config, tiny_arch)
    with pytest.raises(Stop):
        run_trial(config, tmp_path / "t", on_epoch=stop_in_head)
    seen = []
    result = run_trial(config, tmp_path / "t", on_epoch=seen.append)
    # Pre-processor reused, head resumed: its checkpointed epoch 3 said again, then 4 and 5.
    assert [(r["stage"], r["epoch"]) for r in seen] == [("head", 3), ("head", 4), ("head", 5)]
    assert result["preprocessor_reused"] and not math.isnan(result["acc_natural"])


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"dataa": {}}, "dataa"),
        ({"data": {"dataset": "cifar11"}}, "data.dataset"),
        ({"data": {"data_fraction": 0}}, "data.data_fraction"),
        ({"preprocessor": {"lambda": -1}}, "preprocessor.lambda"),
        ({"foundation": {"name": "embedded", "mode": "adversarial_finetune"}, "head": {"mode": "clean"}}, "head.mode"),
    ],
)
def test_bad_trial_config_is_refused_before_work(config, field):
    with pytest.raises(ConfigError) as caught:
        validate_trial_config(config)
    assert str(caught.value).startswith(field)


def test_evaluation_refuses_more_examples_than_test_points(tmp_path, tiny_foundation_config, tiny_arch, cache_root):
    config = _config(tiny_foundation_config, tiny_arch)
    config["evaluation"] = {"n_examples": 10_000}
    with pytest.raises(ConfigError, match="evaluation.n_examples"):
        run_trial(config, tmp_path / "t")
    assert not (tmp_path / "t").exists()  # refused before anything was written


def test_trial_does_not_depend_on_what_ran_before_in_the_process(
    tmp_path, tiny_foundation_config, tiny_arch, cache_root
):
    # A Ray worker runs trial after trial: the head's initial weights must come from the trial's
    # own seed, not from the global random state the previous trial left behind.
    import torch

    config = _config(tiny_foundation_config, tiny_arch)
    config["preprocessor"] = {"kind": "identity"}
    results = []
    for index, earlier_seed in enumerate((1, 2)):
        torch.manual_seed(earlier_seed)
        torch.rand(1000)
        results.append(run_trial(config, tmp_path / f"run{index}"))
    for metric in ("acc_natural", "acc_pgd10", "acc_pgd20"):
        assert results[0][metric] == results[1][metric]


def _head_weights(workdir):
    import torch

    newest = sorted((workdir / "head.checkpoints").glob("epoch-*.pt"))[-1]
    return torch.load(newest, map_location="cpu", weights_only=True)["head"]


def test_two_trials_in_one_process_give_bit_identical_results_in_either_order_and_any_folder(
    tmp_path, tiny_foundation_config, tiny_arch, cache_root
):
    # A Ray worker runs trial after trial, in whatever order the scheduler hands them out, in a
    # sweep folder anywhere on disk: a trial's result must depend on its config (and the thread
    # count) alone. The head's seeds once derived from the pre-processor's absolute path.
    import torch

    configs = {}
    for name, preprocessor in (("vanilla", {"kind": "vanilla"}), ("cropd", {"kind": "cropd", "lambda": 10.0})):
        config = _config(tiny_foundation_config, tiny_arch)
        config["preprocessor"].update(preprocessor)
        config["evaluation"] = {"n_examples": 40, "attacks": ["pgd10"], "integrity": False}
        configs[name] = config
    runs = {}
    for order, folder in ((("vanilla", "cropd"), "first"), (("cropd", "vanilla"), "second")):
        for name in order:
            workdir = tmp_path / folder / name
            result = run_trial(configs[name], workdir, artifacts=tmp_path / folder / "artifacts")
            runs[(folder, name)] = (result, _head_weights(workdir))
    for name in configs:
        (first, first_head), (second, second_head) = runs[("first", name)], runs[("second", name)]
        assert {k: v for k, v in first.items() if not k.startswith("time_")} == {
            k: v for k, v in second.items() if not k.startswith("time_")
        }
        assert first["examples"]["correct"]["pgd10"] == second["examples"]["correct"]["pgd10"]
        assert first_head.keys() == second_head.keys()
        assert all(torch.equal(first_head[key], second_head[key]) for key in first_head)


def test_the_vae_row_runs_end_to_end_from_a_local_autoencoderkl(tmp_path, tiny_foundation_config, cache_root):
    # Table 1's VAE row: a diffusers AutoencoderKL saved with save_pretrained, loaded by the trial's
    # own code, attacked through the whole pipeline like any pre-processor.
    diffusers = pytest.importorskip("diffusers")
    import torch

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=2, sample_size=32)
    vae.save_pretrained(tmp_path / "vae")
    config = {
        "data": {"dataset": "digits2", "data_fraction": 0.5},
        "foundation": tiny_foundation_config,
        "preprocessor": {"kind": "vae", "path": str(tmp_path / "vae")},
        "head": {"epochs": 2},
        "evaluation": {"n_examples": 20, "attacks": ["pgd10"]},
    }
    result = run_trial(config, tmp_path / "trial")
    assert result["params_preprocessor"] == sum(p.numel() for p in vae.parameters())
    # A random tiny VAE may or may not keep digits 0 and 1 apart (CI once saw chance, 0.50, where a
    # local run saw more), so no accuracy level is asserted: the row is whole and consistent.
    assert 0 <= result["acc_pgd10"] <= result["acc_natural"] <= 1
    assert result["n_pgd10"] == 20
    # differentiable and deterministic end to end (the posterior's mode, not a sample)
    assert not {"zero_input_gradient", "nonfinite_input_gradient", "nondeterministic_model"} & set(
        result["integrity_flags"]
    )
