"""What a trial's `head:` section may say: the linear head's training, clean or robust (PGD-10)."""

from __future__ import annotations

from ..errors import ConfigError
from .fields import Field, Resolved, integer, number, one_of, optional, resolve

HEAD_SCHEMA = {
    "mode": Field(
        "clean",
        "'clean' (standard linear fine-tuning) or 'robust' (PGD-10, mixed with clean)",
        one_of("clean", "robust"),
    ),
    "epochs": Field(150, "an integer >= 1", integer(1)),
    "batch_size": Field(64, "an integer >= 1", integer(1)),
    "lr": Field(
        None,
        "a number > 0, or null for the paper's (1e-2; 1e-4 when the foundation trains)",
        optional(number(0, low_open=True)),
    ),
    "weight_decay": Field(0.01, "a number >= 0", number(0)),
    # AdvCL's SLF / ALF code trains its head with SGD (momentum 0.9); AdamW (Table 7) stays the default.
    "optimizer": Field(
        None,
        "'adamw', 'sgd' (momentum 0.9), or null for adamw",
        optional(one_of("adamw", "sgd")),
        omit_when_default=True,
        same_as_default=("adamw",),
    ),
    "milestones": Field(
        [30, 70, 100],
        "a list of increasing epoch numbers",
        lambda v: isinstance(v, list) and all(isinstance(m, int) and m >= 1 for m in v) and v == sorted(v),
    ),
    "lr_decay": Field(0.1, "a number in (0, 1]", number(0, 1, low_open=True)),
    "attack_eps": Field(None, "a number >= 0, or null for the dataset's eps", optional(number(0))),
    "attack_steps": Field(10, "an integer >= 1", integer(1)),
    "attack_step_size": Field(0.007, "a number > 0", number(0, low_open=True)),
    "seed": Field(0, "an integer", integer()),
}


def resolve_head_config(given: dict | None, *, foundation_mode: str) -> dict:
    """The checked section; the default lr depends on whether the foundation trains."""
    if isinstance(given, Resolved):
        return given
    cfg = resolve("head", given, HEAD_SCHEMA)
    if foundation_mode == "adversarial_finetune" and cfg["mode"] != "robust":
        raise ConfigError(
            "head.mode", "'robust' when foundation.mode is adversarial_finetune (PGD fine-tuning)", cfg["mode"]
        )
    if cfg["lr"] is None:
        cfg["lr"] = 1e-2 if foundation_mode == "frozen" else 1e-4
    return cfg
