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
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel
from transformers.utils import logging as transformers_logging

from .artifacts import artifact_lock, config_hash, count_parameters
from .config import Field, boolean, integer, number, one_of, resolve, text
from .encoders import CifarResNet18, Foundation, FoundationFeatures, ResNetFeatures
from .errors import ConfigError
from .pretraining_schema import resolve_pretraining_config, uses_pseudo_labels
from .published import published_dir, reusable
from .seeding import seed_everything

if TYPE_CHECKING:
    from .data import ImageDataset

# facebook/vit-mae-* checkpoints normalise with ImageNet statistics (their preprocessor_config.json).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EMBEDDED_NAME = "embedded"
RESNET_NAME = "resnet18"
RESNET_FILE = "resnet.json"  # marks a saved ResNet foundation folder (a ViT-MAE one has config.json)
ROBUST_RECORD = "robust_pretraining.json"  # what robust pre-training made a folder: config, data, time, history

FOUNDATION_SCHEMA = {
    "name": Field("facebook/vit-mae-large", "a local folder saved with save_pretrained, a hub name, or 'embedded'", text),
    "mode": Field("frozen", "'frozen', 'finetune' (clean fine-tuning, paper Table 2) or 'adversarial_finetune' (PGD, Table 1)",
                  one_of("frozen", "finetune", "adversarial_finetune")),
    "pooling": Field("mean", "'mean' (patch tokens) or 'cls'", one_of("mean", "cls")),
    "allow_download": Field(False, "true or false", boolean),
    "embedded": Field(None, "a mapping of embedded-foundation settings (name: embedded only)", lambda v: v is None or isinstance(v, dict)),
    "resnet": Field(None, "a mapping of resnet18 settings (name: resnet18 only)", lambda v: v is None or isinstance(v, dict)),
    "pretraining": Field(None, "a mapping of robust pre-training settings (method advcl or rocl), or null", lambda v: v is None or isinstance(v, dict)),
}
# Added after sweeps existed: left out of a resolved config when null, so older configs keep their hashes.
OPTIONAL_SECTIONS = ("resnet", "pretraining")

# name: resnet18 builds a CIFAR-style ResNet-18 with random weights; robust pre-training trains it.
RESNET_SCHEMA = {
    "width": Field(64, "an integer >= 1 (64 is ResNet-18; smaller is a CPU-sized one)", integer(1)),
    "image_size": Field(32, "an integer >= 8 (inputs are resized to it)", integer(8)),
    "seed": Field(0, "an integer (initial weights)", integer()),
}

# The embedded foundation: small enough to pre-train in well under a CPU-minute on the digits.
EMBEDDED_SCHEMA = {
    "image_size": Field(32, "an integer >= 8", integer(8)),
    "patch_size": Field(4, "an integer >= 1 dividing image_size", integer(1)),
    "hidden_size": Field(64, "an integer >= 8", integer(8)),
    "num_hidden_layers": Field(2, "an integer >= 1", integer(1)),
    "num_attention_heads": Field(4, "an integer >= 1 dividing hidden_size", integer(1)),
    "intermediate_size": Field(128, "an integer >= 8", integer(8)),
    "decoder_hidden_size": Field(64, "an integer >= 8", integer(8)),
    "decoder_num_hidden_layers": Field(1, "an integer >= 1", integer(1)),
    "decoder_num_attention_heads": Field(4, "an integer >= 1", integer(1)),
    "decoder_intermediate_size": Field(128, "an integer >= 8", integer(8)),
    "mask_ratio": Field(0.75, "a number in (0, 1)", number(0, 1, low_open=True, high_open=True)),
    "epochs": Field(40, "an integer >= 1", integer(1)),
    "batch_size": Field(64, "an integer >= 2", integer(2)),
    "lr": Field(1.5e-3, "a number > 0", number(0, low_open=True)),
    "weight_decay": Field(0.05, "a number >= 0", number(0)),
    "seed": Field(0, "an integer", integer()),
}


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


def resolve_foundation_config(given: dict | None, *, image_size: int | None = None) -> dict:
    """The checked section; `image_size` (of the training images, when known) checks what must fit them."""
    cfg = resolve("foundation", given, FOUNDATION_SCHEMA)
    if cfg["embedded"] is not None and cfg["name"] != EMBEDDED_NAME:
        raise ConfigError("foundation.embedded", "no embedded settings unless foundation.name is 'embedded'", cfg["name"])
    if cfg["name"] == RESNET_NAME:
        cfg["resnet"] = resolve("foundation.resnet", cfg["resnet"], RESNET_SCHEMA)
    elif cfg["resnet"] is not None:
        raise ConfigError("foundation.resnet", f"no resnet settings unless foundation.name is '{RESNET_NAME}'", cfg["name"])
    cfg["pretraining"] = resolve_pretraining_config(cfg["pretraining"], untrained=cfg["name"] == RESNET_NAME, image_size=image_size)
    if cfg["name"] == RESNET_NAME and cfg["pretraining"] is None:
        raise ConfigError("foundation.pretraining.method", f"'advcl' or 'rocl': {RESNET_NAME} is built untrained and needs robust pre-training", "none")
    if cfg["name"] == RESNET_NAME and uses_pseudo_labels(cfg["pretraining"]) and cfg["pretraining"]["pseudo_model"] is None:
        raise ConfigError("foundation.pretraining.pseudo_model", f"a pre-trained foundation to cluster features of ({RESNET_NAME} starts untrained), or pseudo_clusters: []", None)
    for key in OPTIONAL_SECTIONS:
        if cfg[key] is None:
            del cfg[key]
    return cfg


def base_foundation_config(cfg: dict) -> dict:
    """A resolved config without its robust pre-training: the model that pre-training starts from."""
    return {key: value for key, value in cfg.items() if key != "pretraining"}


def _read_normalisation(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """mean/std from the model's preprocessor_config.json; ImageNet's when it has none."""
    path = folder / "preprocessor_config.json"
    if path.is_file():
        spec = json.loads(path.read_text())
        return tuple(spec.get("image_mean", IMAGENET_MEAN)), tuple(spec.get("image_std", IMAGENET_STD))
    return IMAGENET_MEAN, IMAGENET_STD


def _locate(name: str, allow_download: bool) -> Path:
    """A local folder for `name`: the path itself, or the hub snapshot in the local HF cache."""
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file() and not (local / RESNET_FILE).is_file():
            raise ConfigError("foundation.name", f"a folder holding a ViT-MAE saved with save_pretrained (config.json missing) or a saved ResNet ({RESNET_FILE})", str(local))
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=not allow_download, allow_patterns=["*.json", "*.safetensors", "*.bin"]))
    except Exception as exc:  # offline misses raise several hub error types
        hint = "" if allow_download else "; set foundation.allow_download: true to fetch it (needs network)"
        raise ConfigError(
            "foundation.name",
            f"an existing local folder, or a hub name already in the local HuggingFace cache{hint}",
            name,
        ) from exc


def load_foundation(
    config: dict | None = None,
    *,
    cache_root: Path | None = None,
    device: str = "cpu",
    on_pretrain_epoch: Callable[[dict[str, Any]], None] | None = None,
    train: ImageDataset | None = None,
) -> Foundation:
    """Load the foundation named in `config` (validated), deterministic and frozen by default.

    `name: embedded` pre-trains (or reuses from `cache_root`) the small embedded ViT-MAE and
    then loads it through exactly the same path as a hub model. With `pretraining`, the model
    is first robustly pre-trained on the unlabeled images of `train` (or reused from the cache).
    """
    cfg = resolve_foundation_config(config)
    if "pretraining" in cfg:
        from .robust_pretraining import (
            robust_foundation_folder,  # late: it imports the pseudo-labels, which import this
        )

        if train is None:
            raise ConfigError("foundation.pretraining", "training images to pre-train on (a trial passes its own)", cfg["pretraining"]["method"])
        folder = robust_foundation_folder(cfg, train, cache_root=cache_root or default_cache_root(), device=device, on_epoch=on_pretrain_epoch)
    elif cfg["name"] == EMBEDDED_NAME:
        folder = pretrain_embedded_foundation(cfg["embedded"], cache_root=cache_root, on_epoch=on_pretrain_epoch)
    else:
        folder = _locate(cfg["name"], cfg["allow_download"])
    return load_foundation_folder(folder, pooling=cfg["pooling"], trainable=cfg["mode"] != "frozen", device=device)


def build_untrained_resnet(cfg: dict, *, trainable: bool) -> ResNetFeatures:
    """name: resnet18 as built, seeded: the starting point of its robust pre-training."""
    settings = cfg["resnet"]
    seed_everything(settings["seed"], "resnet18-init")
    network = CifarResNet18(settings["width"])
    return ResNetFeatures(network, settings["image_size"], network.feature_dim, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), trainable)


def save_foundation(foundation: Foundation, folder: Path) -> None:
    """Into an existing folder, in the form load_foundation_folder reads: a ViT-MAE by
    save_pretrained plus its normalisation; a ResNet as safetensors (batch-norm statistics
    included) plus what rebuilds the network."""
    mean, std = foundation.mean.flatten().tolist(), foundation.std.flatten().tolist()
    if isinstance(foundation, ResNetFeatures):
        network = foundation.model
        save_file({k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}, str(folder / "model.safetensors"))
        (folder / RESNET_FILE).write_text(json.dumps({"architecture": "cifar_resnet18", "width": network.feature_dim // 8,
                                                      "image_size": foundation.image_size, "image_mean": mean, "image_std": std}, indent=2))
        return
    with quiet_transformers():
        foundation.model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "image_mean": mean, "image_std": std,
        "size": {"height": foundation.image_size, "width": foundation.image_size}}, indent=2))


def load_foundation_folder(folder: Path, *, pooling: str = "mean", trainable: bool = False, device: str = "cpu") -> Foundation:
    """A saved foundation: a ViT-MAE saved with save_pretrained, or a ResNet saved by save_foundation."""
    folder = Path(folder)
    try:
        if (folder / RESNET_FILE).is_file():
            spec = json.loads((folder / RESNET_FILE).read_text())
            network = CifarResNet18(int(spec["width"]))
            network.load_state_dict(load_file(str(folder / "model.safetensors")))
            features: Foundation = ResNetFeatures(network, spec["image_size"], network.feature_dim, spec["image_mean"], spec["image_std"], trainable)
        else:
            features = FoundationFeatures(_load_vitmae(folder), *_read_normalisation(folder), pooling, trainable=trainable)
    except Exception as exc:
        raise ConfigError("foundation.name", "a loadable ViT-MAE or ResNet foundation", f"{folder} ({type(exc).__name__})") from exc
    record = folder / ROBUST_RECORD
    if record.is_file():
        features.pretraining = json.loads(record.read_text())
    return features.to(device)


def _load_vitmae(folder: Path) -> ViTMAEModel:
    # A pre-training checkpoint also holds the MAE decoder; its "unexpected keys" report is noise here.
    with quiet_transformers():
        return ViTMAEModel.from_pretrained(folder, mask_ratio=0.0)


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


def foundation_parameter_count(foundation: FoundationFeatures) -> int:
    return count_parameters(foundation)


def default_cache_root() -> Path:
    return Path(os.environ.get("CROPD_CACHE", Path.home() / ".cache" / "cropd"))


def pretrain_embedded_foundation(
    config: dict | None = None,
    *,
    cache_root: Path | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Algorithm 1 step 1 on the embedded data: MAE pre-training of a small ViT-MAE.

    Trained on the unlabeled TRAIN split of scikit-learn's digits (10 classes; the test split is
    never seen), with the model's own random masking and loss. Cached by a hash of its config
    and published by atomic rename under a file lock, so concurrent trials build it once and
    always read a complete folder.
    """
    cfg = resolve("foundation.embedded", config, EMBEDDED_SCHEMA)
    if cfg["image_size"] % cfg["patch_size"]:
        raise ConfigError("foundation.embedded.patch_size", "a divisor of image_size", cfg["patch_size"])
    key = config_hash({"embedded_foundation": cfg, "data": "digits/train", "version": 2})
    folder = Path(cache_root or default_cache_root()) / "foundations" / f"embedded-vitmae-{key}"
    with artifact_lock(folder):
        if not reusable(folder, "config.json"):
            _pretrain(cfg, folder, on_epoch)
    return folder


def _pretrain(cfg: dict, folder: Path, on_epoch: Callable[[dict[str, Any]], None] | None) -> None:
    from .data import load_dataset  # late: data imports torchvision, not needed for hub models

    train = load_dataset("digits", "train")
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
            json.dumps({"image_processor_type": "ViTImageProcessor", "image_mean": list(mean), "image_std": list(std),
                        "size": {"height": cfg["image_size"], "width": cfg["image_size"]}}, indent=2)
        )
        (scratch / "pretraining.json").write_text(
            json.dumps({"config": cfg, "train_images": len(images), "time_s": time.perf_counter() - started, "final_loss": total / steps}, indent=2)
        )
