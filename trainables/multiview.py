"""AdvCL's building blocks for any encoder with `embed` (and `pseudo_label_ce`): views, attacks, terms.

Shared by the advcl pre-processor (auto-encoder) and robust foundation pre-training (AdvCL, RoCL).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from . import augmentation
from .attacks import pgd
from .frequency import frequency_split
from .losses import multiview_nt_xent


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


def make_views(
    images: torch.Tensor, views: list[str], *, augment: bool, fft_radius: float | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(x, the non-adversarial views of x) for a batch of training images as stored.

    x is what an auto-encoder reconstructs and the adversarial view starts from: the images
    under one draw of the paper's augmentations when `augment` is on, as for cropd. (AdvCL's code
    augments it too, apart from t1 and t2. On the embedded digits, un-augmented targets left
    vanilla and advcl auto-encoders at the mean image after 140 steps; augmented ones did not.)
    t1 and t2 are two more independent draws from the stored images (per image, global RNG).
    x_high and x_low split x, brought to x's contrast (at_contrast_of).
    """
    x = augmentation.augment(images) if augment else images
    made: dict[str, torch.Tensor] = {}
    for name in ("t1", "t2"):
        if name in views:
            made[name] = augmentation.augment(images)
    if "high" in views or "low" in views:
        low, high = frequency_split(x, fft_radius)
        made["low"], made["high"] = at_contrast_of(low, x), at_contrast_of(high, x)
    return x, {name: made[name] for name in views if name in made}


@contextlib.contextmanager
def attacking(model: nn.Module) -> Iterator[None]:
    """Eval mode while an attack crafts its input, so it neither updates nor depends on batch
    norm's batch statistics (no-op for the ViTs, which have none); the caller's mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def attack_settings(cfg: dict) -> dict:
    """pgd's keyword arguments from a config's eps, attack_steps, attack_step_size (null: eps / 4,
    AdvCL's 2/255 at 8/255), always from a random start."""
    step_size = cfg["attack_step_size"] or cfg["eps"] / 4
    # At eps 0 the attack returns x unperturbed; any positive step size passes pgd's check.
    return {"eps": cfg["eps"], "steps": cfg["attack_steps"], "step_size": step_size or 1.0, "random_start": True}


def adversarial_view(model: nn.Module, start: torch.Tensor, references: list[torch.Tensor], cfg: dict) -> torch.Tensor:
    """start + delta: PGD on the multi-view loss of [embed(start + delta), *references], the
    references' embeddings held fixed (AdvCL eq. 7 with x as start and the other views as
    references; RoCL's instance-wise attack with t1 as start and t2 as the one reference)."""
    with attacking(model):
        with torch.no_grad():
            fixed = list(model.embed(torch.cat(references)).chunk(len(references)))
        return pgd(
            lambda xa: multiview_nt_xent([model.embed(xa), *fixed], cfg["temperature"]), start, **attack_settings(cfg)
        )


def multiview_loss(model: nn.Module, inputs: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Eq. (5) over the given views, embedded in one batched pass."""
    return multiview_nt_xent(list(model.embed(torch.cat(inputs)).chunk(len(inputs))), temperature)


def pseudo_label_term(model: nn.Module, x: torch.Tensor, pseudo_labels: torch.Tensor, cfg: dict) -> torch.Tensor:
    """The ClusterFit CE (eq. 10) on x under its own PGD perturbation of that CE."""
    with attacking(model):
        x_ce = pgd(lambda xa: model.pseudo_label_ce(xa, pseudo_labels), x, **attack_settings(cfg))
    return model.pseudo_label_ce(x_ce, pseudo_labels)
