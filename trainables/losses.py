"""Losses of the pre-processors: the paper's adversarial NT-Xent and the reconstruction MSE.

`adversarial_nt_xent` follows CRoPD's eq. for l_con exactly: anchors are the clean views, the
positive of x_i is x_i_adv, the negatives are X u X_adv minus {x_i, x_i_adv}.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def adversarial_nt_xent(z_clean: torch.Tensor, z_adv: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over i of -log( exp(sim(z_adv_i, z_i)/tau) / sum_{neg} exp(sim(z_i, neg)/tau) ).

    sim is cosine similarity. Unlike SimCLR's NT-Xent the positive is NOT in the denominator:
    the paper sums over X_neg = X u X_adv \\ {x_i, x_i_adv} only. Needs a batch of at least 2.
    """
    if z_clean.shape != z_adv.shape or z_clean.dim() != 2:
        raise ValueError(f"expected two (B, D) tensors of one shape, got {tuple(z_clean.shape)} and {tuple(z_adv.shape)}")
    batch = z_clean.shape[0]
    if batch < 2:
        raise ValueError("adversarial_nt_xent needs at least 2 images per batch (negatives come from the batch)")
    clean = F.normalize(z_clean, dim=1)
    adv = F.normalize(z_adv, dim=1)
    positive = (clean * adv).sum(dim=1) / temperature
    to_clean = clean @ clean.T / temperature
    to_adv = clean @ adv.T / temperature
    own = torch.eye(batch, dtype=torch.bool, device=z_clean.device)
    negatives = torch.cat([to_clean.masked_fill(own, float("-inf")), to_adv.masked_fill(own, float("-inf"))], dim=1)
    return (torch.logsumexp(negatives, dim=1) - positive).mean()


def reconstruction_mse(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(reconstruction, target)
