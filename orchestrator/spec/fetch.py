"""`orchestrator prepare --fetch`: get the datasets and models a spec needs, on a machine with network.

Datasets come through the project's own loaders (trainables.data.download_files: torchvision's
downloads and md5 checks, Tiny-ImageNet's zip from cs231n) into a staging folder inside the data
root. What the loaders read is moved into place only once all of it is there, so a failed or
interrupted fetch leaves the data root as it was; a partial copy already in the root is never
overwritten (the check after the fetch still names what it lacks). Models come with
huggingface_hub's snapshot_download into the Hugging Face cache the trials read ($HF_HUB_CACHE),
which downloads each file to a temporary name first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from orchestrator.spec.needs import Need
from trainables.schema.data import SPLITS, missing_paths, required_paths

# Weights in formats no loader of ours reads: a hub repo often holds the same model 3-4 times.
SKIPPED_MODEL_FILES = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "*.ckpt", "*.mlmodel"]


def fetch(need: Need) -> str | None:
    """Fetch one input; None when it worked, else why not, in one line."""
    try:
        if need.kind == "dataset":
            return _fetch_dataset(need)
        _fetch_model(need.name)
    except Exception as err:  # noqa: BLE001 (network, disk, archive, hub: each is one line for the user)
        return one_line(err)
    return None


def one_line(err: Exception) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def _fetch_dataset(need: Need) -> str | None:
    from trainables.data import download_files  # torch: only when fetching

    root = Path(need.root)
    root.mkdir(parents=True, exist_ok=True)
    splits = [split for split in SPLITS if split in need.splits]
    staging = Path(tempfile.mkdtemp(prefix=f".fetching-{need.name}-", dir=root))
    try:
        for split in splits:
            try:
                download_files(need.name, split, staging)
            except Exception as err:  # noqa: BLE001 (as in fetch; its message names the staging folder, gone after this)
                return one_line(err).replace(str(staging), str(root))
        for top in dict.fromkeys(Path(path).parts[0] for path in required_paths(need.name, splits)):
            if not (root / top).exists():  # what is there already is never overwritten
                os.replace(staging / top, root / top)  # one rename: inside the root, one filesystem
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    still = [str(path.relative_to(root)) for path in missing_paths(need.name, root, splits)]
    if still:
        return (
            f"{root} already held an incomplete copy, left as it is (missing {', '.join(still)}); "
            "move it away and fetch again"
        )
    return None


def _fetch_model(name: str) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=name, ignore_patterns=SKIPPED_MODEL_FILES)
