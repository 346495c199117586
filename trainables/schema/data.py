"""What a trial's `data:` section may say: the dataset registry and the section's fields.

Free of torch, so the command line and the results readers can use it without paying for torch.
The registry also says which files each dataset's loader reads (`required`): the loaders in
trainables/data.py and `orchestrator prepare` check the same list, so they cannot disagree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from .fields import Field, integer, number, optional, text

# No trial setting downloads: a sweep's data is fetched before it runs (orchestrator prepare).
_NEEDS_NETWORK = "or fetch it with `orchestrator prepare SPEC --fetch` (needs network)"

SPLITS = ("train", "test")
DEFAULT_ROOT = "./data"
ROOT_ENV = "CROPD_DATA_ROOT"


@dataclass(frozen=True)
class DatasetInfo:
    title: str
    num_classes: int
    image_size: int
    eps: float  # default L-inf attack budget for this resolution
    how_to_get: str
    # Per split, what its loader reads, relative to the data root, in the order it checks them: a
    # path ending in "/" must be a folder, any other a file. Empty: embedded, nothing on disk.
    required: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _both_splits(*paths: str) -> dict[str, tuple[str, ...]]:
    return {split: paths for split in SPLITS}


# torchvision's file lists (CIFAR10/CIFAR100 train_list + test_list + meta, SVHN split_list,
# STL10's labelled files): its loaders check every file of both splits whichever split is asked.
# tests/trainables/test_data.py compares them with torchvision's own.
_CIFAR10_FILES = _both_splits(
    "cifar-10-batches-py/",
    *(f"cifar-10-batches-py/data_batch_{k}" for k in range(1, 6)),
    "cifar-10-batches-py/test_batch",
    "cifar-10-batches-py/batches.meta",
)
_CIFAR100_FILES = _both_splits(
    "cifar-100-python/", "cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"
)
# Only the labelled files: the 2.5 GB unlabeled_X.bin is never read for train/test.
_STL10_FILES = _both_splits(
    "stl10_binary/",
    *(f"stl10_binary/{f}" for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")),
)


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("scikit-learn digits", 10, 32, 8 / 255, "embedded; nothing to get"),
    "digits2": DatasetInfo("scikit-learn digits 0/1", 2, 32, 8 / 255, "embedded; nothing to get"),
    "cifar2": DatasetInfo(
        "CIFAR-10",
        2,
        32,
        8 / 255,
        f"put torchvision's cifar-10-python files there {_NEEDS_NETWORK}",
        _CIFAR10_FILES,
    ),
    "cifar10": DatasetInfo(
        "CIFAR-10",
        10,
        32,
        8 / 255,
        f"put torchvision's cifar-10-python files there {_NEEDS_NETWORK}",
        _CIFAR10_FILES,
    ),
    "cifar100": DatasetInfo(
        "CIFAR-100",
        100,
        32,
        8 / 255,
        f"put torchvision's cifar-100-python files there {_NEEDS_NETWORK}",
        _CIFAR100_FILES,
    ),
    # Like torchvision, the .mat files sit directly in the root (no sub-folder), one per split.
    "svhn": DatasetInfo(
        "SVHN",
        10,
        32,
        8 / 255,
        f"put SVHN's train_32x32.mat and test_32x32.mat there {_NEEDS_NETWORK}",
        {"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)},
    ),
    "stl10": DatasetInfo(
        "STL-10",
        10,
        96,
        8 / 255,
        f"extract stl10_binary.tar.gz there (stl10_binary/*.bin) {_NEEDS_NETWORK}",
        _STL10_FILES,
    ),
    "imagenette": DatasetInfo(
        "Imagenette",
        10,
        224,
        4 / 255,
        f"extract fast.ai's imagenette2.tgz there (imagenette2/{{train,val}}/<wnid>/*.JPEG) {_NEEDS_NETWORK}",
        # An image folder per split (its test split is val/); its class folders are what it reads.
        {"train": ("imagenette2/train/",), "test": ("imagenette2/val/",)},
    ),
    "tinyimagenet": DatasetInfo(
        "Tiny ImageNet",
        200,
        64,
        8 / 255,
        "extract tiny-imagenet-200.zip there and move val/images/* into val/<wnid>/ folders "
        f"following val/val_annotations.txt {_NEEDS_NETWORK}",
        {"train": ("tiny-imagenet-200/train/",), "test": ("tiny-imagenet-200/val/",)},
    ),
}


def data_root(root: str | Path | None = None) -> Path:
    """The folder datasets are read from: `root` (data.root), else $CROPD_DATA_ROOT, else ./data."""
    return Path(root if root is not None else os.environ.get(ROOT_ENV, DEFAULT_ROOT)).expanduser().absolute()


def required_paths(name: str, splits: Iterable[str] = SPLITS) -> tuple[str, ...]:
    """What dataset `name` needs on disk for `splits`, relative to the data root, each once, in check order."""
    required = DATASETS[name].required
    return tuple(dict.fromkeys(path for split in splits for path in required.get(split, ())))


def missing_paths(name: str, base: Path, splits: Iterable[str] = SPLITS) -> list[Path]:
    """The required paths absent under `base`, in check order; nothing inside a folder already
    missing (the folder is the likelier mistake, and its files would only repeat it)."""
    missing: list[Path] = []
    for relative in required_paths(name, splits):
        path = Path(base) / relative
        if any(path.is_relative_to(gone) for gone in missing):
            continue
        there = path.is_dir() if relative.endswith("/") else path.is_file()
        if not there:
            missing.append(path)
    return missing


# Images in each split (torchvision's; Imagenette's train / val; the embedded digits' fixed split),
# for estimates made before anything is loaded (orchestrator plan, bench/gpu_hours.py).
SPLIT_SIZES: dict[str, tuple[int, int]] = {
    "digits": (1_347, 450),
    "digits2": (269, 91),
    "cifar2": (10_000, 2_000),
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
    "svhn": (73_257, 26_032),
    "stl10": (5_000, 8_000),
    "imagenette": (9_469, 3_925),
    "tinyimagenet": (100_000, 10_000),
}

# Training images held out as the validation split when data.validation_images is null: what
# selection (objectives, schedulers, a report's "best") is measured on, never the test set. About a
# fifth of a small training split, 500-1,000 images of a large one: a 95% interval of about +-3
# points at 1,000, while attacking them after every trial stays a fraction of the test evaluation.
VALIDATION_IMAGES: dict[str, int] = {
    "digits": 250,
    "digits2": 60,
    "cifar2": 1_000,
    "cifar10": 1_000,
    "cifar100": 1_000,
    "svhn": 1_000,
    "stl10": 500,
    "imagenette": 500,
    "tinyimagenet": 1_000,
}

DATA_SCHEMA = {
    "dataset": Field("digits2", f"a dataset name: one of {sorted(DATASETS)}", text),
    "root": Field(None, "a local data folder, or null for $CROPD_DATA_ROOT / ./data", optional(text)),
    "data_fraction": Field(1.0, "a number in (0, 1]", number(0, 1, low_open=True)),
    "seed": Field(0, "an integer", integer()),
    # The validation split: held out of the training split before data_fraction draws from the
    # rest, stratified by class, drawn by validation_seed alone, so every configuration and seed of
    # a sweep is selected on the same images and never trains on them.
    "validation_images": Field(
        None,
        "null (the dataset's default, VALIDATION_IMAGES) or an integer >= 0 (0: no validation split)",
        optional(integer(0)),
    ),
    "validation_seed": Field(0, "an integer", integer()),
    "preprocessor_dataset": Field(
        None, "a dataset name to train the pre-processor on (transfer, Table 3), or null", optional(text)
    ),
}
