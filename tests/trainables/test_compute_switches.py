"""The `compute:` switches on the CPU: bf16 autocast in training (and, when asked, in evaluation),
TF32 for the trial's span, torch.compile of the attacked pipeline; each recorded in the result.

CPU autocast runs bf16 the way a GPU does, so the code a GPU runs is the code tested here.
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from trainables.errors import ConfigError
from trainables.schema import validate_trial_config
from trainables.trial import run_trial


def _config(foundation, arch, **compute):
    config = {
        "data": {"dataset": "digits2", "data_fraction": 0.5},
        "foundation": foundation,
        "preprocessor": {"kind": "cropd", "arch": arch, "epochs": 2, "batch_size": 32, "lr": 2e-3},
        "head": {"epochs": 2},
        "evaluation": {"n_examples": 24, "attacks": ["pgd10"]},
    }
    return {**config, "compute": compute} if compute else config


def _weights(folder):
    return load_file(str(next(folder.glob("preprocessors/cropd-*/model.safetensors"))))


def test_the_defaults_leave_a_trials_config_and_hash_as_they_were(tiny_foundation_config, tiny_arch):
    plain = validate_trial_config(_config(tiny_foundation_config, tiny_arch))
    spelled_out = validate_trial_config(
        _config(
            tiny_foundation_config, tiny_arch, autocast="none", evaluation_autocast=False, tf32=False, compile=False
        )
    )
    assert "compute" not in plain and spelled_out == plain
    switched = validate_trial_config(_config(tiny_foundation_config, tiny_arch, autocast="bf16"))
    assert switched["compute"]["autocast"] == "bf16" and switched != plain


@pytest.mark.parametrize(
    ("compute", "field"),
    [
        ({"autocast": "fp16"}, "compute.autocast"),
        ({"tf32": "yes"}, "compute.tf32"),
        ({"compil": True}, "compute.compil"),
    ],
)
def test_a_bad_switch_is_one_line_naming_it(tiny_foundation_config, tiny_arch, compute, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate_trial_config({**_config(tiny_foundation_config, tiny_arch), "compute": compute})


def test_bf16_training_is_its_own_artifact_trained_under_autocast(
    tmp_path, tiny_foundation_config, tiny_arch, cache_root
):
    fp32 = run_trial(_config(tiny_foundation_config, tiny_arch), tmp_path / "fp32")
    seen = []

    def watch(record):  # called from inside the stages: what autocast says while they run
        seen.append((record["stage"], torch.is_autocast_enabled("cpu")))

    bf16 = run_trial(_config(tiny_foundation_config, tiny_arch, autocast="bf16"), tmp_path / "bf16", on_epoch=watch)
    assert (fp32["compute_autocast"], bf16["compute_autocast"]) == ("none", "bf16")
    assert not bf16["compute_evaluation_autocast"] and not bf16["compute_compile"]
    # Its own artifact (other key) with other weights: bf16 matmuls trained it.
    fp32_weights, bf16_weights = _weights(tmp_path / "fp32"), _weights(tmp_path / "bf16")
    assert fp32_weights.keys() == bf16_weights.keys()
    assert any(not torch.equal(fp32_weights[k], bf16_weights[k]) for k in fp32_weights)
    # The epoch reports come after each epoch's steps, outside autocast; the evaluation is fp32.
    assert {stage for stage, _ in seen} == {"preprocessor", "head"} and not any(on for _, on in seen)
    assert not torch.is_autocast_enabled("cpu")
    for metric in ("acc_natural", "acc_pgd10"):
        assert 0 <= bf16[metric] <= 1


def test_tf32_evaluation_autocast_and_compile_run_and_are_recorded(
    tmp_path, tiny_foundation_config, tiny_arch, cache_root
):
    flags = []
    torch._dynamo.utils.counters.clear()  # graphs compiled by this test only

    def watch(record):
        flags.append(torch.backends.cuda.matmul.allow_tf32)

    plain = run_trial(_config(tiny_foundation_config, tiny_arch), tmp_path / "plain")
    switched = run_trial(
        _config(tiny_foundation_config, tiny_arch, tf32=True, evaluation_autocast=True, compile=True),
        tmp_path / "switched",
        on_epoch=watch,
    )
    assert flags and all(flags)  # TF32 on while the trial's stages ran ...
    assert not torch.backends.cuda.matmul.allow_tf32  # ... and off again after it (a worker runs many)
    assert switched["compute_tf32"] and switched["compute_evaluation_autocast"] and switched["compute_compile"]
    # Training is fp32 in both: the same pre-processor weights; the evaluation ran compiled, in bf16.
    assert all(
        torch.equal(a, b)
        for a, b in zip(_weights(tmp_path / "plain").values(), _weights(tmp_path / "switched").values())
    )
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    assert 0 <= switched["acc_pgd10"] <= switched["acc_natural"] <= 1
    assert not math.isnan(plain["acc_natural"])
    # bf16 rounds the logits and input gradients: its attacks are weaker, and the row says so.
    assert "attacked_in_bf16" in switched["integrity_flags"] and "attacked_in_bf16" not in plain["integrity_flags"]
