"""What `foundation.pretraining` may say: Algorithm 1 step 1 with a robust method (AdvCL or RoCL).

Checked with the rest of the trial config before any work; method `none` (or no section) means the
foundation is used as loaded, and leaves the config (and its hash) exactly as without the section.
Settings of another method are ignored, as a pre-processor kind ignores lambda.
"""
from __future__ import annotations

from .config import Field, integer, number, one_of, optional, resolve
from .contrastive_settings import ADVCL_SETTINGS, advcl_fields, check_radius_fits, parse_clusters, parse_views
from .errors import ConfigError

SECTION = "foundation.pretraining"
METHODS = ("none", "advcl", "rocl")

PRETRAINING_SCHEMA = {
    "method": Field("advcl", f"one of {list(METHODS)}", one_of(*METHODS)),
    "epochs": Field(10, "an integer >= 1", integer(1)),
    "batch_size": Field(64, "an integer >= 2 (negatives come from the batch)", integer(2)),
    "lr": Field(None, "a number > 0, or null (1e-3 for a model built untrained, 1e-4 for a pre-trained one)", optional(number(0, low_open=True))),
    "weight_decay": Field(1e-4, "a number >= 0", number(0)),
    "warmup_epochs": Field(0, "an integer >= 0", integer(0)),
    "seed": Field(0, "an integer", integer()),
    "temperature": Field(0.5, "a number > 0 (AdvCL's and RoCL's 0.5)", number(0, low_open=True)),
    "eps": Field(8 / 255, "a number >= 0 (L-inf budget of the training attack)", number(0)),
    "attack_steps": Field(None, "an integer >= 1, or null (advcl 5, rocl 7)", optional(integer(1))),
    "attack_step_size": Field(None, "a number > 0, or null (advcl eps / 4, rocl 0.007)", optional(number(0, low_open=True))),
    "projector_hidden": Field(512, "an integer >= 1", integer(1)),
    "projector_dim": Field(128, "an integer >= 1", integer(1)),
    **advcl_fields(pseudo_model_default="the foundation before this pre-training", note=" (advcl only)"),
}
# AdvCL: PGD-5, step 2/255 at 8/255. RoCL: PGD-7, step 0.007.
METHOD_DEFAULTS = {"advcl": {"attack_steps": 5}, "rocl": {"attack_steps": 7, "attack_step_size": 0.007}}


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
    method = cfg["method"]
    if method == "none":
        return None
    if method == "advcl":
        cfg["views"] = parse_views(cfg["views"], f"{SECTION}.views")
        cfg["pseudo_clusters"] = parse_clusters(cfg["pseudo_clusters"], f"{SECTION}.pseudo_clusters")
        if image_size is not None:
            check_radius_fits(cfg["fft_radius"], image_size, f"{SECTION}.fft_radius")
    else:
        # rocl's views are fixed (t1, t2, t1 + delta): advcl's settings do not apply and leave its
        # config (and cache key) alone, so one spec can share them across a grid of methods.
        for key in ADVCL_SETTINGS:
            del cfg[key]
    for key, value in METHOD_DEFAULTS.get(method, {}).items():
        if cfg[key] is None:
            cfg[key] = value
    if cfg["lr"] is None:
        cfg["lr"] = 1e-3 if untrained else 1e-4
    return cfg


def uses_pseudo_labels(cfg: dict) -> bool:
    return cfg["method"] == "advcl" and bool(cfg["pseudo_clusters"]) and cfg["pseudo_lambda"] > 0
