"""AdvCL's objective as the auto-encoder's contrastive term: multi-view NT-Xent plus pseudo-supervision.

MSE(f_de(f_en(x)), x) + lambda * l_CL(views of x) (AdvCL eq. 5, 9) + pseudo_lambda * the ClusterFit CE (eq. 10).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import reconstruction_mse
from ..multiview import adversarial_view, make_views, multiview_loss, pseudo_label_term
from ..schema.preprocessor import uses_pseudo_labels
from .masked_autoencoder import MaskedAutoencoder


class AdvCLAutoencoder(MaskedAutoencoder):
    """The CRoPD auto-encoder plus one linear pseudo-label head per cluster number K.

    The heads read the mean encoder token (the encoder's feature, as AdvCL's heads read ResNet's
    pooled feature, not the projector's output). They only shape the encoder during training;
    the module still maps images to images.
    """

    def __init__(self, arch: dict, image_size: int, clusters: list[int]):
        super().__init__(arch, image_size)
        self.pseudo_heads = nn.ModuleList(nn.Linear(arch["hidden_size"], k) for k in clusters)

    def pseudo_label_ce(self, x: torch.Tensor, pseudo_labels: torch.Tensor) -> torch.Tensor:
        """Mean over the heads of CE(head_K(f_en(x)), c_K): AdvCL's ensemble over K (eq. 10)."""
        features = self.pooled_latent(x)
        losses = [F.cross_entropy(head(features), pseudo_labels[:, i]) for i, head in enumerate(self.pseudo_heads)]
        return torch.stack(losses).mean()


def advcl_step(
    model: AdvCLAutoencoder, images: torch.Tensor, pseudo_labels: torch.Tensor, cfg: dict
) -> dict[str, torch.Tensor]:
    """One AdvCL-objective step on training images as stored, with their pseudo-labels (B, number of K).

    The adversarial view x + delta is PGD from x on the multi-view loss against the other views'
    fixed embeddings (eq. 7, 9); the pseudo-label CE gets its own PGD perturbation of x on that CE
    (eq. 10). Both: eps, attack_steps, random start, step attack_step_size or eps / 4 (AdvCL's
    2/255 at 8/255). Views are embedded in one batched encoder pass.
    """
    # Like cropd at lambda 0, a zero weight skips the term's views and attack rather than pay for them.
    use_contrastive = cfg["lambda"] > 0
    x, inputs = make_views(images, cfg["views"], augment=cfg["augment"], fft_radius=cfg["fft_radius"])
    reconstruction = reconstruction_mse(model(x), x)
    loss, terms = reconstruction, {"loss_reconstruction": reconstruction}
    if use_contrastive:
        names = list(cfg["views"])
        if "adversarial" in names:
            inputs["adversarial"] = adversarial_view(
                model, x, [inputs[name] for name in names if name != "adversarial"], cfg
            )
        contrastive = multiview_loss(model, [inputs[name] for name in names], cfg["temperature"])
        loss, terms["loss_contrastive"] = loss + cfg["lambda"] * contrastive, contrastive
    if uses_pseudo_labels(cfg):
        pseudo = pseudo_label_term(model, x, pseudo_labels, cfg)
        loss, terms["loss_pseudo_ce"] = loss + cfg["pseudo_lambda"] * pseudo, pseudo
    return {"loss": loss, **terms}


def build_advcl(cfg: dict, image_size: int, num_classes: int) -> AdvCLAutoencoder:
    return AdvCLAutoencoder(cfg["arch"], image_size, cfg["pseudo_clusters"])
