"""Fit a pre-processor on training images: epoch loop, per-epoch checkpoints, resume, artifacts.

A fitted pre-processor is published once, by atomic rename, under a folder named by the hash of
exactly what determines it (its relevant settings and the training data), so trials share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..artifacts import artifact_lock, config_hash, count_parameters
from ..augmentation import augment
from ..checkpointing import EpochCheckpoints
from ..data import ImageDataset, data_fingerprint
from ..errors import CheckpointError, ConfigError
from ..pseudo_labels import FeatureModel, choose_feature_model, pseudo_label_dir, pseudo_labels
from ..published import published_dir, reusable
from ..schema.preprocessor import (
    PREPROCESSOR_KINDS,
    artifact_key_config,
    check_clusters_fit,
    resolve_preprocessor_config,
    uses_pseudo_labels,
)
from ..seeding import seed_everything
from ..training_loop import EpochCallback, fit_epochs
from ..validation_probe import ValidationProbe, held_out_split

WEIGHTS = "model.safetensors"
METADATA = "preprocessor.json"
KEEP_CHECKPOINTS = 2
# Bumped whenever a code change alters what training produces, so stale artifacts are not reused.
# 3: the defaults became DIR's `combine: average` and the paper's plain FGSM.
# 4: the augmentations drawn per image by trainables/augmentation.py (batched), not torchvision's loop.
ARTIFACT_VERSION = 4


@dataclass
class FittedPreprocessor:
    """A ready pre-processor and what the results table records about it (paper Tables 11, 12)."""

    module: nn.Module
    config: dict
    params: int
    time_s: float
    path: Path | None = None
    history: list[dict] = field(default_factory=list)
    reused: bool = False


def build_preprocessor(cfg: dict, image_size: int, num_classes: int) -> nn.Module:
    return PREPROCESSOR_KINDS[cfg["kind"]].build(cfg, image_size, num_classes)


def artifact_folder(
    cfg: dict, train: ImageDataset, workdir: Path, features: FeatureModel | None = None, autocast: bool = False
) -> Path:
    """`features`: the pseudo-label model when the config uses one; its identity joins the key, as
    bf16 training does (`autocast`: other weights), only when used, so fp32 keys stay as they were."""
    identity = {
        "preprocessor": artifact_key_config(cfg),
        "data": data_fingerprint(train),
        "image_size": train.image_size,
        "version": ARTIFACT_VERSION,
    }
    if features is not None:
        identity["pseudo_label_model"] = features.identity
    if autocast:
        identity["autocast"] = "bf16"
    if cfg.get("validation"):  # the same weights, but records with other measurements
        identity["validation"] = cfg["validation"]
    return Path(workdir) / "preprocessors" / f"{cfg['kind']}-{config_hash(identity)}"


def pseudo_label_model(cfg: dict, foundation: FeatureModel | None) -> FeatureModel | None:
    """f_pre for an advcl config with the pseudo-label stimulus: pseudo_model, else the foundation."""
    if not uses_pseudo_labels(cfg):
        return None
    return choose_feature_model(cfg["pseudo_model"], foundation, "preprocessor.pseudo_model")


def fit_preprocessor(
    config: dict | None,
    train: ImageDataset,
    workdir: Path,
    *,
    device: str = "cpu",
    on_epoch: EpochCallback | None = None,
    foundation: FeatureModel | None = None,
    autocast: bool = False,
    eps: float | None = None,
    validation: ImageDataset | None = None,
) -> FittedPreprocessor:
    """Train (or reuse, or resume) the pre-processor described by `config` on `train`.

    Every epoch ends with a checkpoint, then `on_epoch(metrics)`; an interrupted call resumes
    from the last checkpoint and ends with the same weights as an uninterrupted one.
    `foundation` is the trial's foundation: advcl's pseudo-labels cluster its features unless
    the config names another model. `autocast`: train under bf16 autocast (compute.autocast).
    With `preprocessor.validation` set, the epochs it names record the probe's measurements
    (validation_probe.py) of `validation`, the trial's validation split (never trained on); without
    one (data.validation_images: 0) of a held-out part of `train`, which is then not trained on. The probe's PGD
    radius: validation.eps, else `eps` (the dataset's attack budget), else the training attack's.
    """
    cfg = resolve_preprocessor_config(config, image_size=train.image_size)
    trained = PREPROCESSOR_KINDS[cfg["kind"]].trained
    held_out = None
    if trained and cfg.get("validation"):
        if validation is not None:
            held_out = validation
        else:
            train, held_out = held_out_split(train, cfg["validation"]["fraction"], seed=0)
    check_clusters_fit(cfg, len(train))
    features = pseudo_label_model(cfg, foundation)
    if not trained:
        module = build_preprocessor(cfg, train.image_size, train.num_classes).to(device)
        return FittedPreprocessor(module, cfg, count_parameters(module), 0.0)
    probe = None
    if held_out is not None:
        if foundation is None or foundation.module is None:
            raise ConfigError("preprocessor.validation", "a trial with a foundation to measure the pipeline", "none")
        radius = next(r for r in (cfg["validation"]["eps"], eps, cfg["eps"]) if r is not None)
        probe = ValidationProbe.from_config(cfg["validation"], train, held_out, foundation.module, radius, device)
    folder = artifact_folder(cfg, train, workdir, features, autocast)
    # Concurrent trials that need the same pre-processor (clean and robust heads, say) train it
    # once: the others wait on the lock and then reuse the published folder.
    with artifact_lock(folder):
        if reusable(folder, METADATA):
            fitted = load_preprocessor(folder, device=device)
            fitted.reused = True
            return fitted
        targets = _targets(cfg, train, features, workdir, device)
        return _train(cfg, train, targets, folder, device, on_epoch, autocast, probe)


def _targets(cfg: dict, train: ImageDataset, features: FeatureModel | None, workdir: Path, device: str) -> torch.Tensor:
    """What each image is learnt against (its kind's `targets`): its label, or its pseudo-label under each K."""
    if PREPROCESSOR_KINDS[cfg["kind"]].targets != "pseudo_labels":
        return train.labels
    if features is None:  # no pseudo-label stimulus: no columns
        return torch.zeros(len(train), 0, dtype=torch.int64)
    return pseudo_labels(
        train,
        cfg["pseudo_clusters"],
        features,
        pseudo_label_dir(workdir),
        data_key=data_fingerprint(train),
        seed=cfg["pseudo_seed"],
        device=device,
    )


def _train(
    cfg: dict,
    train: ImageDataset,
    targets: torch.Tensor,
    folder: Path,
    device: str,
    on_epoch: EpochCallback | None,
    autocast: bool = False,
    probe: ValidationProbe | None = None,
) -> FittedPreprocessor:
    """`targets[i]` is what the step learns image i against: its label, or advcl's pseudo-labels."""
    checkpoints = EpochCheckpoints(
        folder.with_name(folder.name + ".checkpoints"), key=folder.name, keep=KEEP_CHECKPOINTS
    )
    seed_everything(cfg["seed"], "preprocessor-init", folder.name)
    model = build_preprocessor(cfg, train.image_size, train.num_classes).to(device)
    kind = PREPROCESSOR_KINDS[cfg["kind"]]
    step = kind.training_step()
    augments = cfg["augment"] and kind.augments

    def one_step(x: torch.Tensor, batch_targets: torch.Tensor) -> dict[str, torch.Tensor]:
        # Augmented where the step runs: the parameters are drawn on the CPU (the same draws on
        # any device), the batch is transformed by tensor ops on the device.
        x = x.to(device)
        if augments:
            x = augment(x)
        return step(model, x, batch_targets.to(device), cfg)

    def measured(trained: nn.Module, epoch: int) -> dict[str, float]:
        return probe.measure(trained, epoch) if probe is not None and probe.due(epoch, cfg["epochs"]) else {}

    elapsed, history = fit_epochs(
        model,
        train,
        targets,
        one_step,
        cfg,
        checkpoints=checkpoints,
        seed_parts=("preprocessor", folder.name),
        record={"stage": "preprocessor", "kind": cfg["kind"]},
        what=f"preprocessor {cfg['kind']}",
        on_epoch=on_epoch,
        autocast_on=device if autocast else None,
        after_epoch=measured if probe is not None else None,
    )
    fitted = FittedPreprocessor(model, cfg, count_parameters(model), elapsed, folder, history)
    save_preprocessor(fitted, train, folder)
    checkpoints.clear()
    return fitted


def save_preprocessor(fitted: FittedPreprocessor, train: ImageDataset, folder: Path) -> None:
    """Weights as safetensors plus a JSON of config and provenance, published atomically."""
    with published_dir(folder) as scratch:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in fitted.module.state_dict().items()}, str(scratch / WEIGHTS)
        )
        (scratch / METADATA).write_text(
            json.dumps(
                {
                    "config": fitted.config,
                    "image_size": train.image_size,
                    "num_classes": train.num_classes,
                    "params": fitted.params,
                    "time_s": fitted.time_s,
                    "history": fitted.history,
                    "data": {"name": train.name, "images": len(train), "fingerprint": data_fingerprint(train)},
                },
                indent=2,
                sort_keys=True,
            )
        )
    fitted.path = folder


def load_preprocessor(folder: Path, *, device: str = "cpu") -> FittedPreprocessor:
    """Rebuild a saved pre-processor from its folder; missing or corrupt files are CheckpointErrors."""
    folder = Path(folder)
    meta_path, weights_path = folder / METADATA, folder / WEIGHTS
    if not meta_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{folder}: not a saved pre-processor (expected {METADATA} and {WEIGHTS})")
    try:
        meta = json.loads(meta_path.read_text())
        cfg = resolve_preprocessor_config(meta["config"])
        module = build_preprocessor(cfg, meta["image_size"], meta["num_classes"])
        module.load_state_dict(load_file(str(weights_path)))
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"{folder}: corrupt pre-processor ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    module.to(device).eval()
    return FittedPreprocessor(module, cfg, meta["params"], meta["time_s"], folder, meta["history"])
