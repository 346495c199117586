"""Losses of the pre-processors: CRoPD's adversarial NT-Xent, AdvCL's multi-view NT-Xent, the MSE.

`adversarial_nt_xent` follows CRoPD's eq. for l_con exactly: anchors are the clean views, the
positive of x_i is x_i_adv, the negatives are X u X_adv minus {x_i, x_i_adv}.
`multiview_nt_xent` is AdvCL's eq. (5): every view of an image is a positive of its other views.
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
        raise ValueError(
            f"expected two (B, D) tensors of one shape, got {tuple(z_clean.shape)} and {tuple(z_adv.shape)}"
        )
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


def multiview_nt_xent(views: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """AdvCL eq. (5) over m views (each (B, D), row b of every view from image b), as a mean.

    Each of the m*B points is an anchor; its positives are the m-1 other views of its image, and
    its denominator sums over all m*B-1 other points (positives included, only itself excluded):
    -log( exp(sim(z_i, z_j)/t) / sum_{k != i} exp(sim(z_i, z_k)/t) ), sim the cosine similarity.
    Eq. (5) writes a sum; like AdvCL's code (SupConLoss, contrast_mode 'all') we average over the
    positives of an anchor and then over anchors, so the scale does not grow with m or B. AdvCL's
    code also multiplies by t / 0.07 (SupConLoss's base temperature); that constant is left out:
    it is a rescaling of lambda.
    """
    if len(views) < 2:
        raise ValueError(f"multiview_nt_xent needs at least 2 views, got {len(views)}")
    shape = views[0].shape
    if len(shape) != 2 or any(view.shape != shape for view in views):
        raise ValueError(f"expected views of one (B, D) shape, got {[tuple(view.shape) for view in views]}")
    count, batch = len(views), shape[0]
    z = F.normalize(torch.cat(views), dim=1)  # (m*B, D), view-major: point v*B + b is view v of image b
    similarity = z @ z.T / temperature
    itself = torch.eye(count * batch, dtype=torch.bool, device=z.device)
    log_prob = similarity - torch.logsumexp(similarity.masked_fill(itself, float("-inf")), dim=1, keepdim=True)
    image = torch.arange(batch, device=z.device).repeat(count)
    positive = (image[:, None] == image[None, :]) & ~itself
    return -(log_prob * positive).sum(dim=1).div(count - 1).mean()


def reconstruction_mse(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(reconstruction, target)
