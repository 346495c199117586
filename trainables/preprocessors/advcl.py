"""AdvCL's objective as the auto-encoder's contrastive term: multi-view NT-Xent plus pseudo-supervision.

MSE(f_de(f_en(x)), x) + lambda * l_CL(views of x) (AdvCL eq. 5, 9) + pseudo_lambda * the ClusterFit CE (eq. 10).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import pgd
from ..data import augment_batch, paper_augmentation
from ..frequency import frequency_split
from ..losses import multiview_nt_xent, reconstruction_mse
from .masked_autoencoder import MaskedAutoencoder
from .schema import uses_pseudo_labels


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


def at_contrast_of(view: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`view` shifted and scaled, per channel over the batch, to the mean and std of `reference`.

    AdvCL's ResNet batch-normalises each view's batch at every layer, so its encoder sees a faint
    x_high at full contrast. The ViT auto-encoder has no batch norm: fed raw, a faint x_high is
    near-blank and near-identical for every image (digits at r = 8 keep 0.4% of their energy
    there), and aligning every view with it collapsed all embeddings to one point (cosine 1.0
    between all images, measured). This gives the frequency views that normalisation explicitly.
    """
    dims = (0, 2, 3)
    centred = view - view.mean(dim=dims, keepdim=True)
    scale = reference.std(dim=dims, keepdim=True) / (view.std(dim=dims, keepdim=True) + 1e-6)
    return centred * scale + reference.mean(dim=dims, keepdim=True)


def make_views(images: torch.Tensor, cfg: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(x, the non-adversarial views of x) for a batch of training images as stored.

    x is what the auto-encoder reconstructs and the adversarial view starts from: the images
    under one draw of the paper's augmentations when `augment` is on, as for cropd. (AdvCL's code
    augments it too, apart from t1 and t2. On the embedded digits, un-augmented targets left
    vanilla and advcl auto-encoders at the mean image after 140 steps; augmented ones did not.)
    t1 and t2 are two more independent draws from the stored images (per image, global RNG).
    x_high and x_low split x, brought to x's contrast (at_contrast_of).
    """
    augmentation = paper_augmentation(images.shape[-1])
    x = augment_batch(images, augmentation) if cfg["augment"] else images
    views: dict[str, torch.Tensor] = {}
    for name in ("t1", "t2"):
        if name in cfg["views"]:
            views[name] = augment_batch(images, augmentation)
    if "high" in cfg["views"] or "low" in cfg["views"]:
        low, high = frequency_split(x, cfg["fft_radius"])
        views["low"], views["high"] = at_contrast_of(low, x), at_contrast_of(high, x)
    return x, {name: views[name] for name in cfg["views"] if name in views}


def advcl_step(model: AdvCLAutoencoder, images: torch.Tensor, pseudo_labels: torch.Tensor, cfg: dict) -> dict[str, torch.Tensor]:
    """One AdvCL-objective step on training images as stored, with their pseudo-labels (B, number of K).

    The adversarial view x + delta is PGD from x on the multi-view loss against the other views'
    fixed embeddings (eq. 7, 9); the pseudo-label CE gets its own PGD perturbation of x on that CE
    (eq. 10). Both: eps, attack_steps, random start, step attack_step_size or eps / 4 (AdvCL's
    2/255 at 8/255). Views are embedded in one batched encoder pass.
    """
    tau, eps = cfg["temperature"], cfg["eps"]
    steps = cfg["attack_steps"]
    step_size = cfg["attack_step_size"] or eps / 4
    # Like cropd at lambda 0, a zero weight skips the term's views and attack rather than pay for them.
    use_contrastive = cfg["lambda"] > 0
    use_pseudo = uses_pseudo_labels(cfg)
    x, inputs = make_views(images, cfg)
    reconstruction = reconstruction_mse(model(x), x)
    loss, terms = reconstruction, {"loss_reconstruction": reconstruction}
    if use_contrastive:
        names = list(cfg["views"])
        if "adversarial" in names:
            others = [inputs[name] for name in names if name != "adversarial"]
            with torch.no_grad():
                z_others = list(model.embed(torch.cat(others)).chunk(len(others)))
            inputs["adversarial"] = pgd(lambda xa: multiview_nt_xent([model.embed(xa), *z_others], tau), x,
                                        eps=eps, steps=steps, step_size=step_size, random_start=True)
        z = model.embed(torch.cat([inputs[name] for name in names])).chunk(len(names))
        contrastive = multiview_nt_xent(list(z), tau)
        loss, terms["loss_contrastive"] = loss + cfg["lambda"] * contrastive, contrastive
    if use_pseudo:
        x_ce = pgd(lambda xa: model.pseudo_label_ce(xa, pseudo_labels), x, eps=eps, steps=steps, step_size=step_size, random_start=True)
        pseudo = model.pseudo_label_ce(x_ce, pseudo_labels)
        loss, terms["loss_pseudo_ce"] = loss + cfg["pseudo_lambda"] * pseudo, pseudo
    return {"loss": loss, **terms}
