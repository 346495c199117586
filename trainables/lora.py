"""LoRA adapters on a ViT-MAE foundation (the papers' "+ LoRA" rows), with the peft library.

The adapters go on the attention's query and value projections unless the config names other
modules (transformers 5 calls them q_proj / v_proj, older releases query / value). Only the
adapters train: peft freezes every base weight, so fine-tuning changes the foundation by the
low-rank updates alone, and `count_parameters(..., trainable_only=True)` reports their size.
"""

from __future__ import annotations

from .encoders import FoundationFeatures
from .errors import ConfigError
from .seeding import seed_everything

# Query and value projections, by transformers release (Hu et al.'s choice for attention).
QUERY_VALUE = (("q_proj", "v_proj"), ("query", "value"))


def apply_lora(foundation, cfg: dict) -> None:
    """Wrap `foundation`'s ViT-MAE in peft LoRA adapters, in place; seeded by cfg['seed']."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ConfigError(
            "foundation.lora", "the peft library (pip install 'cropd-orchestrator[lora]')", "not installed"
        ) from exc
    if not isinstance(foundation, FoundationFeatures):
        raise ConfigError("foundation.lora", "a ViT-MAE foundation", type(foundation).__name__)
    names = {name.rsplit(".", 1)[-1] for name, _ in foundation.model.named_modules()}
    targets = cfg["target_modules"] or next((list(pair) for pair in QUERY_VALUE if set(pair) <= names), None)
    missing = sorted(set(targets or []) - names)
    if targets is None or missing:
        raise ConfigError(
            "foundation.lora.target_modules", f"module names of this ViT-MAE (it has {sorted(names)[:12]} ...)", missing
        )
    seed_everything(cfg["seed"], "lora-init")
    config = LoraConfig(r=cfg["rank"], lora_alpha=cfg["alpha"], lora_dropout=cfg["dropout"], target_modules=targets)
    foundation.model = get_peft_model(foundation.model, config)
