"""The epoch loop every contrastive or reconstruction stage shares: AdamW, warm-up + cosine, resume.

Used by the pre-processors and by robust foundation pre-training, so both checkpoint, resume and
report their epochs the same way (an interrupted run ends with the weights of an uninterrupted one).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
from torch import nn

from . import stage_progress
from .checkpointing import EpochCheckpoints
from .data import ImageDataset, iterate_batches
from .precision import autocast
from .seeding import seed_everything

Step = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
EpochCallback = Callable[[dict[str, Any]], None]


def warmup_cosine(warmup_epochs: int, epochs: int) -> Callable[[int], float]:
    """Linear warm-up then cosine decay, as a per-epoch LR factor (paper Table 6)."""

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        span = max(1, epochs - warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / span))

    return factor


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """AdamW (the CRoPD paper's Tables 6-7), or SGD with momentum 0.9 (AdvCL's and RoCL's code) when
    cfg['optimizer'] is 'sgd'; `params`: a module or the parameters to train."""
    params = params.parameters() if isinstance(params, torch.nn.Module) else params
    if cfg.get("optimizer", "adamw") == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"])
    return torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])


def batch_size_at(cfg, epoch: int) -> int:
    """The batch size of 0-based `epoch`: cfg's batch_size, or the last batch_size_schedule entry
    whose epoch count has been reached ({150: 256}: from the 151st epoch on)."""
    size = cfg["batch_size"]
    for start, scheduled in sorted((cfg.get("batch_size_schedule") or {}).items()):
        if epoch >= int(start):
            size = scheduled
    return size


def fit_epochs(
    model: nn.Module,
    data: ImageDataset,
    targets: torch.Tensor,
    step: Step,
    cfg: dict,
    *,
    checkpoints: EpochCheckpoints,
    seed_parts: tuple,
    record: dict[str, Any],
    what: str,
    on_epoch: EpochCallback | None = None,
    autocast_on: str | None = None,
    after_epoch: Callable[[nn.Module, int], dict[str, float]] | None = None,
) -> tuple[float, list[dict]]:
    """Train `model` for cfg['epochs'] epochs of shuffled cfg['batch_size'] batches; return
    (seconds spent over all runs, per-epoch records).

    `step(images as stored, their targets)` returns named scalar terms, "loss" the one optimised.
    AdamW (or SGD with momentum 0.9 when cfg['optimizer'] is 'sgd') with cfg's lr and weight_decay,
    warmup_epochs of linear warm-up, then cosine decay.
    Each epoch is seeded from cfg['seed'] and `seed_parts`, ends with a checkpoint, then
    `on_epoch(record + the epoch's means)`; a later call resumes from the newest checkpoint.
    `autocast_on`: a device whose steps run under bf16 autocast (the backward pass outside it).
    `after_epoch(model, epoch)`: numbers measured after the epoch's training, recorded with it (and
    checkpointed with it, so a resumed run reports them again); not counted in the training time.
    """
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg["warmup_epochs"], cfg["epochs"]))
    start_epoch, elapsed, history = 0, 0.0, []
    state = checkpoints.latest()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, elapsed, history = state["epoch"], state["time_s"], list(state["history"])
        if on_epoch and history:
            # The process may have died between this checkpoint and its report: say it again
            # (the trial's epoch log ignores a record it already holds).
            on_epoch(history[-1])

    for epoch in range(start_epoch, cfg["epochs"]):
        started = time.perf_counter()
        seed_everything(cfg["seed"], *seed_parts, epoch)
        model.train()
        sums: dict[str, float] = {}
        batches = 0
        batch_size = batch_size_at(cfg, epoch)
        drop_last = len(data) > batch_size
        per_epoch = len(data) // batch_size if drop_last else -(-len(data) // batch_size)
        for index in iterate_batches(len(data), batch_size, shuffle=True, drop_last=drop_last):
            stage_progress.report(
                what, f"epoch {epoch + 1}/{cfg['epochs']}, batch {batches + 1}/{per_epoch}", force=batches == 0
            )
            with autocast(autocast_on, autocast_on is not None):
                terms = step(data.float_images(index), targets[index])
            if not torch.isfinite(terms["loss"]):
                raise FloatingPointError(f"{what}: non-finite loss at epoch {epoch + 1}, batch {batches + 1}")
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            batches += 1
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        epoch_time = time.perf_counter() - started
        elapsed += epoch_time
        history.append(
            {
                **record,
                "epoch": epoch + 1,
                "epochs": cfg["epochs"],
                "lr": lr,
                "batch_size": batch_size,
                "epoch_time_s": epoch_time,
                **{name: total / batches for name, total in sums.items()},
                **(after_epoch(model, epoch + 1) if after_epoch else {}),
            }
        )
        checkpoints.save(
            epoch + 1,
            {
                "time_s": elapsed,
                "history": history,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            },
        )
        if on_epoch:
            on_epoch(history[-1])
    return elapsed, history
