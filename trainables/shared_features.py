"""Foundation features of a fixed image set, computed once and shared by every trial that needs them.

foundation(preprocessor(x)) of the clean training images (a clean head trains on them) and of the
clean test images (natural accuracy) depend only on the two models' weights and the images. Trials
that share a pre-processor artifact and a foundation, say a clean and a robust head behind the same
CRoPD, or heads with other settings, need the same features: the first trial computes them and
publishes them in the artifact store (<artifacts>/features/<key>/), the others load them.

The key holds the two configs, a digest of the weights (a foundation cache rebuilt with other
weights must not reuse old features), the images' fingerprint, the device kind (GPU and CPU
features differ in the last bits) and VERSION. Publication is the pre-processors' (published.py):
one builder at a time under a lock, the folder appears complete by atomic rename with a manifest of
digests, and a damaged one is moved aside and computed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import torch

from .artifacts import artifact_lock, atomic_write_json, config_hash, load_checkpoint, save_checkpoint
from .data import ImageDataset, data_fingerprint
from .published import published_dir, reusable

# Bumped whenever a code change alters what the features are, so stale ones are not reused.
VERSION = 1
FILE = "features.pt"
# Set to 0 to give every trial its own pre-processor and features (to measure what sharing saves).
SHARE_ENV = "CROPD_SHARE_STAGES"


def sharing_enabled() -> bool:
    return os.environ.get(SHARE_ENV, "1") != "0"


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, shape, dtype, bytes), in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        # Flattened first: a 0-d tensor (batch norm's num_batches_tracked) cannot be viewed as bytes.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:32]


class SharedFeatures:
    """The features of one (pre-processor, foundation) pair, per image set, shared under `root`.

    With `root` None every call computes (nothing is stored)."""

    def __init__(self, root: Path | None, identity: dict[str, Any], models: torch.nn.Module, device: str):
        self.root = Path(root) / "features" if root is not None else None
        self.identity = {
            **identity,
            "weights": weights_digest(models) if root is not None else None,
            "device": torch.device(device).type,
            "version": VERSION,
        }
        self.device = device
        self.reused: dict[str, bool] = {}  # per image set name: loaded rather than computed

    def key(self, images: ImageDataset) -> str:
        return self._key(data_fingerprint(images))

    def _key(self, fingerprint: str) -> str:
        return config_hash({**self.identity, "images": fingerprint})

    def of(self, name: str, images: ImageDataset, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The features of `images` (called `name` in `reused`): loaded if published, else
        computed and published."""
        self.reused[name] = False
        if self.root is None:
            return compute()
        fingerprint = data_fingerprint(images)  # hashes every image: once per call
        folder = self.root / self._key(fingerprint)
        with artifact_lock(folder):  # one builder; the others wait, then load what it published
            if reusable(folder, FILE):
                self.reused[name] = True
                return load_checkpoint(folder / FILE)["features"].to(self.device)
            features = compute()
            with published_dir(folder) as scratch:
                save_checkpoint(scratch / FILE, {"features": features.detach().cpu()})
                record = {"identity": self.identity, "name": name, "images": fingerprint}
                atomic_write_json(scratch / "features.json", {**record, "shape": list(features.shape)})
            return features
