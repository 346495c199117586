"""The foundation model from its config: a ViT-MAE (hub, local or embedded) or a ResNet-18, deterministic.

Also Algorithm 1 step 1: the embedded ViT-MAE is MAE pre-trained on the spot, and any foundation
can be robustly pre-trained (AdvCL, RoCL); both are saved and loaded back by the same loading code.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel
from transformers.utils import logging as transformers_logging

from .artifacts import artifact_lock, config_hash
from .encoders import CifarResNet18, Foundation, FoundationFeatures, ResNetFeatures
from .errors import ConfigError
from .model_folders import FOUNDATION_FOLDER, RESNET_FILE, locate_model
from .provenance import compute_identity, weights_digest
from .published import published_dir, reusable
from .schema.foundation import EMBEDDED_NAME, resolve_embedded_config, resolve_foundation_config
from .seeding import seed_everything
from .shipped_foundations import shipped_digest, shipped_folder

# facebook/vit-mae-* checkpoints normalise with ImageNet statistics (their preprocessor_config.json).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ROBUST_RECORD = "robust_pretraining.json"  # what robust pre-training made a folder: config, data, time, history


def init_mae_tokens(model: ViTMAEForPreTraining) -> ViTMAEForPreTraining:
    """Initialise a fresh ViT-MAE as the original MAE does: fixed 2-D sin-cos position
    embeddings (encoder and decoder), Normal(0, 0.02) cls and mask tokens.

    transformers 5.23 leaves a freshly built model's position embeddings, cls and mask tokens at
    exactly zero (its init skips them), which makes the model blind to patch positions and puts a
    constant-zero cls token at LayerNorm's degenerate point. Only for models built from scratch;
    pre-trained checkpoints load their own values.
    """
    embeddings = model.vit.embeddings
    if hasattr(embeddings.patch_embeddings.projection, "_is_hf_initialized"):
        del embeddings.patch_embeddings.projection._is_hf_initialized
    with torch.no_grad():
        embeddings.initialize_weights()
        model.decoder.initialize_weights(embeddings.patch_embeddings.num_patches)
        nn.init.normal_(embeddings.cls_token, std=0.02)
        nn.init.normal_(model.decoder.mask_token, std=0.02)
    return model


def _read_normalisation(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """mean/std from the model's preprocessor_config.json; ImageNet's when it has none."""
    path = folder / "preprocessor_config.json"
    if path.is_file():
        spec = json.loads(path.read_text())
        return tuple(spec.get("image_mean", IMAGENET_MEAN)), tuple(spec.get("image_std", IMAGENET_STD))
    return IMAGENET_MEAN, IMAGENET_STD


def _locate(name: str, allow_download: bool) -> Path:
    """A local folder for `name`: the path itself, or the hub snapshot in the local HF cache."""
    return locate_model(
        name,
        FOUNDATION_FOLDER,
        field="foundation.name",
        allow_download=allow_download,
        hint="" if allow_download else "; set foundation.allow_download: true to fetch it (needs network)",
    )


def load_foundation(
    config: dict | None = None,
    *,
    cache_root: Path | None = None,
    device: str = "cpu",
    on_pretrain_epoch: Callable[[dict[str, Any]], None] | None = None,
    data_root: str | Path | None = None,
) -> Foundation:
    """Load the foundation named in `config`, deterministic and frozen by default.

    `name: embedded` loads the shipped digits foundation, or pre-trains (or reuses from
    `cache_root`) another embedded ViT-MAE on its data set's training split (read under
    `data_root`), and then loads it through exactly the same path as a hub model. A foundation
    with robust pre-training is robust_pretraining.load_robust_foundation's: it needs the trial's images.
    """
    cfg = resolve_foundation_config(config)
    if "pretraining" in cfg:
        raise ValueError("a foundation with robust pre-training is loaded by robust_pretraining.load_robust_foundation")
    if cfg["name"] == EMBEDDED_NAME:
        folder = pretrain_embedded_foundation(
            cfg["embedded"], cache_root=cache_root, on_epoch=on_pretrain_epoch, data_root=data_root
        )
    else:
        folder = _locate(cfg["name"], cfg["allow_download"])
    return _checked_if_shipped(
        folder,
        load_foundation_folder(
            folder,
            pooling=cfg["pooling"],
            trainable=cfg["mode"] != "frozen",
            device=device,
            mask_ratio=cfg.get("mask_ratio", 0.0),
        ),
    )


def _checked_if_shipped(folder: Path, foundation: Foundation) -> Foundation:
    """`foundation`, after checking its weights are the digest shipped for `folder`, if shipped."""
    expected = shipped_digest(folder)
    if expected is not None:
        got = weights_digest(foundation)
        if got != expected:
            raise ConfigError(
                "foundation.embedded", f"the shipped weights (digest {expected})", f"digest {got} in {folder}"
            )
    return foundation


def build_untrained_resnet(cfg: dict, *, trainable: bool) -> ResNetFeatures:
    """name: resnet18 as built, seeded: the starting point of its robust pre-training."""
    settings = cfg["resnet"]
    seed_everything(settings["seed"], "resnet18-init")
    network = CifarResNet18(settings["width"])
    return ResNetFeatures(
        network, settings["image_size"], network.feature_dim, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), trainable
    )


def save_foundation(foundation: Foundation, folder: Path) -> None:
    """Into an existing folder, in the form load_foundation_folder reads: a ViT-MAE by
    save_pretrained plus its normalisation; a ResNet as safetensors (batch-norm statistics
    included) plus what rebuilds the network."""
    mean, std = foundation.mean.flatten().tolist(), foundation.std.flatten().tolist()
    if isinstance(foundation, ResNetFeatures):
        network = foundation.model
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()},
            str(folder / "model.safetensors"),
        )
        (folder / RESNET_FILE).write_text(
            json.dumps(
                {
                    "architecture": "cifar_resnet18",
                    "width": network.feature_dim // 8,
                    "image_size": foundation.image_size,
                    "image_mean": mean,
                    "image_std": std,
                },
                indent=2,
            )
        )
        return
    with quiet_transformers():
        foundation.model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "ViTImageProcessor",
                "image_mean": mean,
                "image_std": std,
                "size": {"height": foundation.image_size, "width": foundation.image_size},
            },
            indent=2,
        )
    )


def load_foundation_folder(
    folder: Path, *, pooling: str = "mean", trainable: bool = False, device: str = "cpu", mask_ratio: float = 0.0
) -> Foundation:
    """A saved foundation: a ViT-MAE saved with save_pretrained, or a ResNet saved by save_foundation.

    `mask_ratio`: the share of patches a ViT-MAE masks at random on every pass (foundation.mask_ratio;
    0: none, deterministic). A ResNet has no masking to set.
    """
    folder = Path(folder)
    try:
        if (folder / RESNET_FILE).is_file():
            if mask_ratio:
                raise ConfigError(
                    "foundation.mask_ratio", "0 for a ResNet foundation (masking is a ViT-MAE's)", mask_ratio
                )
            spec = json.loads((folder / RESNET_FILE).read_text())
            network = CifarResNet18(int(spec["width"]))
            network.load_state_dict(load_file(str(folder / "model.safetensors")))
            features: Foundation = ResNetFeatures(
                network, spec["image_size"], network.feature_dim, spec["image_mean"], spec["image_std"], trainable
            )
        else:
            features = FoundationFeatures(
                _load_vitmae(folder, mask_ratio=mask_ratio),
                *_read_normalisation(folder),
                pooling,
                trainable=trainable,
            )
    except ConfigError:  # already names its field (foundation.mask_ratio)
        raise
    except Exception as exc:
        raise ConfigError(
            "foundation.name", "a loadable ViT-MAE or ResNet foundation", f"{folder} ({type(exc).__name__})"
        ) from exc
    record = folder / ROBUST_RECORD
    if record.is_file():
        features.pretraining = json.loads(record.read_text())
    return features.to(device)


def _load_vitmae(folder: Path, *, mask_ratio: float = 0.0) -> ViTMAEModel:
    # mask_ratio overrides the checkpoint's own (facebook's save 0.75): 0 unless a trial asks for
    # the random masking (FoundationFeatures then draws the masks from its own seeded generator).
    # A pre-training checkpoint also holds the MAE decoder; its "unexpected keys" report is noise here.
    with quiet_transformers():
        return ViTMAEModel.from_pretrained(folder, mask_ratio=float(mask_ratio))


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' warnings and progress bars off for a load or save (a trial's log stays readable)."""
    verbosity, bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


def default_cache_root() -> Path:
    return Path(os.environ.get("CROPD_CACHE", Path.home() / ".cache" / "cropd"))


def pretrain_embedded_foundation(
    config: dict | None = None,
    *,
    cache_root: Path | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    data_root: str | Path | None = None,
) -> Path:
    """Algorithm 1 step 1 on the embedded data: MAE pre-training of a small ViT-MAE.

    The digits foundation at its default settings ships with the project (shipped_foundations.py):
    its folder is returned, checked, and nothing is trained. Any other is trained on the unlabeled
    TRAIN split of its `dataset` (the test split is never seen), with the model's own random
    masking and loss, and cached by a hash of its config and of the training images, published by
    atomic rename under a file lock, so concurrent trials build it once and always read a complete
    folder. Such a foundation differs between CPUs (their kernels differ); rows record its
    weights' digest (trainables/provenance.py).
    """
    cfg = resolve_embedded_config(config)
    shipped = shipped_folder(cfg)
    if shipped is not None:
        return shipped
    from .data import data_fingerprint, load_dataset  # late: data imports torchvision, not needed for hub models

    train = load_dataset(cfg["dataset"], "train", root=data_root)
    key = config_hash(
        {"embedded_foundation": cfg, "data": f"{cfg['dataset']}/train", "images": data_fingerprint(train), "version": 3}
    )
    folder = Path(cache_root or default_cache_root()) / "foundations" / f"embedded-vitmae-{key}"
    with artifact_lock(folder):
        if not reusable(folder, "config.json"):
            mae_pretrain(cfg, train, folder, on_epoch)
    return folder


def mae_pretrain(cfg: dict, train, folder: Path, on_epoch: Callable[[dict[str, Any]], None] | None) -> None:
    """MAE pre-training of the ViT-MAE `cfg` describes on the images of `train` (no labels),
    published into `folder` (which must not exist) with its record and manifest."""
    model_config = ViTMAEConfig(
        image_size=cfg["image_size"],
        patch_size=cfg["patch_size"],
        num_channels=3,
        hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        intermediate_size=cfg["intermediate_size"],
        decoder_hidden_size=cfg["decoder_hidden_size"],
        decoder_num_hidden_layers=cfg["decoder_num_hidden_layers"],
        decoder_num_attention_heads=cfg["decoder_num_attention_heads"],
        decoder_intermediate_size=cfg["decoder_intermediate_size"],
        mask_ratio=cfg["mask_ratio"],
        layer_norm_eps=1e-6,  # the original MAE's value; see MaskedAutoencoder
    )
    seed_everything(cfg["seed"], "embedded-foundation")
    model = init_mae_tokens(ViTMAEForPreTraining(model_config))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg["epochs"])
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    images = train.float_images()
    if images.shape[-1] != cfg["image_size"]:
        images = F.interpolate(images, size=(cfg["image_size"],) * 2, mode="bilinear", align_corners=False)
    started = time.perf_counter()
    model.train()
    for epoch in range(cfg["epochs"]):
        seed_everything(cfg["seed"], "embedded-foundation", epoch)
        order = torch.randperm(len(images))
        total, steps = 0.0, 0
        for start in range(0, len(images), cfg["batch_size"]):
            batch = images[order[start : start + cfg["batch_size"]]]
            loss = model(pixel_values=(batch - mean_t) / std_t).loss  # random masking is right here: this is training
            if not torch.isfinite(loss):  # never published: every trial of every sweep would load it
                raise FloatingPointError(f"embedded foundation pre-training: non-finite loss at epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        scheduler.step()
        if on_epoch:
            on_epoch({"stage": "foundation", "epoch": epoch + 1, "loss": total / steps})
    broken = [name for name, value in model.state_dict().items() if not torch.isfinite(value).all()]
    if broken:  # a finite loss can still leave a parameter non-finite (an overflow in the last step)
        raise FloatingPointError(f"embedded foundation pre-training: non-finite weights in {', '.join(broken[:3])}")
    with published_dir(folder) as scratch, quiet_transformers():
        model.save_pretrained(scratch)
        (scratch / "preprocessor_config.json").write_text(
            json.dumps(
                {
                    "image_processor_type": "ViTImageProcessor",
                    "image_mean": list(mean),
                    "image_std": list(std),
                    "size": {"height": cfg["image_size"], "width": cfg["image_size"]},
                },
                indent=2,
            )
        )
        (scratch / "pretraining.json").write_text(
            json.dumps(
                {
                    "config": cfg,
                    "train_images": len(images),
                    "time_s": time.perf_counter() - started,
                    "final_loss": total / steps,
                    # What built it: another CPU builds other weights from the same config.
                    "compute": {
                        **compute_identity("cpu"),
                        "torch": torch.__version__,
                        "threads": torch.get_num_threads(),
                    },
                },
                indent=2,
            )
        )
