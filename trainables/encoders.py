"""The foundation encoders as modules: images in [0,1] in, features out (deterministic by default).

A HuggingFace ViT-MAE (masking pinned off, unless foundation.mask_ratio asks for its seeded random
masking) and a CIFAR-style ResNet-18 (AdvCL's and RoCL's backbone for 32x32 data), behind one
interface the pipeline, the heads and the attacks use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1
from transformers import ViTMAEModel

from .errors import ConfigError


class Foundation(nn.Module):
    """Resizes (differentiable bilinear) to the model's image size and normalises with its
    mean/std, so attacks see gradients through the whole path; subclasses encode the pixels.

    Frozen (eval mode, no gradients to its weights) unless made trainable.
    """

    def __init__(self, model: nn.Module, image_size: int, feature_dim: int, mean, std, trainable: bool):
        super().__init__()
        self.model = model
        self.image_size = int(image_size)
        self.feature_dim = int(feature_dim)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        # What robust pre-training produced this model (its pretraining.json), when it did.
        self.pretraining: dict | None = None
        self.set_trainable(trainable)

    def set_trainable(self, trainable: bool) -> None:
        self.trainable = trainable
        self.model.requires_grad_(trainable)
        if not trainable:
            self.model.eval()

    def train(self, mode: bool = True) -> "Foundation":
        # A frozen foundation stays in eval mode (batch norm statistics included) whatever the
        # enclosing pipeline asks.
        super().train(mode and self.trainable)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        return self.encode((images - self.mean) / self.std)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class FoundationFeatures(Foundation):
    """A ViT-MAE's pooled features (B, hidden).

    transformers' ViTMAEModel masks at random even in eval mode: it keeps the patches of the
    `1 - mask_ratio` smallest values of a `noise` tensor, drawn from torch's global RNG unless
    given. At mask_ratio 0 (the default) a fixed noise tensor pins the (otherwise shuffled) patch
    order: features are bit-identical across calls. At mask_ratio > 0 (foundation.mask_ratio: a
    pipeline that kept the checkpoint's default) the noise is drawn from this module's own
    generator, so the masks are random per image and per pass, yet reproducible: whoever needs
    them reproducible (the evaluation, per batch; the head, per epoch) calls `reseed`.
    Mean pooling then averages the kept patch tokens (the model returns only those); cls pooling
    reads the cls token, which attended to the kept patches only.
    """

    def __init__(self, model: ViTMAEModel, mean, std, pooling: str, trainable: bool, seed: int = 0):
        super().__init__(model, model.config.image_size, model.config.hidden_size, mean, std, trainable)
        self.pooling = pooling
        self.num_patches = (self.image_size // int(model.config.patch_size)) ** 2
        self.mask_ratio = float(model.config.mask_ratio)
        kept = int(self.num_patches * (1 - self.mask_ratio))  # transformers' len_keep
        if not 0 <= self.mask_ratio < 1 or kept < 1:
            raise ConfigError(
                "foundation.mask_ratio",
                f"a ratio that keeps at least 1 of the {self.num_patches} patches",
                self.mask_ratio,
            )
        # A CPU generator whatever the device: the same masks on a CPU and a GPU, and a draw of
        # (B, patches) floats per pass costs nothing beside the model.
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def random_at_test_time(self) -> bool:
        """Whether two passes over the same images differ (trainables/survival.py `random_modules`)."""
        return self.mask_ratio > 0

    def reseed(self, seed: int) -> None:
        """Start the masks' stream afresh from `seed`: what follows is the same on every run."""
        self.generator.manual_seed(int(seed))

    def _noise(self, batch: int, device: torch.device) -> torch.Tensor:
        if not self.random_at_test_time:
            return torch.arange(self.num_patches, device=device, dtype=torch.float32).expand(batch, -1)
        return torch.rand(batch, self.num_patches, generator=self.generator).to(device)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        noise = self._noise(pixels.shape[0], pixels.device)
        hidden = self.model(pixel_values=pixels, noise=noise).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return hidden[:, 1:].mean(dim=1)


class CifarResNet18(nn.Module):
    """ResNet-18 as AdvCL and RoCL use it for 32x32 images: a 3x3 stride-1 stem and no max-pool,
    then torchvision's BasicBlocks, 2 per stage, widths w, 2w, 4w, 8w; global average pool.

    Written out (from torchvision's blocks) because torchvision's ResNet fixes w = 64 and the
    ImageNet stem; w = 64 is the real ResNet-18, a smaller w a CPU-sized one.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        blocks, inplanes = [], width
        for planes, stride in ((width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)):
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
            blocks += [BasicBlock(inplanes, planes, stride, downsample), BasicBlock(planes, planes)]
            inplanes = planes
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = 8 * width
        for module in self.modules():  # torchvision's ResNet initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(pixels)).mean(dim=(2, 3))


class ResNetFeatures(Foundation):
    """A CifarResNet18's pooled features (B, 8w). Deterministic in eval mode (batch norm uses its
    running statistics)."""

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)
