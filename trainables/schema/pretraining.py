"""What `foundation.pretraining` may say: Algorithm 1 step 1 with a robust method (AdvCL or RoCL).

Checked with the rest of the trial config before any work; method `none` (or no section) means the
foundation is used as loaded, and leaves the config (and its hash) exactly as without the section.
Settings of another method are ignored, as a pre-processor kind ignores lambda.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ConfigError
from .contrastive import ADVCL_SETTINGS, advcl_fields, check_radius_fits, parse_clusters, parse_views
from .data import DATASET_NAMES, DATASETS, is_dataset_name
from .fields import Field, integer, number, one_of, optional, resolve, text
from .references import imported

SECTION = "foundation.pretraining"


@dataclass(frozen=True)
class PretrainingMethod:
    """A robust pre-training method in one entry: its training step ("module:function", imported
    when used), its defaults, whether AdvCL's view and cluster settings apply to it, and how many
    views its contrastive loss compares (None: as many as `views` names)."""

    name: str
    step: str | None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    advcl_settings: bool = False
    views: int | None = None

    def training_step(self):
        return imported(self.step)


_STEPS = "trainables.robust_pretraining"
PRETRAINING_METHODS: dict[str, PretrainingMethod] = {
    "none": PretrainingMethod("none", None),  # the foundation as loaded: no section at all
    # AdvCL: PGD-5, step 2/255 (eps / 4) at 8/255.
    "advcl": PretrainingMethod("advcl", f"{_STEPS}:advcl_step", {"attack_steps": 5}, advcl_settings=True),
    # RoCL: PGD-7, step 0.007; its views are fixed (t1, t2, t1 + delta).
    "rocl": PretrainingMethod("rocl", f"{_STEPS}:rocl_step", {"attack_steps": 7, "attack_step_size": 0.007}, views=3),
}
METHODS = tuple(PRETRAINING_METHODS)

PRETRAINING_SCHEMA = {
    "method": Field("advcl", f"one of {list(METHODS)}", one_of(*METHODS)),
    "epochs": Field(10, "an integer >= 1", integer(1)),
    "batch_size": Field(64, "an integer >= 2 (negatives come from the batch)", integer(2)),
    "lr": Field(
        None,
        "a number > 0, or null (1e-3 for a model built untrained, 1e-4 for a pre-trained one)",
        optional(number(0, low_open=True)),
    ),
    "weight_decay": Field(1e-4, "a number >= 0", number(0)),
    "warmup_epochs": Field(0, "an integer >= 0", integer(0)),
    # AdvCL's and RoCL's code train with SGD (momentum 0.9); AdamW stays the default.
    "optimizer": Field(
        None,
        "'adamw', 'sgd' (momentum 0.9, nesterov off), or null for adamw",
        optional(one_of("adamw", "sgd")),
        omit_when_default=True,
        same_as_default=("adamw",),
    ),
    "seed": Field(0, "an integer", integer()),
    # Whose images pre-train the foundation: the trial's own training images (null), or another
    # dataset's whole training split (CRoPD Table 10's RoCL foundation for CIFAR-2, trained on
    # CIFAR-10). Labels are never read.
    "dataset": Field(
        None,
        "a dataset name whose training images (same size as the trial's) pre-train the foundation, or null",
        optional(text),
        omit_when_default=True,
    ),
    "temperature": Field(0.5, "a number > 0 (AdvCL's and RoCL's 0.5)", number(0, low_open=True)),
    "eps": Field(8 / 255, "a number >= 0 (L-inf budget of the training attack)", number(0)),
    "attack_steps": Field(None, "an integer >= 1, or null (advcl 5, rocl 7)", optional(integer(1))),
    "attack_step_size": Field(
        None, "a number > 0, or null (advcl eps / 4, rocl 0.007)", optional(number(0, low_open=True))
    ),
    "projector_hidden": Field(512, "an integer >= 1", integer(1)),
    "projector_dim": Field(128, "an integer >= 1", integer(1)),
    **advcl_fields(pseudo_model_default="the foundation before this pre-training", note=" (advcl only)"),
}


def resolve_pretraining_config(given: dict | None, *, untrained: bool, image_size: int | None = None) -> dict | None:
    """The checked section with every default filled, or None for no robust pre-training.

    `untrained`: the foundation is built with random weights (resnet18), which sets the default lr.
    `image_size`: the training images' size, when known, that advcl's fft_radius must fit.
    """
    if given is None:
        return None
    if not isinstance(given, dict):
        raise ConfigError(SECTION, "a mapping of pre-training settings, or null", given)
    cfg = resolve(SECTION, given, PRETRAINING_SCHEMA)
    dataset = cfg.get("dataset")
    if dataset is not None and not is_dataset_name(dataset):
        raise ConfigError(f"{SECTION}.dataset", f"{DATASET_NAMES}, or null", dataset)
    if dataset is not None and image_size is not None and DATASETS[dataset].image_size not in (None, image_size):
        raise ConfigError(f"{SECTION}.dataset", f"a dataset of {image_size}px images like the trial's", dataset)
    method = PRETRAINING_METHODS[cfg["method"]]
    if method.step is None:
        return None
    if method.advcl_settings:
        cfg["views"] = parse_views(cfg["views"], f"{SECTION}.views")
        cfg["pseudo_clusters"] = parse_clusters(cfg["pseudo_clusters"], f"{SECTION}.pseudo_clusters")
        if image_size is not None:
            check_radius_fits(cfg["fft_radius"], image_size, f"{SECTION}.fft_radius")
    else:
        # Settings that do not apply leave its config (and cache key) alone, so one spec can share
        # them across a grid of methods.
        for key in ADVCL_SETTINGS:
            del cfg[key]
    for key, value in method.defaults.items():
        if cfg[key] is None:
            cfg[key] = value
    if cfg["lr"] is None:
        cfg["lr"] = 1e-3 if untrained else 1e-4
    return cfg


def uses_pseudo_labels(cfg: dict) -> bool:
    return (
        PRETRAINING_METHODS[cfg["method"]].advcl_settings and bool(cfg["pseudo_clusters"]) and cfg["pseudo_lambda"] > 0
    )
