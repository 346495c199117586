"""LoRA fine-tuning of the foundation (the papers' "+ LoRA" rows) through peft and the real trial code."""

from __future__ import annotations

import pytest
import torch

from trainables.errors import ConfigError
from trainables.schema import validate_trial_config
from trainables.trial import run_trial

pytest.importorskip("peft")


def _config(tiny_foundation_config, tiny_arch, **lora):
    return {
        "data": {"dataset": "digits2", "data_fraction": 0.5},
        "foundation": {**tiny_foundation_config, "mode": "finetune", "lora": {"rank": 2, **lora}},
        "preprocessor": {"kind": "identity"},
        "head": {"epochs": 2},
        "evaluation": {"n_examples": 20, "attacks": ["pgd10"], "integrity": False},
    }


def _head_checkpoint(workdir):
    newest = sorted((workdir / "head.checkpoints").glob("epoch-*.pt"))[-1]
    return torch.load(newest, map_location="cpu", weights_only=True)


def test_lora_trains_the_adapters_only_and_reports_their_size(tmp_path, tiny_foundation_config, tiny_arch, cache_root):
    from trainables.foundation import load_foundation

    config = _config(tiny_foundation_config, tiny_arch)
    result = run_trial(config, tmp_path / "trial")
    base = load_foundation({**tiny_foundation_config, "mode": "finetune"})
    base_params = sum(p.numel() for p in base.parameters())
    hidden, layers = 32, 2  # tests/helpers/tiny_settings.py TINY_EMBEDDED
    adapters = layers * 2 * (2 * hidden * 2)  # per layer: query and value, A (r x d) and B (d x r), r = 2
    assert result["params_foundation_trained"] == adapters
    assert result["params_foundation"] == base_params + adapters

    state = _head_checkpoint(tmp_path / "trial")
    weights = state["foundation"]
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())  # B starts at 0: trained
    # Every base weight is the loaded one, bit for bit.
    loaded = dict(base.named_parameters())
    compared = 0
    for key, value in weights.items():
        if "lora_" in key:
            continue
        name = key.replace("base_model.model.", "").replace(".base_layer", "")
        if name in loaded:
            assert torch.equal(value, loaded[name].detach()), name
            compared += 1
    assert compared >= len(loaded) - 1  # all but (at most) a buffer-like parameter


def test_lora_with_a_frozen_foundation_is_one_clear_error(tiny_foundation_config):
    config = {"foundation": {**tiny_foundation_config, "mode": "frozen", "lora": {"rank": 4}}}
    with pytest.raises(ConfigError) as err:
        validate_trial_config(config)
    assert err.value.field == "foundation.lora"


def test_lora_on_modules_the_model_lacks_is_one_clear_error(tmp_path, tiny_foundation_config, tiny_arch, cache_root):
    config = _config(tiny_foundation_config, tiny_arch, target_modules=["no_such_projection"])
    with pytest.raises(ConfigError) as err:
        run_trial(config, tmp_path / "trial")
    assert err.value.field == "foundation.lora.target_modules"
