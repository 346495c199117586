"""Algorithm 1 step 1 with a robust method: AdvCL or RoCL pre-training of a foundation encoder.

On the trial's training images, labels never read; cached under the hash of the starting model,
the settings and the images, resumable per epoch, published by atomic rename and shared by trials.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .artifacts import artifact_lock, config_hash
from .checkpointing import EpochCheckpoints
from .data import ImageDataset, data_fingerprint
from .encoders import Foundation
from .foundation import ROBUST_RECORD, build_untrained_resnet, load_foundation, load_foundation_folder, save_foundation
from .multiview import adversarial_view, make_views, multiview_loss, pseudo_label_term
from .pseudo_labels import FeatureModel, choose_feature_model, feature_identity, pseudo_label_dir, pseudo_labels
from .published import published_dir, reusable
from .schema.contrastive import check_clusters_fit
from .schema.foundation import EMBEDDED_NAME, RESNET_NAME, base_foundation_config
from .schema.pretraining import PRETRAINING_METHODS, SECTION, uses_pseudo_labels
from .seeding import seed_everything
from .training_loop import fit_epochs

# Bumped whenever a code change alters what pre-training produces, so stale foundations are not reused.
VERSION = 1
CHANCE_MARGIN = 0.01


class ContrastiveEncoder(nn.Module):
    """The foundation being pre-trained, a 2-layer projector for the contrastive loss (dropped
    afterwards, as in SimCLR, AdvCL and RoCL), and one linear pseudo-label head per K on the
    foundation's features (AdvCL eq. 10)."""

    def __init__(self, foundation: Foundation, projector_hidden: int, projector_dim: int, clusters: list[int]):
        super().__init__()
        self.foundation = foundation
        width = foundation.feature_dim
        self.projector = nn.Sequential(
            nn.Linear(width, projector_hidden), nn.ReLU(), nn.Linear(projector_hidden, projector_dim)
        )
        self.pseudo_heads = nn.ModuleList(nn.Linear(width, k) for k in clusters)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.foundation(x))

    def pseudo_label_ce(self, x: torch.Tensor, pseudo_labels: torch.Tensor) -> torch.Tensor:
        features = self.foundation(x)
        return torch.stack(
            [F.cross_entropy(head(features), pseudo_labels[:, i]) for i, head in enumerate(self.pseudo_heads)]
        ).mean()


def advcl_step(
    model: ContrastiveEncoder, images: torch.Tensor, pseudo_labels: torch.Tensor, cfg: dict
) -> dict[str, torch.Tensor]:
    """AdvCL (eq. 9, 10): the multi-view loss over cfg's views, x + delta by PGD from an augmented
    x against the other views, plus pseudo_lambda times the pseudo-label CE under its own PGD."""
    x, inputs = make_views(images, cfg["views"], augment=True, fft_radius=cfg["fft_radius"])
    names = list(cfg["views"])
    if "adversarial" in names:
        inputs["adversarial"] = adversarial_view(
            model, x, [inputs[name] for name in names if name != "adversarial"], cfg
        )
    contrastive = multiview_loss(model, [inputs[name] for name in names], cfg["temperature"])
    loss, terms = contrastive, {"loss_contrastive": contrastive, "loss_chance": chance_loss(len(names), len(images))}
    if uses_pseudo_labels(cfg):
        pseudo = pseudo_label_term(model, x, pseudo_labels, cfg)
        loss, terms["loss_pseudo_ce"] = loss + cfg["pseudo_lambda"] * pseudo, pseudo
    return {"loss": loss, **terms}


def rocl_step(
    model: ContrastiveEncoder, images: torch.Tensor, pseudo_labels: torch.Tensor, cfg: dict
) -> dict[str, torch.Tensor]:
    """RoCL: the instance-wise attack t1 + delta (PGD from t1 against t2), then NT-Xent with
    t1, t2 and t1 + delta as mutual positives."""
    _, views = make_views(images, ["t1", "t2"], augment=False)
    adversarial = adversarial_view(model, views["t1"], [views["t2"]], cfg)
    contrastive = multiview_loss(model, [views["t1"], views["t2"], adversarial], cfg["temperature"])
    return {"loss": contrastive, "loss_contrastive": contrastive, "loss_chance": chance_loss(3, len(images))}


def chance_loss(views: int, batch: int) -> torch.Tensor:
    """The multi-view loss when every embedding is the same (collapse): log(views * batch - 1).

    Recorded beside the loss because an adversarial contrastive objective can settle there: the
    attack cannot raise the loss of a constant encoder, so collapse is a stable point of the game.
    """
    return torch.tensor(math.log(views * batch - 1))


def at_chance(record: dict) -> bool:
    """Whether a pre-training record (robust_pretraining.json) ended with its contrastive loss
    within 1% of the collapse value of its views and (full) batches."""
    settings, images = record["pretraining"], record["train_images"]["images"]
    views = PRETRAINING_METHODS[settings["method"]].views or len(settings["views"])
    batch = (
        settings["batch_size"] if images > settings["batch_size"] else images
    )  # the epoch loop drops a short last batch
    final = record["history"][-1]["loss_contrastive"]
    return final >= (1 - CHANCE_MARGIN) * float(chance_loss(views, batch))


def load_robust_foundation(
    cfg: dict,
    train: ImageDataset,
    *,
    cache_root: Path,
    device: str = "cpu",
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> Foundation:
    """The foundation a resolved config with `pretraining` describes, pre-trained on `train`'s images
    here unless a trial has published it already (its record then tells what it cost)."""
    folder = robust_foundation_folder(cfg, train, cache_root=cache_root, device=device, on_epoch=on_epoch)
    return load_foundation_folder(folder, pooling=cfg["pooling"], trainable=cfg["mode"] != "frozen", device=device)


def robust_foundation_folder(
    cfg: dict,
    train: ImageDataset,
    *,
    cache_root: Path,
    device: str = "cpu",
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """The folder of the foundation `cfg` describes after its robust pre-training on `train`,
    trained (or resumed) here if no trial has published it yet."""
    settings = cfg["pretraining"]
    start = base_foundation_config(cfg)
    identity = {
        "start": feature_identity(start),
        "pretraining": settings,
        "data": data_fingerprint(train),
        "image_size": train.image_size,
        "version": VERSION,
    }
    label = start["name"] if start["name"] in (EMBEDDED_NAME, RESNET_NAME) else "vitmae"
    folder = Path(cache_root) / "foundations" / f"{settings['method']}-{label}-{config_hash(identity)}"
    clusters = settings["pseudo_clusters"] if uses_pseudo_labels(settings) else []
    check_clusters_fit(clusters, len(train), f"{SECTION}.pseudo_clusters")  # before any work or file
    with artifact_lock(folder):
        if not reusable(folder, ROBUST_RECORD):
            _pretrain(start, settings, identity, train, folder, Path(cache_root), device, on_epoch)
    return folder


def _starting_model(start: dict, cache_root: Path, device: str) -> Foundation:
    if start["name"] == RESNET_NAME:
        return build_untrained_resnet(start, trainable=True).to(device)
    # The embedded ViT-MAE's own MAE pre-training, if it runs here, is not this stage's epochs: not reported.
    return load_foundation({**start, "mode": "finetune"}, cache_root=cache_root, device=device)


def _pretrain(
    start: dict,
    settings: dict,
    identity: dict,
    train: ImageDataset,
    folder: Path,
    cache_root: Path,
    device: str,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> None:
    method = settings["method"]
    clusters = settings["pseudo_clusters"] if uses_pseudo_labels(settings) else []
    foundation = _starting_model(start, cache_root, device)
    targets = torch.zeros(len(train), 0, dtype=torch.int64)
    if clusters:
        # f_pre: pseudo_model, else the starting model (before this pre-training)
        features = choose_feature_model(
            settings["pseudo_model"], FeatureModel(feature_identity(start), foundation), f"{SECTION}.pseudo_model"
        )
        targets = pseudo_labels(
            train,
            clusters,
            features,
            pseudo_label_dir(cache_root),
            data_key=data_fingerprint(train),
            seed=settings["pseudo_seed"],
            device=device,
        )
    seed_everything(settings["seed"], "robust-pretraining-init", folder.name)
    model = ContrastiveEncoder(foundation, settings["projector_hidden"], settings["projector_dim"], clusters).to(device)
    step = PRETRAINING_METHODS[method].training_step()
    checkpoints = EpochCheckpoints(folder.with_name(folder.name + ".checkpoints"), key=folder.name)
    elapsed, history = fit_epochs(
        model,
        train,
        targets,
        lambda x, batch_targets: step(model, x.to(device), batch_targets.to(device), settings),
        settings,
        checkpoints=checkpoints,
        seed_parts=("robust-pretraining", folder.name),
        record={"stage": "foundation", "method": method},
        what=f"foundation pre-training ({method})",
        on_epoch=on_epoch,
    )
    with published_dir(folder) as scratch:
        save_foundation(foundation, scratch)
        (scratch / ROBUST_RECORD).write_text(
            json.dumps(
                {
                    **identity,
                    "time_s": elapsed,
                    "history": history,
                    "train_images": {"name": train.name, "images": len(train)},
                },
                indent=2,
                sort_keys=True,
                default=str,
            )
        )
    checkpoints.clear()
