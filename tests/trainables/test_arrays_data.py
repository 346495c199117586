"""The arrays layout: `<root>/<name>/{train,test}.npz`, for `arrays:<folder>` datasets and for a
registry dataset's splits; cifar2 the same from its arrays or from torchvision's files; the
evaluated points' order stratified by class. Real files written here (and the real CIFAR-2 arrays
where ../shared/data/cifar2 is there), no mocks."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.data import dataset_info, load_dataset, stratified_fraction, validation_split
from trainables.errors import ConfigError, DataNotFoundError
from trainables.evaluation import evaluation_order
from trainables.schema import validate_trial_config
from trainables.schema.data import ARRAYS, DATASETS, FILES, arrays_validation_images, missing_paths, split_layout
from trainables.schema.results import accuracy_column, count_column
from trainables.trial import run_trial

REPO = Path(__file__).resolve().parents[2]
SHARED_CIFAR2 = REPO.parent / "shared" / "data" / "cifar2"
# sha256 of x.tobytes() (NHWC uint8), from ../shared/data/cifar2/README.md.
CIFAR2_SHA256 = {
    "train": "efa3726277e5a4c2fd6852a93d1d7a8254ddfdfb458bf9359d5e398210977e53",
    "test": "34917ff9e5581ddecb87f76f3d81cbcfe5f8aa046b8b101f08a1e22d257b859f",
}
TOY_CLASSES = ["cat", "dog", "eel"]


def write_split(root: Path, folder: str, split: str, **arrays) -> Path:
    path = root / folder / f"{split}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def toy_arrays(n: int, size: int = 8, seed: int = 0, channels: int | None = 3) -> dict[str, np.ndarray]:
    """n images of 3 classes (labels 0, 1, 2, 0, ...); NHWC, NHW1 (channels=1) or NHW (None)."""
    rng = np.random.default_rng(seed)
    shape = (n, size, size) if channels is None else (n, size, size, channels)
    return {"x": rng.integers(0, 256, size=shape, dtype=np.uint8), "y": (np.arange(n) % 3).astype(np.int16)}


def nchw(x: np.ndarray) -> torch.Tensor:
    x = x if x.ndim == 4 else x[..., None]
    return torch.from_numpy(x).permute(0, 3, 1, 2).expand(-1, 3, -1, -1)


# --- arrays:<folder>: a user's own data ------------------------------------------------------------


def test_an_arrays_dataset_loads_its_images_labels_and_classes(tmp_path):
    train = write_split(tmp_path, "toy", "train", **toy_arrays(12), classes=np.array(TOY_CLASSES))
    gray = toy_arrays(5, seed=1, channels=None)  # one channel, NHW: repeated to three
    write_split(tmp_path, "toy", "test", **gray)
    loaded = load_dataset("arrays:toy", "train", root=tmp_path)
    with np.load(train) as saved:
        assert torch.equal(loaded.images, nchw(saved["x"])) and loaded.labels.tolist() == saved["y"].tolist()
    assert loaded.images.dtype == torch.uint8 and loaded.labels.dtype == torch.int64
    assert loaded.classes == TOY_CLASSES and loaded.num_classes == 3 and loaded.image_size == 8
    test = load_dataset("arrays:toy", "test", root=tmp_path)
    assert torch.equal(test.images, nchw(gray["x"])) and test.labels.tolist() == gray["y"].tolist()
    assert test.classes == TOY_CLASSES  # the train split's names, for a split that gives none
    info = dataset_info("arrays:toy", tmp_path)
    assert (info.num_classes, info.image_size, info.classes, info.eps) == (3, 8, tuple(TOY_CLASSES), 8 / 255)


def test_without_class_names_the_train_labels_give_the_class_count(tmp_path):
    write_split(tmp_path, "toy", "train", **toy_arrays(9, channels=1))
    write_split(tmp_path, "toy", "test", x=toy_arrays(2)["x"], y=np.array([0, 1], np.uint8))  # no class 2
    test = load_dataset("arrays:toy", "test", root=tmp_path)
    assert test.num_classes == 3 and test.classes == ["0", "1", "2"]


def test_an_arrays_name_is_accepted_without_its_files_and_keeps_its_validation_default_open(tmp_path):
    config = validate_trial_config({"data": {"dataset": "arrays:toy", "root": str(tmp_path / "nothing")}})
    assert config["data"]["validation_images"] is None  # a fifth of the train split, at most 1,000, when loaded
    assert "arrays:toy" not in DATASETS and DATASETS["arrays:toy"].eps == pytest.approx(8 / 255)
    assert DATASETS["arrays:toy"].num_classes is None and DATASETS["arrays:toy"].image_size is None
    assert [arrays_validation_images(n) for n in (9, 50, 4_999, 50_000)] == [1, 10, 999, 1_000]
    whole = load_dataset("digits2", "train")
    rest, held = validation_split(whole, None, seed=0)
    assert len(held) == len(whole) // 5 and len(rest) + len(held) == len(whole)
    for bad in ("arrays:", "arrays:../toy", "arrays:a/b", "arrays: toy"):
        with pytest.raises(ConfigError) as info:
            validate_trial_config({"data": {"dataset": bad}})
        assert info.value.field == "data.dataset" and "arrays:<folder>" in str(info.value)
        with pytest.raises(ConfigError, match="arrays:<folder>"):
            load_dataset(bad, "train", root=tmp_path)


def test_a_missing_arrays_file_is_one_line_naming_it(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("arrays:toy", "test", root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and message.startswith("arrays:toy: ")
    assert str(tmp_path / "toy" / "train.npz") in message and "toy/test.npz" in message


def test_a_trial_trains_and_is_evaluated_on_an_arrays_dataset(tmp_path, tiny_foundation_config, tiny_arch, cache_root):
    # Learnable: each class a different mean brightness.
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = np.clip(rng.normal(60 + 70 * y[:, None, None, None], 20, (60, 32, 32, 3)), 0, 255).astype(np.uint8)
    write_split(tmp_path / "data", "toy", "train", x=x[:45], y=y[:45], classes=np.array(TOY_CLASSES))
    write_split(tmp_path / "data", "toy", "test", x=x[45:], y=y[45:])
    config = {
        "data": {"dataset": "arrays:toy", "root": str(tmp_path / "data")},
        "foundation": tiny_foundation_config,
        "preprocessor": {"kind": "vanilla", "arch": tiny_arch, "epochs": 1},
        "head": {"epochs": 2},
        "evaluation": {"attacks": ["pgd10"], "n_examples": 9, "autoattack_examples": 0, "integrity": False},
    }
    result = run_trial(config, tmp_path / "trial")
    assert result["val_points"] == 45 // 5  # the arrays default: a fifth of the training split
    assert result["eps"] == pytest.approx(8 / 255)
    assert 0 <= result[accuracy_column("natural")] <= 1 and result[count_column("natural")] == 9


def _bad_toy(kind: str) -> dict:
    good = toy_arrays(6)
    return {
        "no y": {"x": good["x"]},
        "float x": {**good, "x": good["x"].astype(np.float32)},
        "not square": {**good, "x": good["x"][:, :, :6]},
        "four channels": {**good, "x": np.concatenate([good["x"], good["x"][..., :1]], axis=3)},
        "flat x": {**good, "x": good["x"].reshape(6, -1)},
        "float y": {**good, "y": good["y"].astype(np.float64)},
        "short y": {**good, "y": good["y"][:5]},
        "negative label": {**good, "y": good["y"] - 1},
        "class names 2-D": {**good, "classes": np.array([TOY_CLASSES])},
        "one class": {**good, "y": np.zeros(6, np.int64)},
        "label past classes": {**good, "classes": np.array(TOY_CLASSES[:2])},
    }[kind]


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("no y", "no array 'y' (it holds x)"),
        ("float x", "x is float32, not uint8"),
        ("not square", "8x6 images, not square"),
        ("four channels", "x has shape (6, 8, 8, 4)"),
        ("flat x", "x has shape (6, 192)"),
        ("float y", "y is float64, not an integer type"),
        ("short y", "x holds 6 images but y has shape (5,)"),
        ("negative label", "labels -1..1"),
        ("class names 2-D", "not a list of names"),
        ("one class", "1 class; a classifier needs at least 2"),
        ("label past classes", "labels 0..2, outside 0..1"),
    ],
)
def test_a_bad_arrays_file_is_one_line_naming_the_file_and_what_was_expected(tmp_path, kind, says):
    path = write_split(tmp_path, "toy", "train", **_bad_toy(kind))
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("arrays:toy", "train", root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"arrays:toy: {path}: ")
    assert says in message and "expected an .npz with x: uint8 images" in message


def test_unreadable_and_inconsistent_files_are_one_line(tmp_path):
    write_split(tmp_path, "toy", "train", **toy_arrays(6), classes=np.array(TOY_CLASSES))
    test, x = tmp_path / "toy" / "test.npz", toy_arrays(2)["x"]
    cases = {
        "not an .npz archive": b"not a zip file",
        "not an .npz archive (a zip of .npy files": x,  # a single .npy
        # An object array needs pickle to load: refused, never unpickled.
        "y unreadable": {"x": x, "y": np.array([0, "a"], dtype=object)},
        "labels 0..3, outside 0..2": {"x": x, "y": np.array([0, 3])},
        "differ from train.npz's": {**toy_arrays(3), "classes": np.array(["a", "b", "c"])},
        "16px images, arrays:toy's are 8px": toy_arrays(3, size=16),
    }
    for says, content in cases.items():
        if isinstance(content, bytes):
            test.write_bytes(content)
        else:
            with test.open("wb") as out:  # a file object: np.save would add .npy to a path
                np.save(out, content) if isinstance(content, np.ndarray) else np.savez(out, **content)
        with pytest.raises(DataNotFoundError) as info:
            load_dataset("arrays:toy", "test", root=tmp_path)
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"arrays:toy: {test}: ") and says in message, message


# --- a registry dataset's arrays files -------------------------------------------------------------


def test_a_registry_datasets_arrays_file_must_match_the_registry(tmp_path):
    good = {"x": toy_arrays(4, size=32)["x"], "y": np.array([0, 1, 1, 0])}
    path = write_split(tmp_path, "cifar2", "test", **good)
    assert split_layout("cifar2", tmp_path, "test") == ARRAYS and split_layout("cifar2", tmp_path, "train") == FILES
    # The arrays file stands for its split; the other split still needs torchvision's files.
    assert missing_paths("cifar2", tmp_path, ["test"]) == []
    assert missing_paths("cifar2", tmp_path, ["train"]) == [tmp_path / "cifar-10-batches-py"]
    loaded = load_dataset("cifar2", "test", root=tmp_path)
    assert loaded.classes == ["airplane", "automobile"] and loaded.labels.tolist() == [0, 1, 1, 0]
    for arrays, says in (
        ({**good, "x": toy_arrays(4, size=16)["x"]}, "16px images, cifar2's are 32px"),
        ({**good, "y": np.array([0, 1, 2, 0])}, "outside 0..1 (cifar2's 2 classes)"),
        ({**good, "classes": np.array(["a", "b", "c"])}, "classes holds 3 names, cifar2 has 2 classes"),
    ):
        np.savez(path, **arrays)
        with pytest.raises(DataNotFoundError) as info:
            load_dataset("cifar2", "test", root=tmp_path)
        assert says in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def _pickle(path: Path, obj: dict) -> None:
    # As tests/trainables/test_data.py writes them: protocol-2 pickles of str keys, read by torchvision.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def cifar10_files(root: Path, seed: int = 0) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    """torchvision's cifar-10-batches-py, small: 5 train batches of 6 rows, a test batch of 10, the
    ten classes interleaved; returns (train rows, labels, test rows, labels) in file order."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    train_rows, train_labels = [], []
    for k in range(1, 6):
        rows, labels = rng.integers(0, 256, (6, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, 6)]
        labels[k % 6] = k % 2  # some of both kept classes in every batch
        _pickle(folder / f"data_batch_{k}", {"batch_label": f"b{k}", "labels": labels, "data": rows, "filenames": []})
        train_rows.append(rows)
        train_labels += labels
    test_rows, test_labels = rng.integers(0, 256, (10, 3072), dtype=np.uint8), [1, 0, 5, 1, 9, 0, 1, 0, 2, 1]
    _pickle(folder / "test_batch", {"batch_label": "t", "labels": test_labels, "data": test_rows, "filenames": []})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": 6, "num_vis": 3072})
    return np.concatenate(train_rows), train_labels, test_rows, test_labels


def cifar2_arrays_from(rows: np.ndarray, labels: list[int]) -> dict[str, np.ndarray]:
    """The arrays layout of cifar2 as ../shared/data/cifar2 holds it: airplanes, then automobiles,
    each in CIFAR-10's order; NHWC."""
    labels = np.asarray(labels)
    keep = np.concatenate([np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)])
    x = rows[keep].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CIFAR rows are the R, G, B planes
    return {"x": np.ascontiguousarray(x), "y": labels[keep].astype(np.uint8), "class_index": np.arange(len(keep))}


def test_cifar2_from_torchvisions_files_and_from_its_arrays_is_identical(tmp_path):
    files, arrays = tmp_path / "files", tmp_path / "arrays"
    train_rows, train_labels, test_rows, test_labels = cifar10_files(files)
    write_split(arrays, "cifar2", "train", **cifar2_arrays_from(train_rows, train_labels))
    write_split(arrays, "cifar2", "test", **cifar2_arrays_from(test_rows, test_labels))
    for split in ("train", "test"):
        assert split_layout("cifar2", files, split) == FILES and split_layout("cifar2", arrays, split) == ARRAYS
        a, b = load_dataset("cifar2", split, root=files), load_dataset("cifar2", split, root=arrays)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.classes == b.classes
        assert a.classes == ["airplane", "automobile"] and a.labels.tolist() == sorted(a.labels.tolist())
    # So every seeded rule picks the same images from either source.
    a, b = load_dataset("cifar2", "train", root=files), load_dataset("cifar2", "train", root=arrays)
    assert torch.equal(stratified_fraction(a, 0.5, seed=3).images, stratified_fraction(b, 0.5, seed=3).images)
    assert torch.equal(validation_split(a, 4, seed=1)[1].images, validation_split(b, 4, seed=1)[1].images)
    assert torch.equal(evaluation_order(a.labels, 5, 7), evaluation_order(b.labels, 5, 7))
    # With both layouts in one root, the arrays files are what is read.
    write_split(files, "cifar2", "test", x=np.zeros((2, 32, 32, 3), np.uint8), y=np.array([1, 0]))
    assert load_dataset("cifar2", "test", root=files).labels.tolist() == [1, 0]


@pytest.mark.skipif(not SHARED_CIFAR2.is_dir(), reason=f"no real CIFAR-2 arrays at {SHARED_CIFAR2}")
@pytest.mark.parametrize(("split", "per_class"), [("train", 5_000), ("test", 1_000)])
def test_the_real_cifar2_arrays(split, per_class):
    data = load_dataset("cifar2", split, root=SHARED_CIFAR2.parent)
    assert len(data) == 2 * per_class and data.classes == ["airplane", "automobile"]
    assert data.labels.tolist() == [0] * per_class + [1] * per_class
    nhwc = data.images.permute(0, 2, 3, 1).contiguous().numpy()
    assert hashlib.sha256(nhwc.tobytes()).hexdigest() == CIFAR2_SHA256[split]


# --- the evaluated points: a seeded order, every prefix stratified ---------------------------------


def _worst_prefix_deviation(labels: torch.Tensor, order: torch.Tensor) -> float:
    """The largest |count of a class in a prefix - the prefix's length x the class's share|."""
    counts = torch.nn.functional.one_hot(labels[order]).double().cumsum(0)
    share = torch.bincount(labels).double() / len(labels)
    return float((counts - torch.arange(1, len(order) + 1).double()[:, None] * share).abs().max())


@pytest.mark.parametrize("sizes", [(1_000, 1_000), (30, 170), (40, 40, 40), (7, 7, 7, 7, 7, 7, 7, 7, 7, 7)])
def test_every_prefix_of_the_evaluation_order_is_stratified(sizes):
    # Stored class by class, as ../shared/data/cifar2 is: a plain prefix would be one class.
    labels = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    order = evaluation_order(labels, None, seed=0)
    assert sorted(order.tolist()) == list(range(len(labels)))  # n_examples null: every point
    assert _worst_prefix_deviation(labels, order) <= 1
    assert torch.equal(evaluation_order(labels, 50, seed=0), order[:50])


def test_the_evaluation_order_is_seeded():
    labels = torch.arange(300) % 3
    first = evaluation_order(labels, 100, seed=4)
    assert torch.equal(first, evaluation_order(labels.clone(), 100, seed=4))
    assert not torch.equal(first, evaluation_order(labels, 100, seed=5))
    assert set(first.tolist()) != set(evaluation_order(labels, 100, seed=5).tolist())
    counts = torch.bincount(labels[first])
    assert int(counts.max() - counts.min()) <= 1 and int(counts.sum()) == 100
    # Within a class the order is random: the chosen airplanes are not simply the first ones.
    members = first[labels[first] == 0]
    assert sorted(members.tolist()) != [3 * k for k in range(len(members))]
