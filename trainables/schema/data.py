"""What a trial's `data:` section may say: the dataset registry and the section's fields.

Free of torch, so the command line and the results readers can use it without paying for torch.
The registry also says which files each dataset's loader reads (`required`): the loaders in
trainables/data.py and `orchestrator prepare` check the same list, so they cannot disagree.

Two on-disk layouts. A registry dataset's split is read from the arrays layout,
`<root>/<name>/<split>.npz` (x: uint8 images, y: labels; trainables/data.py checks them), when
that file is there, else from the registry's files (torchvision's formats). A user's own dataset
is named `arrays:<folder>` and read from `<root>/<folder>/{train,test}.npz`; its class count and
image size are known only once its train.npz is read, so its entry here leaves them None.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from .fields import Field, integer, number, optional, text

# No trial setting downloads: a sweep's data is fetched before it runs (orchestrator prepare).
_NEEDS_NETWORK = "or fetch it with `orchestrator prepare SPEC --fetch` (needs network)"

SPLITS = ("train", "test")
DEFAULT_ROOT = "./data"
ROOT_ENV = "CROPD_DATA_ROOT"


# The layouts a split is read from (split_layout).
ARRAYS, FILES, EMBEDDED = "arrays", "torchvision files", "embedded"
ARRAYS_PREFIX = "arrays:"
# One folder directly under the data root: no separators, so a name cannot point outside it.
_ARRAYS_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# An arrays: dataset's validation split when data.validation_images is null: a fifth of its
# training split, at most this many (VALIDATION_IMAGES' rule for the registry's small and large
# splits), counted when the split is loaded, since its size is not known before.
ARRAYS_VALIDATION_CAP = 1_000


@dataclass(frozen=True)
class DatasetInfo:
    title: str
    num_classes: int | None  # None: an arrays: dataset's, known once its train.npz is read
    image_size: int | None  # likewise
    eps: float  # default L-inf attack budget for this resolution
    how_to_get: str
    # Per split, what its loader reads, relative to the data root, in the order it checks them: a
    # path ending in "/" must be a folder, any other a file. Empty: embedded, nothing on disk.
    required: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Class names, for the arrays files that do not name them; empty: "0".."C-1".
    classes: tuple[str, ...] = ()


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


def _get(name: str, files: str) -> str:
    """How to get a file-based registry dataset: either layout, or the fetch."""
    return f"put the arrays files {name}/train.npz and {name}/test.npz there, or {files}, {_NEEDS_NETWORK}"


_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
_DIGIT_CLASSES = tuple(str(d) for d in range(10))


class _Registry(dict):
    """The registry by name. An `arrays:<folder>` name is no key (`in DATASETS` stays the registry)
    but still looks up, to its entry built on demand, so code reading DATASETS[name].eps serves both."""

    def __missing__(self, name: str) -> DatasetInfo:
        folder = arrays_folder(name)
        if folder is None:
            raise KeyError(name)
        paths = {split: (f"{folder}/{split}.npz",) for split in SPLITS}
        how = f"write {folder}/train.npz and {folder}/test.npz there (the arrays layout; nothing to fetch)"
        return DatasetInfo("arrays files", None, None, 8 / 255, how, paths)


DATASETS: dict[str, DatasetInfo] = _Registry(
    {
        "digits": DatasetInfo("scikit-learn digits", 10, 32, 8 / 255, "embedded; nothing to get"),
        "digits2": DatasetInfo("scikit-learn digits 0/1", 2, 32, 8 / 255, "embedded; nothing to get"),
        "cifar2": DatasetInfo(
            "CIFAR-10",
            2,
            32,
            8 / 255,
            _get("cifar2", "torchvision's cifar-10-python files (cifar-10-batches-py/)"),
            _CIFAR10_FILES,
            _CIFAR10_CLASSES[:2],
        ),
        "cifar10": DatasetInfo(
            "CIFAR-10",
            10,
            32,
            8 / 255,
            _get("cifar10", "torchvision's cifar-10-python files (cifar-10-batches-py/)"),
            _CIFAR10_FILES,
            _CIFAR10_CLASSES,
        ),
        "cifar100": DatasetInfo(
            "CIFAR-100",
            100,
            32,
            8 / 255,
            _get("cifar100", "torchvision's cifar-100-python files (cifar-100-python/)"),
            _CIFAR100_FILES,
        ),
        # Like torchvision, the .mat files sit directly in the root (no sub-folder), one per split.
        "svhn": DatasetInfo(
            "SVHN",
            10,
            32,
            8 / 255,
            _get("svhn", "SVHN's train_32x32.mat and test_32x32.mat"),
            {"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)},
            _DIGIT_CLASSES,
        ),
        "stl10": DatasetInfo(
            "STL-10",
            10,
            96,
            8 / 255,
            _get("stl10", "stl10_binary.tar.gz extracted (stl10_binary/*.bin)"),
            _STL10_FILES,
            STL10_CLASSES,
        ),
        "imagenette": DatasetInfo(
            "Imagenette",
            10,
            224,
            4 / 255,
            _get("imagenette", "fast.ai's imagenette2.tgz extracted (imagenette2/{train,val}/<wnid>/*.JPEG)"),
            # An image folder per split (its test split is val/); its class folders are what it reads.
            {"train": ("imagenette2/train/",), "test": ("imagenette2/val/",)},
        ),
        "tinyimagenet": DatasetInfo(
            "Tiny ImageNet",
            200,
            64,
            8 / 255,
            _get(
                "tinyimagenet",
                "tiny-imagenet-200.zip extracted with val/images/* moved into val/<wnid>/ folders "
                "following val/val_annotations.txt",
            ),
            {"train": ("tiny-imagenet-200/train/",), "test": ("tiny-imagenet-200/val/",)},
        ),
    }
)

DATASET_NAMES = f"one of {sorted(DATASETS)}, or arrays:<folder> (your own arrays files under the data root)"


def arrays_folder(name: object) -> str | None:
    """The folder under the data root that an `arrays:<folder>` name reads; None for any other name."""
    if isinstance(name, str) and name.startswith(ARRAYS_PREFIX):
        folder = name[len(ARRAYS_PREFIX) :]
        if _ARRAYS_FOLDER.fullmatch(folder):
            return folder
    return None


def is_dataset_name(name: object) -> bool:
    """A registry name or a well-formed `arrays:<folder>` name (whether its files exist or not)."""
    return (isinstance(name, str) and name in DATASETS) or arrays_folder(name) is not None


def arrays_path(name: str, split: str) -> str | None:
    """Where `name`'s split would be in the arrays layout, relative to the data root; None when
    embedded (nothing is read from disk)."""
    folder = arrays_folder(name)
    if folder is None and not DATASETS[name].required:
        return None
    return f"{folder or name}/{split}.npz"


def split_layout(name: str, base: Path, split: str) -> str:
    """What the loader reads `split` of `name` from: ARRAYS for an arrays: name, and for a registry
    dataset whose `<base>/<name>/<split>.npz` is a file; else FILES (the registry's), or EMBEDDED."""
    if arrays_folder(name) is not None:
        return ARRAYS
    if not DATASETS[name].required:
        return EMBEDDED
    return ARRAYS if (Path(base) / arrays_path(name, split)).is_file() else FILES


def arrays_validation_images(train_images: int) -> int:
    """An arrays: dataset's default validation split: a fifth of its training split, at most 1,000."""
    return min(ARRAYS_VALIDATION_CAP, train_images // 5)


def data_root(root: str | Path | None = None) -> Path:
    """The folder datasets are read from: `root` (data.root), else $CROPD_DATA_ROOT, else ./data."""
    return Path(root if root is not None else os.environ.get(ROOT_ENV, DEFAULT_ROOT)).expanduser().absolute()


def required_paths(name: str, splits: Iterable[str] = SPLITS) -> tuple[str, ...]:
    """What dataset `name`'s registry layout needs on disk for `splits` (torchvision's files; an
    arrays: dataset's .npz files), relative to the data root, each once, in check order."""
    required = DATASETS[name].required
    return tuple(dict.fromkeys(path for split in splits for path in required.get(split, ())))


def read_paths(name: str, base: Path, splits: Iterable[str] = SPLITS) -> tuple[str, ...]:
    """What the loader reads for `splits` under `base`, each once: per split its arrays file when
    that is there (split_layout), else the registry's files."""
    paths = (
        (arrays_path(name, split),) if split_layout(name, base, split) == ARRAYS else required_paths(name, [split])
        for split in splits
    )
    return tuple(dict.fromkeys(path for group in paths for path in group))


def missing_paths(name: str, base: Path, splits: Iterable[str] = SPLITS) -> list[Path]:
    """The paths the loader would read for `splits` (read_paths) absent under `base`, in check
    order: for a registry dataset, nothing for a split given as arrays, else its torchvision files.
    Nothing inside a folder already missing (the folder is the likelier mistake, and its files
    would only repeat it)."""
    missing: list[Path] = []
    for relative in read_paths(name, base, splits):
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
# An arrays: dataset has no entry: its default is arrays_validation_images, when it is loaded.
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
    "dataset": Field("digits2", f"a dataset name: {DATASET_NAMES}", text),
    "root": Field(None, "a local data folder, or null for $CROPD_DATA_ROOT / ./data", optional(text)),
    "data_fraction": Field(1.0, "a number in (0, 1]", number(0, 1, low_open=True)),
    "seed": Field(0, "an integer", integer()),
    # The validation split: held out of the training split before data_fraction draws from the
    # rest, stratified by class, drawn by validation_seed alone, so every configuration and seed of
    # a sweep is selected on the same images and never trains on them.
    "validation_images": Field(
        None,
        "null (the dataset's default, VALIDATION_IMAGES; an arrays: dataset's: a fifth of its training split, "
        "at most 1,000) or an integer >= 0 (0: no validation split)",
        optional(integer(0)),
    ),
    "validation_seed": Field(0, "an integer", integer()),
    "preprocessor_dataset": Field(
        None, "a dataset name to train the pre-processor on (transfer, Table 3), or null", optional(text)
    ),
}
