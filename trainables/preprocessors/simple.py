"""The untrained pre-processors: identity (no defence) and a pre-trained diffusers VAE.

The VAE decodes the mode of its posterior, never a sample, so the pipeline stays deterministic.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, UserError
from ..model_folders import VAE_FOLDER, holds_model, hub_download_command, is_hub_name, locate_model


class IdentityPreprocessor(nn.Module):
    """x -> x: the undefended baseline (paper's Identity)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class VAEPreprocessor(nn.Module):
    """diffusers AutoencoderKL round trip: [0,1] -> [-1,1] -> latent mode -> decode -> [0,1]."""

    def __init__(self, path: str):
        super().__init__()
        try:
            from diffusers import AutoencoderKL
        except ImportError as exc:
            raise UserError("preprocessor.kind vae needs diffusers: pip install 'cropd-orchestrator[vae]'") from exc
        # A local folder, or a hub name (stabilityai/sd-vae-ft-mse) already in the local HF cache:
        # never downloaded while a trial runs.
        hint = f"; fill it with `{hub_download_command(path)}`" if is_hub_name(path) else ""
        folder = locate_model(path, VAE_FOLDER, field="preprocessor.path", hint=hint)
        if not holds_model(folder, VAE_FOLDER):  # a cached snapshot without its config
            raise ConfigError("preprocessor.path", VAE_FOLDER.expected, str(folder))
        try:
            self.vae = AutoencoderKL.from_pretrained(folder)
        except Exception as exc:
            raise ConfigError(
                "preprocessor.path", "a loadable diffusers AutoencoderKL", f"{folder} ({type(exc).__name__})"
            ) from exc
        self.vae.requires_grad_(False)
        self.vae.eval()
        self.path = str(folder)

    def train(self, mode: bool = True) -> "VAEPreprocessor":
        return super().train(False)  # a fixed, pre-trained pre-processor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latent = self.vae.encode(x * 2 - 1).latent_dist.mode()
        return (self.vae.decode(latent).sample + 1) / 2


def build_identity(cfg: dict, image_size: int, num_classes: int) -> IdentityPreprocessor:
    return IdentityPreprocessor()


def build_vae(cfg: dict, image_size: int, num_classes: int) -> VAEPreprocessor:
    return VAEPreprocessor(cfg["path"])
