"""ClusterFit pseudo-labels (AdvCL eq. 10): K-means on a pre-trained model's features of the training images.

Computed once per (data, model, K, seed) and cached as a file, so every trial and resume reuses them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import nn

from .artifacts import artifact_lock, config_hash, load_checkpoint, save_checkpoint
from .data import ImageDataset
from .errors import CheckpointError, ConfigError
from .foundation import load_foundation
from .schema.foundation import resolve_foundation_config

# Where a store of artifacts (a sweep's artifacts folder for its pre-processors, the shared cache
# for robust foundations) keeps the pseudo-labels its artifacts were trained with.
PSEUDO_LABEL_FOLDER = "pseudo_labels"
# Bumped when a code change alters the labels computed for the same inputs.
PSEUDO_LABEL_VERSION = 1
FEATURE_BATCH = 256
FEATURE_KEYS = ("name", "pooling", "embedded", "resnet", "pretraining", "mask_ratio")  # mask_ratio: only when > 0
KMEANS_INITS = 3  # k-means++ restarts; the best inertia wins, so one unlucky start matters less


@dataclass
class FeatureModel:
    """f_pre of eq. (10): a foundation that features images, and the settings that identify it.

    `identity` is a foundation config restricted to what decides its features (name, pooling,
    embedded settings): it keys the label cache, and loads the model when `module` is None.
    """

    identity: dict
    module: nn.Module | None = field(default=None, repr=False)

    @classmethod
    def of_foundation(cls, config: dict | None, module: nn.Module | None = None) -> FeatureModel:
        return cls(feature_identity(resolve_foundation_config(config)), module)

    def features(self, data: ImageDataset, device: str) -> np.ndarray:
        """L2-normalised features (N, D) of every image, as ClusterFit clusters them."""
        module = self.module if self.module is not None else load_foundation(self.identity, device=device)
        was_training = module.training
        module.eval()
        chunks = []
        with torch.no_grad():
            for start in range(0, len(data), FEATURE_BATCH):
                images = data.float_images(slice(start, start + FEATURE_BATCH)).to(device)
                chunks.append(F.normalize(module(images).float(), dim=1).cpu())
        module.train(was_training)
        return torch.cat(chunks).double().numpy()


def feature_identity(cfg: dict) -> dict:
    """A resolved foundation config restricted to what decides its features. resnet and pretraining
    only where present: identities without them, and their caches, stay as they were."""
    return {key: cfg[key] for key in FEATURE_KEYS if key in cfg}


def choose_feature_model(pseudo_model: str | None, default: FeatureModel | None, field: str) -> FeatureModel:
    """f_pre of eq. (10): the foundation `pseudo_model` names, else `default` (the caller's own)."""
    if pseudo_model is not None:
        return FeatureModel.of_foundation({"name": pseudo_model})
    if default is None:
        raise ConfigError(
            field, "a foundation name to cluster features of (no foundation was passed in to default to)", None
        )
    return default


def pseudo_label_dir(store: Path) -> Path:
    return Path(store) / PSEUDO_LABEL_FOLDER


def cache_path(cache_dir: Path, data_key: str, model: FeatureModel, k: int, seed: int) -> Path:
    key = config_hash(
        {"data": data_key, "model": model.identity, "k": k, "seed": seed, "version": PSEUDO_LABEL_VERSION}
    )
    return Path(cache_dir) / f"k{k}-{key}.pt"


def kmeans_labels(features: np.ndarray, k: int, seed: int) -> torch.Tensor:
    """Cluster indices (N,) in [0, k) from a seeded K-means: the same features and seed give the same labels."""
    clustering = KMeans(n_clusters=k, init="k-means++", n_init=KMEANS_INITS, random_state=seed)
    return torch.as_tensor(clustering.fit_predict(features), dtype=torch.int64)


def pseudo_labels(
    data: ImageDataset,
    clusters: list[int],
    model: FeatureModel,
    cache_dir: Path,
    *,
    data_key: str,
    seed: int,
    device: str = "cpu",
) -> torch.Tensor:
    """Labels (N, len(clusters)): column i clusters the images into clusters[i] groups.

    `data_key` fingerprints the images (the caller's data hash). Each K is its own cache file,
    written atomically under a lock, so concurrent trials compute it once; the features are
    computed only when some K is missing, and then once for all of them.
    """
    features: np.ndarray | None = None
    columns = []
    for k in clusters:
        path = cache_path(cache_dir, data_key, model, k, seed)
        with artifact_lock(path):
            labels = _cached_labels(path, len(data))
            if labels is None:
                if features is None:
                    features = model.features(data, device)
                labels = kmeans_labels(features, k, seed)
                save_checkpoint(path, {"labels": labels, "k": k, "seed": seed, "model": str(model.identity)})
        columns.append(labels)
    return torch.stack(columns, dim=1) if columns else torch.zeros(len(data), 0, dtype=torch.int64)


def _cached_labels(path: Path, images: int) -> torch.Tensor | None:
    """The cached labels, or None to compute them: a file that does not load is moved aside."""
    if not path.is_file():
        return None
    try:
        labels = load_checkpoint(path)["labels"]
    except CheckpointError as err:
        aside = path.with_name(f"{path.name}.torn")
        os.replace(path, aside)
        warnings.warn(f"{err}; moved to {aside} and computed again", stacklevel=2)
        return None
    if labels.shape != (images,) or labels.dtype != torch.int64:
        raise CheckpointError(f"{path}: pseudo-labels for {tuple(labels.shape)} images, expected ({images},)")
    return labels
