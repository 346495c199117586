"""Datasets held in memory as uint8 tensors, the paper's augmentations, and index batching.

`digits` is embedded (scikit-learn) so a trial runs with nothing on disk; the rest are files: a
split of a registry dataset from the arrays layout (`<root>/<name>/<split>.npz`) when that file is
there, else from torchvision's formats; an `arrays:<folder>` dataset from `<root>/<folder>/<split>.npz`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.datasets as tvd
from torchvision.transforms import v2

from .errors import ConfigError, DataNotFoundError
from .schema.data import (
    ARRAYS,
    DATASETS,
    SPLITS,
    DatasetInfo,
    arrays_folder,
    arrays_path,
    arrays_validation_images,
    data_root,
    is_dataset_name,
    missing_paths,
    split_layout,
)

# Fixed so every process, machine and rerun sees the same digits train/test split.
_DIGITS_SPLIT_SEED = 0
_DIGITS_SIZE = 32


@dataclass
class ImageDataset:
    """A whole split in memory: uint8 images (N, 3, H, W) and int64 labels (N,)."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            got = f"{self.images.dtype} {tuple(self.images.shape)}"
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {got}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            got = f"{self.labels.dtype} {tuple(self.labels.shape)}"
            raise ValueError(f"labels must be int64 (N,), got {got}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return self.images.shape[2]

    def float_images(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """float32 in [0, 1] of the selected rows only, so a whole split never sits in memory as float."""
        images = self.images if index is None else self.images[index]
        return images.float().div_(255)

    def subset(self, indices: torch.Tensor | Sequence[int] | np.ndarray) -> "ImageDataset":
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageDataset(self.name, self.images[index], self.labels[index], list(self.classes))


# --- loading -----------------------------------------------------------------------------------


def load_dataset(name: str, split: str, root: str | Path | None = None, download: bool = False) -> ImageDataset:
    """Load a whole split by registry or `arrays:<folder>` name; `root` defaults to $CROPD_DATA_ROOT, else ./data.

    A registry dataset's split comes from its arrays file when that is there, else from its
    registry files (fetched first with `download`)."""
    if not is_dataset_name(name):
        raise ConfigError("data.dataset", _one_of(sorted(DATASETS), name), name)
    if split not in SPLITS:
        raise ConfigError("data.split", "'train' or 'test'", split)
    if name in ("digits", "digits2"):
        return _load_digits(name, split)
    base = data_root(root)
    if split_layout(name, base, split) == ARRAYS:
        return _load_arrays(name, split, base)
    return _LOADERS[name](name, split, base, download)


def _one_of(names: list[str], got: object) -> str:
    text = "one of " + ", ".join(names) + ", or arrays:<folder> (your own arrays files under the data root)"
    close = difflib.get_close_matches(str(got).lower(), names, n=1) if isinstance(got, str) else []
    return f"{text} (did you mean {close[0]!r}?)" if close else text


def _missing(name: str, base: Path, looked_for: Path) -> DataNotFoundError:
    info = DATASETS[name]
    return DataNotFoundError(f"{name}: no {info.title} under {base} (looked for {looked_for}); {info.how_to_get}")


def _check_present(name: str, split: str, base: Path) -> None:
    """Refuse a split whose files (the registry's list, the one `orchestrator prepare` checks) are
    not all there, naming the first absent one, before torchvision says something vaguer."""
    missing = missing_paths(name, base, (split,))
    if missing:
        raise _missing(name, base, missing[0])


def _build(name: str, base: Path, make: Callable[[], object]) -> object:
    """Run a torchvision constructor, turning its errors (download, parse) into one user line."""
    try:
        return make()
    except (RuntimeError, OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as err:
        reason = f"{type(err).__name__}: {' '.join(str(err).split())}"  # one line, whatever err says
        title = DATASETS[name].title
        raise DataNotFoundError(f"{name}: could not load {title} from {base} ({reason})") from err


def _load_digits(name: str, split: str) -> ImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    # Split all ten classes first, then filter, so digits2's split is a subset of digits' split.
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.25, random_state=_DIGITS_SPLIT_SEED, stratify=bunch.target
    )
    index = torch.as_tensor(np.sort(train_idx if split == "train" else test_idx))
    if name == "digits2":
        index = index[labels[index] < 2]
    small = torch.as_tensor(bunch.images[index.numpy()], dtype=torch.float32).div(16).unsqueeze(1)
    # Bilinear upsampling is a convex combination, so values stay in [0, 1]; no antialias needed.
    big = F.interpolate(small, size=(_DIGITS_SIZE, _DIGITS_SIZE), mode="bilinear", align_corners=False)
    images = big.mul(255).round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    classes = [str(c) for c in range(DATASETS[name].num_classes)]
    return ImageDataset(name, images, labels[index], classes)


# torchvision checks md5 sums of the official files. Files re-packed by a user, or the small
# real-format files the tests write, fail that check, so without download these subclasses only
# require the files to exist (md5 None means "exists" to torchvision's check_integrity) and keep
# torchvision's own parsing. download=True uses the stock classes, which download and verify.


def _no_md5(files: list[list[str]]) -> list[list]:
    return [[f, None] for f, _ in files]


class _CIFAR10Files(tvd.CIFAR10):
    train_list = _no_md5(tvd.CIFAR10.train_list)
    test_list = _no_md5(tvd.CIFAR10.test_list)
    meta = {**tvd.CIFAR10.meta, "md5": None}


class _CIFAR100Files(tvd.CIFAR100):
    train_list = _no_md5(tvd.CIFAR100.train_list)
    test_list = _no_md5(tvd.CIFAR100.test_list)
    meta = {**tvd.CIFAR100.meta, "md5": None}


class _SVHNFiles(tvd.SVHN):
    def _check_integrity(self) -> bool:
        return os.path.isfile(os.path.join(self.root, self.filename))


class _STL10Files(tvd.STL10):
    def _check_integrity(self) -> bool:
        # The registry's labelled files: the 2.5 GB unlabeled_X.bin is never read for train/test.
        return not missing_paths("stl10", Path(self.root))


def _load_cifar(name: str, split: str, base: Path, download: bool) -> ImageDataset:
    """torchvision's CIFAR files, in their order; cifar2 airplanes first, then automobiles."""
    if name == "cifar100":
        stock, files_only = tvd.CIFAR100, _CIFAR100Files
    else:
        stock, files_only = tvd.CIFAR10, _CIFAR10Files
    if not download:
        _check_present(name, split, base)
    cls = stock if download else files_only
    ds = _build(name, base, lambda: cls(str(base), train=split == "train", download=download))
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # torchvision holds NHWC
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    classes = list(ds.classes)
    if name == "cifar2":
        keep = torch.nonzero(labels < 2).flatten()  # airplane, automobile
        # Each class in CIFAR-10's order, airplanes first: the order of cifar2's arrays files
        # (../shared/data/cifar2), so every seeded subset picks the same images from either source.
        keep = keep[torch.argsort(labels[keep], stable=True)]
        images, labels, classes = images[keep], labels[keep], list(DATASETS[name].classes)
    return ImageDataset(name, images, labels, classes)


def _load_svhn(name: str, split: str, base: Path, download: bool) -> ImageDataset:
    # Like torchvision, the .mat files sit directly in root (no sub-folder).
    if not download:
        _check_present(name, split, base)
    cls = tvd.SVHN if download else _SVHNFiles
    ds = _build(name, base, lambda: cls(str(base), split=split, download=download))
    # torchvision already maps SVHN's label 10 to digit 0 and transposes X to NCHW.
    images = torch.from_numpy(np.ascontiguousarray(ds.data))
    labels = torch.as_tensor(ds.labels, dtype=torch.int64)
    return ImageDataset(name, images, labels, [str(d) for d in range(10)])


def _load_stl10(name: str, split: str, base: Path, download: bool) -> ImageDataset:
    if not download:
        _check_present(name, split, base)
    cls = tvd.STL10 if download else _STL10Files
    ds = _build(name, base, lambda: cls(str(base), split=split, download=download))
    images = torch.from_numpy(np.ascontiguousarray(ds.data))
    labels = torch.as_tensor(ds.labels.astype(np.int64))  # uint8 on disk, 1..10 shifted to 0..9
    return ImageDataset(name, images, labels, list(getattr(ds, "classes", DATASETS[name].classes)))


def _load_folder(name: str, split: str, base: Path, download: bool) -> ImageDataset:
    folder = _folder_present(name, split, base, download)
    size = DATASETS[name].image_size
    # Shorter side to `size`, then the centre square: the usual ImageNet-style evaluation crop.
    to_tensor = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    ds = _build(name, base, lambda: tvd.ImageFolder(str(folder), transform=to_tensor))
    images = torch.empty((len(ds), 3, size, size), dtype=torch.uint8)  # filled in place: no 2x peak
    for i in range(len(ds)):
        images[i] = _build(name, base, lambda: ds[i][0])  # ds[i] decodes; a bad file is a user error
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return ImageDataset(name, images, labels, list(ds.classes))


def _folder_present(name: str, split: str, base: Path, download: bool) -> Path:
    """The image folder of a folder dataset's split, fetched first if `download` and absent;
    raises (naming what is missing) unless it is there."""
    # The registry names one image folder per split (the test split is val/).
    (relative,) = DATASETS[name].required[split]
    folder = base / relative
    if download and not folder.is_dir():
        _download_folder(name, folder, base)
    _check_present(name, split, base)
    return folder


def _download_folder(name: str, folder: Path, base: Path) -> None:
    if name == "imagenette":
        if not hasattr(tvd, "Imagenette"):
            raise DataNotFoundError(f"{name}: this torchvision has no Imagenette download; {DATASETS[name].how_to_get}")
        _build(name, base, lambda: tvd.Imagenette(str(base), split=folder.name, size="full", download=True))
    elif name == "tinyimagenet":
        _build(name, base, lambda: _download_tinyimagenet(base))


TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINYIMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"  # the zip's, as other Tiny-ImageNet loaders check it
# A mirror (or a file:// URL) instead of cs231n's: its md5 is not checked, as it may be repacked.
TINYIMAGENET_URL_ENV = "CROPD_TINYIMAGENET_URL"


def _download_tinyimagenet(base: Path) -> None:
    """cs231n's zip into `base` (torchvision's download and md5 check), then val/ as class folders.

    torchvision has no Tiny-ImageNet class. The zip's val/ holds images/ and val_annotations.txt
    (file, wnid, box per line); ImageFolder reads val/<wnid>/*.JPEG, the layout train/ has already."""
    from torchvision.datasets.utils import download_and_extract_archive

    url = os.environ.get(TINYIMAGENET_URL_ENV) or TINYIMAGENET_URL
    md5 = TINYIMAGENET_MD5 if url == TINYIMAGENET_URL else None
    download_and_extract_archive(url, str(base), filename="tiny-imagenet-200.zip", md5=md5, remove_finished=True)
    sort_tinyimagenet_val(base / "tiny-imagenet-200" / "val")


def sort_tinyimagenet_val(val: Path) -> None:
    """Move val/images/<file> to val/<wnid>/<file> following val/val_annotations.txt; a sorted val/ is left alone."""
    images = val / "images"
    if not images.is_dir():
        return
    for line in (val / "val_annotations.txt").read_text().splitlines():
        if not line.strip():
            continue
        file_name, wnid = line.split("\t")[:2]
        (val / wnid).mkdir(exist_ok=True)
        (images / file_name).rename(val / wnid / file_name)
    images.rmdir()  # fails (a user line, through _build) if an image had no annotation


# --- the arrays layout -----------------------------------------------------------------------------
# One .npz per split, read with allow_pickle=False: x, uint8 images (N, H, H, 3) RGB, or one channel
# as (N, H, H, 1) or (N, H, H), repeated to 3; y, N integer labels 0..C-1; optionally classes, the
# C class names. A registry dataset's files must have its class count and image size; an arrays:
# dataset's train.npz sets them (C: len(classes), else max(y) + 1) for both of its splits.

ARRAYS_EXPECTED = (
    "an .npz with x: uint8 images (N, H, H, 3), (N, H, H, 1) or (N, H, H), and y: N integer labels "
    "0..C-1, optionally classes: C names (the arrays layout)"
)


def dataset_info(name: str, root: str | Path | None = None) -> DatasetInfo:
    """`name`'s registry entry; an arrays: dataset's completed from its train.npz (class names,
    class count, image size), reading only its labels, class names and the images' header."""
    info = DATASETS[name]
    if arrays_folder(name) is None:
        return info
    base = data_root(root)
    path = _arrays_file(name, "train", base)
    with _npz(name, path) as archive:
        shape = _checked_image_shape(name, path, *_header(name, path, archive, "x"))
        names = _class_names(name, path, archive)
        if names is None:
            labels = _checked_labels(name, path, _array(name, path, archive, "y"), shape[0], None)
            names = [str(c) for c in range(int(labels.max()) + 1)]
    if len(names) < 2:
        raise _bad(name, path, f"{len(names)} class; a classifier needs at least 2")
    return dataclasses.replace(info, num_classes=len(names), image_size=shape[1], classes=tuple(names))


def _load_arrays(name: str, split: str, base: Path) -> ImageDataset:
    info = dataset_info(name, base)
    path = _arrays_file(name, split, base)
    with _npz(name, path) as archive:
        x, y = _array(name, path, archive, "x"), _array(name, path, archive, "y")
        names = _class_names(name, path, archive)
    shape = _checked_image_shape(name, path, x.shape, x.dtype)
    if shape[1] != info.image_size:
        raise _bad(name, path, f"x holds {shape[1]}px images, {name}'s are {info.image_size}px")
    labels = _checked_labels(name, path, y, shape[0], info.num_classes)
    classes = _split_classes(name, path, names, info)
    # NHWC to NCHW; one channel repeated to three by the copy contiguous() makes anyway.
    images = torch.from_numpy(x.reshape(shape)).permute(0, 3, 1, 2).expand(-1, 3, -1, -1).contiguous()
    return ImageDataset(name, images, labels, classes)


def _split_classes(name: str, path: Path, names: list[str] | None, info: DatasetInfo) -> list[str]:
    """The split's class names: the file's, checked against the dataset's, else the dataset's."""
    expected = list(info.classes) or [str(c) for c in range(info.num_classes)]
    if names is None:
        return expected
    if len(names) != info.num_classes:
        raise _bad(name, path, f"classes holds {len(names)} names, {name} has {info.num_classes} classes")
    if arrays_folder(name) is not None and names != expected:
        raise _bad(name, path, f"classes {names} differ from train.npz's {expected}")
    return names


def _arrays_file(name: str, split: str, base: Path) -> Path:
    path = base / arrays_path(name, split)
    if not path.is_file():
        raise _missing(name, base, path)
    return path


def _bad(name: str, path: Path, problem: str) -> DataNotFoundError:
    return DataNotFoundError(f"{name}: {path}: {problem}; expected {ARRAYS_EXPECTED}")


@contextlib.contextmanager
def _npz(name: str, path: Path) -> Iterator[np.lib.npyio.NpzFile]:
    """The open archive; a file that is no .npz is one line (never unpickled: allow_pickle=False)."""
    if not zipfile.is_zipfile(path):  # else np.load reads a .npy, or suggests unpickling the file
        raise _bad(name, path, "not an .npz archive (a zip of .npy files, as numpy.savez writes)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise _bad(name, path, f"unreadable ({_one_line(err)})") from err
    with archive:
        yield archive


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def _array(name: str, path: Path, archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    _array_present(name, path, archive, key)
    try:
        return archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # e.g. an object array
        raise _bad(name, path, f"{key} unreadable ({_one_line(err)})") from err


def _header(name: str, path: Path, archive: np.lib.npyio.NpzFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of one array from its .npy header, without reading the array."""
    _array_present(name, path, archive, key)
    try:
        with archive.zip.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(member)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise _bad(name, path, f"{key} unreadable ({_one_line(err)})") from err
    return shape, dtype


def _array_present(name: str, path: Path, archive: np.lib.npyio.NpzFile, key: str) -> None:
    if key not in archive.files:
        raise _bad(name, path, f"no array {key!r} (it holds {', '.join(archive.files) or 'nothing'})")


def _checked_image_shape(name: str, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, int, int, int]:
    """x's shape as (N, H, H, channels), channels 1 or 3; else the one line saying what is wrong."""
    if dtype != np.uint8:
        raise _bad(name, path, f"x is {dtype}, not uint8")
    full = tuple(shape) + (1,) if len(shape) == 3 else tuple(shape)
    if len(full) != 4 or full[3] not in (1, 3):
        raise _bad(name, path, f"x has shape {tuple(shape)}")
    if full[1] != full[2]:
        raise _bad(name, path, f"x holds {full[1]}x{full[2]} images, not square ones")
    if full[0] == 0 or full[1] == 0:
        raise _bad(name, path, f"x holds no images (shape {tuple(shape)})")
    return full


def _checked_labels(name: str, path: Path, y: np.ndarray, count: int, num_classes: int | None) -> torch.Tensor:
    """y as int64, checked: integers, one per image, in 0..num_classes-1 (>= 0 when None)."""
    if not np.issubdtype(y.dtype, np.integer):
        raise _bad(name, path, f"y is {y.dtype}, not an integer type")
    if y.shape != (count,):
        raise _bad(name, path, f"x holds {count} images but y has shape {y.shape}")
    low, high = int(y.min()), int(y.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        allowed = "0..C-1" if num_classes is None else f"0..{num_classes - 1} ({name}'s {num_classes} classes)"
        raise _bad(name, path, f"y holds labels {low}..{high}, outside {allowed}")
    return torch.from_numpy(y.astype(np.int64))


def _class_names(name: str, path: Path, archive: np.lib.npyio.NpzFile) -> list[str] | None:
    """The file's `classes` as strings; None when it has none."""
    if "classes" not in archive.files:
        return None
    names = _array(name, path, archive, "classes")
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise _bad(name, path, f"classes is {names.dtype} of shape {names.shape}, not a list of names")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names.tolist()]


def download_files(name: str, split: str, root: str | Path | None = None) -> None:
    """Put dataset `name`'s files for `split` under the data root from the network, checked as
    `download: true` checks them (torchvision's md5 sums), without reading a folder dataset's
    images. `orchestrator prepare --fetch` calls it; an embedded dataset needs nothing."""
    if name not in _LOADERS:
        return
    base = data_root(root)
    if _LOADERS[name] is _load_folder:
        _folder_present(name, split, base, download=True)
    else:
        _LOADERS[name](name, split, base, True)


_LOADERS: dict[str, Callable[[str, str, Path, bool], ImageDataset]] = {
    "cifar2": _load_cifar,
    "cifar10": _load_cifar,
    "cifar100": _load_cifar,
    "svhn": _load_svhn,
    "stl10": _load_stl10,
    "imagenette": _load_folder,
    "tinyimagenet": _load_folder,
}


# --- subsets, augmentation, batching ------------------------------------------------------------


def data_fingerprint(data: ImageDataset) -> str:
    """Hash of the training images and labels themselves (a data_fraction subset differs)."""
    digest = hashlib.sha256()
    digest.update(data.images.contiguous().numpy().tobytes())
    digest.update(data.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def stratified_fraction(dataset: ImageDataset, fraction: float, seed: int) -> ImageDataset:
    """A seeded per-class subset of `fraction` of the data (paper Table 9), at least 1 per class."""
    valid = isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 < fraction <= 1
    if not valid:  # NaN fails the range test too
        raise ConfigError("data.data_fraction", "a number in (0, 1]", fraction)
    if fraction == 1:
        return dataset
    generator = torch.Generator().manual_seed(int(seed))
    chosen = []
    for c in torch.unique(dataset.labels).tolist():  # sorted, so the draw order is fixed
        members = torch.nonzero(dataset.labels == c).flatten()
        keep = max(1, round(fraction * len(members)))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:keep]])
    return dataset.subset(torch.sort(torch.cat(chosen)).values)


def validation_split(dataset: ImageDataset, count: int | None, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """(the rest, the validation split): `count` images held out of `dataset`, per class in proportion
    to its size (largest remainders), drawn by `seed`; (dataset, an empty split) when count is 0.
    None (an arrays: dataset's default): a fifth of `dataset`, at most 1,000 (arrays_validation_images).

    The held-out images are what a sweep selects on; nothing of a trial trains on them.
    """
    if count is None:
        count = arrays_validation_images(len(dataset))
    if count == 0:
        return dataset, dataset.subset(torch.zeros(0, dtype=torch.long))
    classes = torch.unique(dataset.labels).tolist()  # sorted, so the draw order is fixed
    if count > len(dataset) - len(classes):
        raise ConfigError(
            "data.validation_images",
            f"at most {len(dataset) - len(classes)} (the {len(dataset)} training images less one per class)",
            count,
        )
    sizes = torch.tensor([int((dataset.labels == c).sum()) for c in classes], dtype=torch.float64)
    # Largest-remainder apportionment: the shares sum to `count` exactly, each class keeps >= 1 image.
    exact = sizes * count / sizes.sum()
    shares = exact.floor().long()
    for index in torch.argsort(exact - shares, descending=True, stable=True)[: count - int(shares.sum())]:
        shares[index] += 1
    shares = torch.minimum(shares, sizes.long() - 1)
    generator = torch.Generator().manual_seed(int(seed) + 104_729)  # not data_fraction's stream
    held = []
    for c, share in zip(classes, shares.tolist()):
        members = torch.nonzero(dataset.labels == c).flatten()
        held.append(members[torch.randperm(len(members), generator=generator)[:share]])
    held_index = torch.sort(torch.cat(held)).values
    kept = torch.ones(len(dataset), dtype=torch.bool)
    kept[held_index] = False
    return dataset.subset(torch.nonzero(kept).flatten()), dataset.subset(held_index)


def iterate_batches(
    n: int,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield LongTensor index batches over range(n), optionally in a seeded random order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        batch = order[start : start + batch_size]
        if drop_last and len(batch) < batch_size:
            return
        yield batch
