"""The classifier that is trained and attacked: head(foundation(preprocessor(x))).

Attacks always differentiate through this whole module, never through the head alone.
"""

from __future__ import annotations

import torch
from torch import nn


class Pipeline(nn.Module):
    """images in [0,1] -> logits. The pre-processor is frozen once fitted; the foundation is
    frozen unless its mode fine-tunes it; a classifier pre-processor (encoder_only) is the
    whole pipeline on its own."""

    def __init__(self, preprocessor: nn.Module, foundation: nn.Module | None, head: nn.Module | None):
        super().__init__()
        self.preprocessor = preprocessor.requires_grad_(False)
        self.foundation = foundation
        self.head = head

    @property
    def is_standalone_classifier(self) -> bool:
        return getattr(self.preprocessor, "produces", "images") == "logits"

    def train(self, mode: bool = True) -> "Pipeline":
        super().train(mode)
        self.preprocessor.eval()  # fitted and fixed: no stage after it changes it
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.foundation(self.preprocessor(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.is_standalone_classifier:
            return self.preprocessor(images)
        return self.head(self.features(images))
