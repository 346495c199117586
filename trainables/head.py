"""Algorithm 1 step 3: the linear head on the foundation's features, clean or robust (PGD-10).

A clean head on a frozen, deterministic foundation trains on features computed once; every other
mode, and a foundation that masks at random (foundation.mask_ratio > 0), runs the whole pipeline per
batch. Checkpoints every epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import precision, stage_progress
from .attacks import pgd
from .checkpointing import EpochCheckpoints
from .data import ImageDataset, iterate_batches
from .pipeline import Pipeline
from .seeding import seed_everything
from .shared_features import SharedFeatures
from .survival import is_random, reseed_random_modules
from .training_loop import EpochCallback, make_optimizer


@dataclass
class HeadResult:
    pipeline: Pipeline
    time_s: float
    params: int
    history: list[dict] = field(default_factory=list)
    features_cached: bool = False


def pipeline_features(pipeline: Pipeline, data: ImageDataset, device: str, batch_size: int = 256) -> torch.Tensor:
    """foundation(preprocessor(x)) for every image, once: exact when both are deterministic (for a
    foundation that masks at random, one draw per image: train_head does not cache those)."""
    chunks = []
    with torch.no_grad():
        for index in iterate_batches(len(data), batch_size, shuffle=False):
            chunks.append(pipeline.features(data.float_images(index).to(device)))
    return torch.cat(chunks)


def train_head(
    pipeline: Pipeline,
    train: ImageDataset,
    cfg: dict,
    checkpoint_folder: Path,
    key: str,
    *,
    eps: float,
    device: str = "cpu",
    on_epoch: EpochCallback | None = None,
    autocast: bool = False,
    shared: SharedFeatures | None = None,
) -> HeadResult:
    """Train `pipeline.head` (and the foundation when it is trainable) for cfg['epochs'] epochs,
    resuming from the newest checkpoint in `checkpoint_folder` tagged with `key`. `autocast`: each
    step's forward pass (and a robust head's attack) under bf16 autocast; the backward outside it.
    `shared`: where a clean head's training features may already be (trainables/shared_features.py)."""
    foundation_trains = any(p.requires_grad for p in pipeline.foundation.parameters())
    trainable = [p for p in pipeline.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, cfg)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg["milestones"], gamma=cfg["lr_decay"])
    checkpoints = EpochCheckpoints(checkpoint_folder, key)
    start_epoch, elapsed, history = 0, 0.0, []
    state = checkpoints.latest()
    if state is not None:
        pipeline.head.load_state_dict(state["head"])
        if foundation_trains:
            pipeline.foundation.load_state_dict(state["foundation"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, elapsed, history = state["epoch"], state["time_s"], list(state["history"])
        if on_epoch and history:  # reported again: the process may have died before it was (training_loop.py)
            on_epoch(history[-1])

    # A foundation that masks at random (foundation.mask_ratio > 0) is not cached: features cached
    # once would be one draw per image for every epoch, while a pipeline that kept transformers'
    # default (what mask_ratio > 0 reproduces) shows the head a fresh mask per image and epoch.
    # That costs a foundation pass per batch and epoch, as it would have cost that pipeline.
    cache_features = cfg["mode"] == "clean" and not foundation_trains and not is_random(pipeline)
    # A resume that finds every epoch done (interrupted later, in evaluation) needs no features.
    cached = None
    if cache_features and start_epoch < cfg["epochs"]:
        compute = lambda: pipeline_features(pipeline, train, device)  # noqa: E731
        cached = shared.of("train", train, compute) if shared is not None else compute()
    labels_all = train.labels.to(device)
    for epoch in range(start_epoch, cfg["epochs"]):
        started = time.perf_counter()
        seed_everything(cfg["seed"], "head", key, epoch)
        reseed_random_modules(pipeline, cfg["seed"], "head", key, epoch)  # a resumed run draws the same masks
        pipeline.train()
        loss_sum = correct = seen = 0.0
        per_epoch = -(-len(train) // cfg["batch_size"])
        for number, index in enumerate(iterate_batches(len(train), cfg["batch_size"], shuffle=True)):
            stage_progress.report(
                f"head ({cfg['mode']})",
                f"epoch {epoch + 1}/{cfg['epochs']}, batch {number + 1}/{per_epoch}",
                force=number == 0,
            )
            labels = labels_all[index.to(device)]
            with precision.autocast(device, autocast):
                if cached is not None:
                    logits = pipeline.head(cached[index.to(device)])
                else:
                    images = train.float_images(index).to(device)
                    if cfg["mode"] == "robust":
                        images, labels = _mix_with_adversarial(pipeline, images, labels, cfg, eps)
                    logits = pipeline(images)
                loss = F.cross_entropy(logits, labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"head: non-finite loss at epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        epoch_time = time.perf_counter() - started
        elapsed += epoch_time
        record = {
            "stage": "head",
            "mode": cfg["mode"],
            "epoch": epoch + 1,
            "epochs": cfg["epochs"],
            "lr": lr,
            "loss": loss_sum / seen,
            "train_acc": correct / seen,
            "epoch_time_s": epoch_time,
        }
        history.append(record)
        checkpoints.save(
            epoch + 1,
            {
                "time_s": elapsed,
                "history": history,
                "head": pipeline.head.state_dict(),
                "foundation": pipeline.foundation.state_dict() if foundation_trains else {},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            },
        )
        if on_epoch:
            on_epoch(record)
    pipeline.eval()
    return HeadResult(pipeline, elapsed, sum(p.numel() for p in trainable), history, cache_features)


def _mix_with_adversarial(pipeline: Pipeline, images: torch.Tensor, labels: torch.Tensor, cfg: dict, eps: float):
    """The paper's robust head: PGD-10 (step 0.007) examples through the whole pipeline, mixed
    with the clean batch. The attack runs in eval mode, as at test time."""
    attack_eps = cfg["attack_eps"] if cfg["attack_eps"] is not None else eps
    pipeline.eval()
    adversarial = pgd(
        lambda x: F.cross_entropy(pipeline(x), labels),
        images,
        eps=attack_eps,
        steps=cfg["attack_steps"],
        step_size=cfg["attack_step_size"],
        random_start=True,
    )
    pipeline.train()
    return torch.cat([images, adversarial]), torch.cat([labels, labels])


def build_linear_head(feature_dim: int, num_classes: int) -> nn.Linear:
    return nn.Linear(feature_dim, num_classes)
