"""The ViT-MAE auto-encoder's architecture: presets, its settings, and what must fit the image size.

`preprocessor.arch` is a preset name or a mapping of these settings (with `preset:` to start
from one); resolve_arch expands either to a complete, checked mapping.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .fields import Field, integer, one_of, resolve

# Architectures of the ViT-MAE auto-encoder. paper32 / paper224 are the paper's (App. A);
# the decoder width is not given there, so it equals the encoder's. tiny is the embedded default.
# Parameter counts against Table 12: paper32 has 1.74e7 (Table 12: 1.8e7; 1.28e7 of it the
# projector on 256 / 8 = 32 pooled tokens x 192). paper224 read the same way (256 patches of 14 px,
# pooled by 8: 32 x 768 = 24,576 projector inputs) has 1.23e8 against Table 12's 8.3e7. No reading of
# App. A's encoder and decoder closes that gap (the auto-encoder without projector is 7.28e7); the one
# that comes near is a projector on 6,144 inputs, as at 32 px: pool_factor 32, 8.56e7 in all.
ARCH_PRESETS = {
    "paper32": dict(
        patch_size=2,
        hidden_size=192,
        encoder_layers=8,
        decoder_layers=2,
        num_heads=3,
        decoder_hidden_size=192,
        mlp_ratio=4,
        pool_factor=8,
        projector_hidden=2048,
        projector_dim=128,
    ),
    "paper224": dict(
        patch_size=14,
        hidden_size=768,
        encoder_layers=8,
        decoder_layers=2,
        num_heads=3,
        decoder_hidden_size=768,
        mlp_ratio=4,
        pool_factor=8,
        projector_hidden=2048,
        projector_dim=128,
    ),
    "tiny": dict(
        patch_size=4,
        hidden_size=96,
        encoder_layers=4,
        decoder_layers=2,
        num_heads=3,
        decoder_hidden_size=96,
        mlp_ratio=2,
        pool_factor=8,
        projector_hidden=512,
        projector_dim=128,
    ),
}

ARCH_SCHEMA = {
    "patch_size": Field(4, "an integer >= 1 dividing the image size", integer(1)),
    "hidden_size": Field(96, "an integer >= 4", integer(4)),
    "encoder_layers": Field(4, "an integer >= 1", integer(1)),
    "decoder_layers": Field(2, "an integer >= 1", integer(1)),
    "num_heads": Field(3, "an integer >= 1 dividing hidden_size", integer(1)),
    "decoder_hidden_size": Field(96, "an integer >= 4", integer(4)),
    "mlp_ratio": Field(2, "an integer >= 1", integer(1)),
    "pool_factor": Field(8, "an integer >= 1 dividing the number of patches", integer(1)),
    "projector_hidden": Field(512, "an integer >= 1", integer(1)),
    "projector_dim": Field(128, "an integer >= 1", integer(1)),
    # 'average' is DIR's (Zhou et al. 2023), which CRoPD builds on: each output patch is the mean of
    # the pass that saw it and the pass that inpainted it. 'masked' is our variant: each output
    # patch comes only from the pass that did not see it, so every auto-encoder inpaints.
    "combine": Field(
        "average",
        "'average' (DIR: mean of the two complementary passes) or 'masked' (our variant: each patch from the "
        "pass that did not see it)",
        one_of("average", "masked"),
    ),
}


def resolve_arch(given: Any, image_size: int | None = None) -> dict:
    """`preprocessor.arch` (a preset name, or a mapping with an optional `preset`) as a complete mapping."""
    base = dict(ARCH_PRESETS[given]) if isinstance(given, str) else {}
    overrides = {} if isinstance(given, str) else dict(given)
    preset = overrides.pop("preset", None)
    if preset is not None:
        if preset not in ARCH_PRESETS:
            raise ConfigError("preprocessor.arch.preset", f"one of {sorted(ARCH_PRESETS)}", preset)
        base = dict(ARCH_PRESETS[preset])
    arch = resolve("preprocessor.arch", {**base, **overrides}, ARCH_SCHEMA)
    if arch["hidden_size"] % arch["num_heads"] or arch["decoder_hidden_size"] % arch["num_heads"]:
        raise ConfigError(
            "preprocessor.arch.num_heads", "a divisor of hidden_size and decoder_hidden_size", arch["num_heads"]
        )
    if image_size is not None:
        check_arch_fits(arch, image_size)
    return arch


def check_arch_fits(arch: dict, image_size: int) -> None:
    if image_size % arch["patch_size"]:
        raise ConfigError(
            "preprocessor.arch.patch_size", f"a divisor of the image size {image_size}", arch["patch_size"]
        )
    patches = (image_size // arch["patch_size"]) ** 2
    if patches % 2:
        raise ConfigError(
            "preprocessor.arch.patch_size",
            f"a patch size giving an even number of patches (50% masking); {image_size}px gives {patches}",
            arch["patch_size"],
        )
    if patches % arch["pool_factor"]:
        raise ConfigError(
            "preprocessor.arch.pool_factor", f"a divisor of the number of patches ({patches})", arch["pool_factor"]
        )
