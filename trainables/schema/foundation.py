"""What a trial's `foundation:` section may say: which model, how it is used, its embedded,
resnet18 and robust pre-training settings. Free of torch (trainables/foundation.py loads the model).
"""

from __future__ import annotations

from ..errors import ConfigError
from .fields import Field, Resolved, boolean, integer, number, one_of, resolve, text
from .pretraining import resolve_pretraining_config, uses_pseudo_labels

EMBEDDED_NAME = "embedded"
RESNET_NAME = "resnet18"

FOUNDATION_SCHEMA = {
    "name": Field(
        "facebook/vit-mae-large", "a local folder saved with save_pretrained, a hub name, or 'embedded'", text
    ),
    "mode": Field(
        "frozen",
        "'frozen', 'finetune' (clean fine-tuning, paper Table 2) or 'adversarial_finetune' (PGD, Table 1)",
        one_of("frozen", "finetune", "adversarial_finetune"),
    ),
    "pooling": Field("mean", "'mean' (patch tokens) or 'cls'", one_of("mean", "cls")),
    "allow_download": Field(False, "true or false", boolean),
    "embedded": Field(
        None,
        "a mapping of embedded-foundation settings (name: embedded only)",
        lambda v: v is None or isinstance(v, dict),
    ),
    "resnet": Field(
        None, "a mapping of resnet18 settings (name: resnet18 only)", lambda v: v is None or isinstance(v, dict)
    ),
    "pretraining": Field(
        None,
        "a mapping of robust pre-training settings (method advcl or rocl), or null",
        lambda v: v is None or isinstance(v, dict),
    ),
    # The papers' "+ LoRA" rows: fine-tuning trains low-rank adapters only (peft), not the weights.
    "lora": Field(
        None,
        "a mapping of LoRA settings (rank, alpha, dropout, target_modules, seed) for a fine-tuned ViT-MAE, or null",
        lambda v: v is None or isinstance(v, dict),
        omit_when_default=True,
    ),
}
LORA_SCHEMA = {
    "rank": Field(8, "an integer >= 1", integer(1)),
    "alpha": Field(16, "a number > 0 (the adapters' scale is alpha / rank)", number(0, low_open=True)),
    "dropout": Field(0.0, "a number in [0, 1)", number(0, 1, high_open=True)),
    "target_modules": Field(
        None,
        "a list of module names, or null for the attention's query and value projections",
        lambda v: v is None or (isinstance(v, list) and v and all(isinstance(name, str) for name in v)),
    ),
    "seed": Field(0, "an integer (the adapters' initial weights)", integer()),
}
# Added after sweeps existed: left out of a resolved config when null, so older configs keep their
# hashes. Not Field.omit_when_default (as `lora` is): whether they are null is decided by resolving,
# not by the given value (resnet18 fills in `resnet`; `pretraining: {method: none}` resolves to null).
OPTIONAL_SECTIONS = ("resnet", "pretraining")

# name: resnet18 builds a CIFAR-style ResNet-18 with random weights; robust pre-training trains it.
RESNET_SCHEMA = {
    "width": Field(64, "an integer >= 1 (64 is ResNet-18; smaller is a CPU-sized one)", integer(1)),
    "image_size": Field(32, "an integer >= 8 (inputs are resized to it)", integer(8)),
    "seed": Field(0, "an integer (initial weights)", integer()),
}

# The embedded foundation: small enough to pre-train in well under a CPU-minute on the digits.
EMBEDDED_SCHEMA = {
    "image_size": Field(32, "an integer >= 8", integer(8)),
    "patch_size": Field(4, "an integer >= 1 dividing image_size", integer(1)),
    "hidden_size": Field(64, "an integer >= 8", integer(8)),
    "num_hidden_layers": Field(2, "an integer >= 1", integer(1)),
    "num_attention_heads": Field(4, "an integer >= 1 dividing hidden_size", integer(1)),
    "intermediate_size": Field(128, "an integer >= 8", integer(8)),
    "decoder_hidden_size": Field(64, "an integer >= 8", integer(8)),
    "decoder_num_hidden_layers": Field(1, "an integer >= 1", integer(1)),
    "decoder_num_attention_heads": Field(4, "an integer >= 1", integer(1)),
    "decoder_intermediate_size": Field(128, "an integer >= 8", integer(8)),
    "mask_ratio": Field(0.75, "a number in (0, 1)", number(0, 1, low_open=True, high_open=True)),
    "epochs": Field(40, "an integer >= 1", integer(1)),
    "batch_size": Field(64, "an integer >= 2", integer(2)),
    "lr": Field(1.5e-3, "a number > 0", number(0, low_open=True)),
    "weight_decay": Field(0.05, "a number >= 0", number(0)),
    "seed": Field(0, "an integer", integer()),
}


def resolve_foundation_config(given: dict | None, *, image_size: int | None = None) -> dict:
    """The checked section; `image_size` (of the training images, when known) checks what must fit them."""
    if isinstance(given, Resolved):
        return given
    cfg = resolve("foundation", given, FOUNDATION_SCHEMA)
    if cfg["embedded"] is not None and cfg["name"] != EMBEDDED_NAME:
        raise ConfigError(
            "foundation.embedded", "no embedded settings unless foundation.name is 'embedded'", cfg["name"]
        )
    if cfg["name"] == RESNET_NAME:
        cfg["resnet"] = resolve("foundation.resnet", cfg["resnet"], RESNET_SCHEMA)
    elif cfg["resnet"] is not None:
        raise ConfigError(
            "foundation.resnet", f"no resnet settings unless foundation.name is '{RESNET_NAME}'", cfg["name"]
        )
    cfg["pretraining"] = resolve_pretraining_config(
        cfg["pretraining"], untrained=cfg["name"] == RESNET_NAME, image_size=image_size
    )
    if cfg["name"] == RESNET_NAME and cfg["pretraining"] is None:
        raise ConfigError(
            "foundation.pretraining.method",
            f"'advcl' or 'rocl': {RESNET_NAME} is built untrained and needs robust pre-training",
            "none",
        )
    if (
        cfg["name"] == RESNET_NAME
        and uses_pseudo_labels(cfg["pretraining"])
        and cfg["pretraining"]["pseudo_model"] is None
    ):
        raise ConfigError(
            "foundation.pretraining.pseudo_model",
            f"a pre-trained foundation to cluster features of ({RESNET_NAME} starts untrained), or pseudo_clusters: []",
            None,
        )
    if "lora" in cfg:
        if cfg["mode"] == "frozen":
            raise ConfigError(
                "foundation.lora", "no LoRA settings with mode 'frozen' (adapters are trained by fine-tuning)", "frozen"
            )
        if cfg["name"] == RESNET_NAME:
            raise ConfigError("foundation.lora", "a ViT-MAE foundation (LoRA adapts its attention)", RESNET_NAME)
        cfg["lora"] = resolve("foundation.lora", cfg["lora"], LORA_SCHEMA)
    if cfg["embedded"] is not None:  # checked here, before any work; kept as given (the trial hash is of it)
        resolve_embedded_config(cfg["embedded"])
    for key in OPTIONAL_SECTIONS:
        if cfg[key] is None:
            del cfg[key]
    return cfg


def resolve_embedded_config(given: dict | None) -> dict:
    """The embedded foundation's settings with defaults filled: they name its cached pre-training."""
    cfg = resolve("foundation.embedded", given, EMBEDDED_SCHEMA)
    if cfg["image_size"] % cfg["patch_size"]:
        raise ConfigError("foundation.embedded.patch_size", "a divisor of image_size", cfg["patch_size"])
    return cfg


def base_foundation_config(cfg: dict) -> dict:
    """A resolved config without its robust pre-training: the model that pre-training starts from."""
    return {key: value for key, value in cfg.items() if key != "pretraining"}
