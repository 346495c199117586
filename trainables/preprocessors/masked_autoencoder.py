"""The ViT-MAE auto-encoder behind vanilla, cropd, arae and encoder_only, with deterministic masking.

Built from transformers' ViTMAEForPreTraining. "50% deterministic masking" is defined here as a
fixed checkerboard split of the patch grid into two complementary halves: both halves go through
the shared encoder (one batched pass) and the decoder predicts every patch from each half.
`combine: average` (the default) is DIR's reconstruction (Zhou et al. 2023, which CRoPD builds
on): the two decoder outputs are averaged, so every output patch is the mean of the pass that saw
it and the pass that inpainted it. `combine: masked` is our variant: every output patch is taken
from the pass that did NOT see it, which makes any auto-encoder (Vanilla too) an inpainting
purifier whose output patch has no gradient path to its own input patch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from ..foundation import init_mae_tokens


def checkerboard_noise(grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two fixed noise vectors for ViT-MAE's argsort masking whose kept halves are complementary.

    ViT-MAE keeps the patches with the smallest noise. Half A keeps the 'white' squares of a
    checkerboard, half B the 'black' ones; the small ramp makes the order within a half fixed.
    """
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    colour = ((rows + cols) % 2).flatten().float()
    ramp = torch.arange(grid * grid).float() / (grid * grid)
    return colour + ramp, (1 - colour) + ramp


class MaskedAutoencoder(nn.Module):
    """x in [0,1] (B,3,H,W) -> x_hat (B,3,H,W); `embed` gives the projector output for losses."""

    def __init__(self, arch: dict, image_size: int):
        super().__init__()
        self.arch = dict(arch)
        self.image_size = image_size
        config = ViTMAEConfig(
            image_size=image_size,
            patch_size=arch["patch_size"],
            num_channels=3,
            hidden_size=arch["hidden_size"],
            num_hidden_layers=arch["encoder_layers"],
            num_attention_heads=arch["num_heads"],
            intermediate_size=arch["hidden_size"] * arch["mlp_ratio"],
            decoder_hidden_size=arch["decoder_hidden_size"],
            decoder_num_hidden_layers=arch["decoder_layers"],
            decoder_num_attention_heads=arch["num_heads"],
            decoder_intermediate_size=arch["decoder_hidden_size"] * arch["mlp_ratio"],
            mask_ratio=0.5,
            # timm / the original MAE / DIR use 1e-6; HF's BERT-era 1e-12 lets a near-constant
            # token scale gradients by 1e6 per LayerNorm, which overflowed float32 here.
            layer_norm_eps=1e-6,
        )
        self.mae = init_mae_tokens(ViTMAEForPreTraining(config))
        grid = image_size // arch["patch_size"]
        self.num_patches = grid * grid
        noise_a, noise_b = checkerboard_noise(grid)
        self.register_buffer("noise_a", noise_a, persistent=False)
        self.register_buffer("noise_b", noise_b, persistent=False)
        # Token positions each half keeps, and the permutation that puts both back in patch order.
        keep = torch.cat(
            [torch.argsort(noise_a)[: self.num_patches // 2], torch.argsort(noise_b)[: self.num_patches // 2]]
        )
        self.register_buffer("restore_order", torch.argsort(keep), persistent=False)
        pooled = (self.num_patches // arch["pool_factor"]) * arch["hidden_size"]
        self.projector = nn.Sequential(
            nn.Linear(pooled, arch["projector_hidden"]),
            nn.ReLU(),
            nn.Linear(arch["projector_hidden"], arch["projector_dim"]),
        )

    def halves_noise(self, batch: int) -> torch.Tensor:
        return torch.cat([self.noise_a.expand(batch, -1), self.noise_b.expand(batch, -1)])

    def masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask_a, mask_b) over patches, 1 = removed in that pass, exactly as ViT-MAE computes it."""
        dummy = torch.zeros(2, self.num_patches, 1, device=self.noise_a.device)
        _, mask, _ = self.mae.vit.embeddings.random_masking(dummy, self.halves_noise(1))
        return mask[0], mask[1]

    def _encode_halves(self, x: torch.Tensor):
        """One batched encoder pass over both halves: (latent (2B, 1+L/2, D), ids_restore, mask)."""
        out = self.mae.vit(pixel_values=torch.cat([x, x]), noise=self.halves_noise(x.shape[0]))
        return out.last_hidden_state, out.ids_restore, out.mask

    def _tokens_in_patch_order(self, latent: torch.Tensor) -> torch.Tensor:
        """The visible tokens of both halves merged into one (B, L, D) sequence in patch order."""
        half = latent.shape[0] // 2
        tokens = torch.cat([latent[:half, 1:], latent[half:, 1:]], dim=1)
        return tokens[:, self.restore_order]

    def _project(self, latent: torch.Tensor) -> torch.Tensor:
        tokens = self._tokens_in_patch_order(latent)  # (B, L, D)
        pooled = F.avg_pool1d(tokens.transpose(1, 2), kernel_size=self.arch["pool_factor"])  # (B, D, L/f)
        return self.projector(pooled.flatten(1))

    def _decode(self, latent: torch.Tensor, ids_restore: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        patches = self.mae.decoder(latent, ids_restore).logits  # (2B, L, p*p*3)
        half = patches.shape[0] // 2
        if self.arch["combine"] == "average":
            merged = 0.5 * (patches[:half] + patches[half:])
        else:
            mask = mask.unsqueeze(-1)
            merged = patches[:half] * mask[:half] + patches[half:] * mask[half:]
        return self.mae.unpatchify(merged, (self.image_size, self.image_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latent, ids_restore, mask = self._encode_halves(x)
        return self._decode(latent, ids_restore, mask)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """f_en(x) for the contrastive loss: encoder tokens -> avg-pool -> 2-layer projector."""
        latent, _, _ = self._encode_halves(x)
        return self._project(latent)

    def reconstruct_and_embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both outputs from one encoder pass (the training step needs both)."""
        latent, ids_restore, mask = self._encode_halves(x)
        return self._decode(latent, ids_restore, mask), self._project(latent)

    def pooled_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of all encoder tokens in patch order (B, D): the encoder_only classifier's input."""
        latent, _, _ = self._encode_halves(x)
        return self._tokens_in_patch_order(latent).mean(dim=1)


class EncoderOnlyClassifier(nn.Module):
    """Table 8's baseline: the auto-encoder's encoder plus a linear layer, adversarially trained
    with labels and no foundation model. Its output is logits, not an image: a trial uses it as
    the whole classifier."""

    produces = "logits"

    def __init__(self, arch: dict, image_size: int, num_classes: int):
        super().__init__()
        self.autoencoder = MaskedAutoencoder(arch, image_size)
        # The decoder and projector are unused by this baseline; drop them so counts are honest.
        self.autoencoder.mae.decoder = None
        self.autoencoder.projector = None
        self.classifier = nn.Linear(arch["hidden_size"], num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.autoencoder.pooled_latent(x))


def build_autoencoder(cfg: dict, image_size: int, num_classes: int) -> MaskedAutoencoder:
    """vanilla, cropd and arae: one auto-encoder, trained by different steps."""
    return MaskedAutoencoder(cfg["arch"], image_size)


def build_encoder_only(cfg: dict, image_size: int, num_classes: int) -> EncoderOnlyClassifier:
    return EncoderOnlyClassifier(cfg["arch"], image_size, num_classes)
