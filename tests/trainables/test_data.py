"""Tests of trainables.data: small files in the real on-disk formats, loaded through torchvision."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from trainables.data import (
    DATASETS,
    ImageDataset,
    iterate_batches,
    load_dataset,
    stratified_fraction,
)
from trainables.errors import ConfigError, DataNotFoundError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _pickle(path, obj):
    # The real files are Python 2 pickles whose str keys torchvision reads back as str (it loads
    # with encoding="latin1"); a protocol-2 pickle of str keys loads the same way. Keys written as
    # bytes (b"data", as the CIFAR web page shows with encoding="bytes") would not.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _rows(rng, n):
    """CIFAR rows: 3072 bytes each, the R plane then G then B, each 32x32 row-major."""
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


@pytest.fixture
def cifar10_root(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    train_rows, train_labels = [], []
    for k in range(1, 6):
        rows, labels = _rows(rng, 3), [(3 * k + j) % 10 for j in range(3)]
        _pickle(
            folder / f"data_batch_{k}",
            {
                "batch_label": f"training batch {k} of 5",
                "labels": labels,
                "data": rows,
                "filenames": [f"img_{k}_{j}.png" for j in range(3)],
            },
        )
        train_rows.append(rows)
        train_labels += labels
    test_rows, test_labels = _rows(rng, 4), [0, 1, 2, 1]
    _pickle(
        folder / "test_batch",
        {"batch_label": "testing batch 1 of 1", "labels": test_labels, "data": test_rows, "filenames": ["t.png"] * 4},
    )
    meta = {"label_names": CIFAR10_NAMES, "num_cases_per_batch": 3, "num_vis": 3072}
    _pickle(folder / "batches.meta", meta)
    return tmp_path, np.concatenate(train_rows), train_labels, test_rows, test_labels


def test_cifar10_round_trip(cifar10_root):
    root, train_rows, train_labels, test_rows, test_labels = cifar10_root
    train = load_dataset("cifar10", "train", root=root)
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == train_labels
    assert train.classes == CIFAR10_NAMES and train.num_classes == 10 and train.image_size == 32
    assert torch.equal(train.images, torch.from_numpy(train_rows.reshape(-1, 3, 32, 32)))
    test = load_dataset("cifar10", "test", root=str(root))
    assert test.labels.tolist() == test_labels
    assert torch.equal(test.images, torch.from_numpy(test_rows.reshape(-1, 3, 32, 32)))
    floats = test.float_images(torch.tensor([2, 0]))
    assert floats.dtype == torch.float32 and floats.shape == (2, 3, 32, 32)
    assert torch.allclose(floats[1] * 255, test.images[0].float())


def test_cifar2_keeps_airplane_and_automobile(cifar10_root):
    root, train_rows, train_labels, _, test_labels = cifar10_root
    train = load_dataset("cifar2", "train", root=root)
    # Airplanes, then automobiles, each in the files' order: the order of cifar2's arrays files.
    keep = [i for i, y in enumerate(train_labels) if y == 0] + [i for i, y in enumerate(train_labels) if y == 1]
    assert train.labels.tolist() == [train_labels[i] for i in keep] == sorted(train.labels.tolist())
    assert set(train.labels.tolist()) == {0, 1}
    assert train.classes == ["airplane", "automobile"] and train.num_classes == 2
    assert torch.equal(train.images, torch.from_numpy(train_rows[keep].reshape(-1, 3, 32, 32)))
    assert load_dataset("cifar2", "test", root=root).labels.tolist() == sorted(y for y in test_labels if y < 2)


def test_cifar100(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    fine = [f"class_{i}" for i in range(100)]
    rows, labels = _rows(rng, 5), [0, 99, 42, 7, 99]
    _pickle(
        folder / "train",
        {
            "filenames": ["x"] * 5,
            "batch_label": "training batch 1 of 1",
            "fine_labels": labels,
            "coarse_labels": [0] * 5,
            "data": rows,
        },
    )
    _pickle(
        folder / "test",
        {
            "filenames": ["x"] * 2,
            "batch_label": "testing batch 1 of 1",
            "fine_labels": [3, 4],
            "coarse_labels": [0, 0],
            "data": _rows(rng, 2),
        },
    )
    _pickle(folder / "meta", {"fine_label_names": fine, "coarse_label_names": [f"c{i}" for i in range(20)]})
    train = load_dataset("cifar100", "train", root=tmp_path)
    assert train.labels.tolist() == labels and train.classes == fine and train.num_classes == 100
    assert torch.equal(train.images, torch.from_numpy(rows.reshape(-1, 3, 32, 32)))
    assert load_dataset("cifar100", "test", root=tmp_path).labels.tolist() == [3, 4]


def test_svhn_maps_label_10_to_digit_0(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(32, 32, 3, 4), dtype=np.uint8)  # (H, W, C, N) as in the real .mat
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [9], [10]], dtype=np.uint8)})
    train = load_dataset("svhn", "train", root=tmp_path)
    assert train.labels.tolist() == [0, 1, 9, 0]
    assert train.images.shape == (4, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.equal(train.images, torch.from_numpy(x.transpose(3, 2, 0, 1).copy()))
    with pytest.raises(DataNotFoundError, match="test_32x32.mat"):
        load_dataset("svhn", "test", root=tmp_path)


def test_stl10_labelled_splits(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    images = {}
    for split, labels in (("train", [1, 10, 5]), ("test", [2, 3])):
        chw = rng.integers(0, 256, size=(len(labels), 3, 96, 96), dtype=np.uint8)
        # STL-10 stores each channel column-major: the file is (N, 3, W, H).
        (folder / f"{split}_X.bin").write_bytes(chw.transpose(0, 1, 3, 2).tobytes())
        (folder / f"{split}_y.bin").write_bytes(np.array(labels, dtype=np.uint8).tobytes())
        images[split] = chw
    train = load_dataset("stl10", "train", root=tmp_path)  # no unlabeled_X.bin needed
    assert train.labels.tolist() == [0, 9, 4] and train.labels.dtype == torch.int64
    assert train.images.shape == (3, 3, 96, 96) and train.classes == names
    assert torch.equal(train.images, torch.from_numpy(images["train"]))
    test = load_dataset("stl10", "test", root=tmp_path)
    assert test.labels.tolist() == [1, 2] and torch.equal(test.images, torch.from_numpy(images["test"]))


def _save(path, array, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


def test_imagenette_image_folder(tmp_path):
    train = tmp_path / "imagenette2" / "train"
    red = np.zeros((250, 300, 3), np.uint8)
    red[..., 0] = 200
    blue = np.zeros((400, 260, 3), np.uint8)
    blue[..., 2] = 180
    _save(train / "n01440764" / "a.png", red, "PNG")
    _save(train / "n01440764" / "b.png", red, "PNG")
    _save(train / "n02102040" / "c.JPEG", blue, "JPEG")
    _save(tmp_path / "imagenette2" / "val" / "n02102040" / "d.JPEG", blue, "JPEG")
    ds = load_dataset("imagenette", "train", root=tmp_path)
    assert ds.images.shape == (3, 3, 224, 224) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0, 0, 1] and ds.classes == ["n01440764", "n02102040"]
    assert (ds.images[0, 0] == 200).all() and (ds.images[0, 1:] == 0).all()  # PNG: exact
    assert (ds.images[2, 2].float() - 180).abs().max() <= 3  # JPEG: close
    test = load_dataset("imagenette", "test", root=tmp_path)  # the test split is val/
    assert test.images.shape == (1, 3, 224, 224) and test.labels.tolist() == [0]
    assert DATASETS["imagenette"].eps == pytest.approx(4 / 255)


def test_tinyimagenet_resizes_and_centre_crops(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    # 128 wide, 64 high: shorter side is already 64, so the crop keeps the middle 64 columns.
    stripes = np.zeros((64, 128, 3), np.uint8)
    stripes[:, :32, 0] = 255
    stripes[:, 32:96, 1] = 255
    stripes[:, 96:, 2] = 255
    _save(base / "train" / "n01443537" / "images" / "n01443537_0.png", stripes, "PNG")  # real nesting
    grey = np.full((64, 64, 3), 90, np.uint8)
    _save(base / "train" / "n01629819" / "images" / "n01629819_0.JPEG", grey, "JPEG")
    small = np.full((32, 32, 3), 30, np.uint8)  # upsampled to 64
    _save(base / "val" / "n01443537" / "val_0.JPEG", small, "JPEG")
    train = load_dataset("tinyimagenet", "train", root=tmp_path)
    assert train.images.shape == (2, 3, 64, 64) and train.labels.tolist() == [0, 1]
    centre = train.images[0]
    assert (centre[1] == 255).all() and (centre[0] == 0).all() and (centre[2] == 0).all()
    test = load_dataset("tinyimagenet", "test", root=tmp_path)
    assert test.images.shape == (1, 3, 64, 64) and test.classes == ["n01443537"]


def test_digits_embedded_split():
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    for ds in (train, test):
        assert ds.images.dtype == torch.uint8 and ds.images.shape[1:] == (3, 32, 32)
        assert torch.equal(ds.images[:, 0], ds.images[:, 2])  # grey replicated to 3 channels
        assert ds.classes == [str(d) for d in range(10)] and ds.image_size == 32
    assert len(train) + len(test) == 1797 and len(test) == 450
    assert torch.bincount(test.labels).min() >= 40  # stratified: every digit is in the test split
    again = load_dataset("digits", "train", root="/nonexistent")  # root is ignored
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
    # The splits partition load_digits(): 8x8 in 0..16, scaled to [0, 1], bilinear to 32x32,
    # round(x * 255). Compared as multisets of (pixels, label) since the order is the loader's.
    bunch = load_digits()
    small = torch.as_tensor(bunch.images, dtype=torch.float32).div(16).unsqueeze(1)
    big = torch.nn.functional.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    expected = big.mul(255).round().to(torch.uint8)[:, 0]

    def keys(images, labels):
        return sorted(bytes(img.numpy()) + bytes([y]) for img, y in zip(images, labels.tolist()))

    got = keys(torch.cat([train.images, test.images])[:, 0], torch.cat([train.labels, test.labels]))
    assert got == keys(expected, torch.as_tensor(bunch.target))


def test_digits2_is_the_two_class_subset():
    full = load_dataset("digits", "train")
    two = load_dataset("digits2", "train")
    assert set(two.labels.tolist()) == {0, 1} and two.classes == ["0", "1"] and two.num_classes == 2
    mask = full.labels < 2
    assert torch.equal(two.images, full.images[mask]) and torch.equal(two.labels, full.labels[mask])
    assert set(load_dataset("digits2", "test").labels.tolist()) == {0, 1}


def _indexed_dataset(counts):
    """Images whose first two bytes encode their row index, so subsets reveal what they kept."""
    labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
    n = len(labels)
    images = torch.zeros((n, 3, 4, 4), dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) % 256
    images[:, 0, 0, 1] = torch.arange(n) // 256
    return ImageDataset("toy", images, labels, [str(c) for c in range(len(counts))])


def _rows_of(ds):
    return (ds.images[:, 0, 0, 0].long() + 256 * ds.images[:, 0, 0, 1].long()).tolist()


def test_stratified_fraction_keeps_class_proportions():
    ds = _indexed_dataset([300, 50, 10, 1])
    sub = stratified_fraction(ds, 0.2, seed=7)
    assert torch.bincount(sub.labels).tolist() == [60, 10, 2, 1]  # at least one of the singleton class
    rows = _rows_of(sub)
    assert rows == sorted(rows) and len(set(rows)) == len(rows)
    assert all(ds.labels[r] == y for r, y in zip(rows, sub.labels.tolist()))
    assert _rows_of(stratified_fraction(ds, 0.2, seed=7)) == rows
    assert _rows_of(stratified_fraction(ds, 0.2, seed=8)) != rows
    assert stratified_fraction(ds, 1, seed=7) is ds
    assert len(stratified_fraction(ds, 1.0, seed=3)) == len(ds)


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "a", float("nan"), None])
def test_stratified_fraction_rejects_bad_fractions(bad):
    with pytest.raises(ConfigError) as info:
        stratified_fraction(_indexed_dataset([5, 5]), bad, seed=0)
    assert info.value.field == "data.data_fraction" and "data.data_fraction" in str(info.value)


def test_iterate_batches():
    batches = list(iterate_batches(10, 4, shuffle=False))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(b.dtype == torch.int64 for b in batches)
    assert [len(b) for b in iterate_batches(10, 4, shuffle=False, drop_last=True)] == [4, 4]
    a = torch.cat(list(iterate_batches(10, 3, shuffle=True, generator=torch.Generator().manual_seed(5))))
    b = torch.cat(list(iterate_batches(10, 3, shuffle=True, generator=torch.Generator().manual_seed(5))))
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(10)) and a.tolist() != list(range(10))


@pytest.mark.parametrize(
    "name, looked_for",
    [
        ("cifar10", "cifar-10-batches-py"),
        ("svhn", "train_32x32.mat"),
        ("imagenette", "imagenette2/train"),
    ],
)
def test_missing_data_is_one_clear_line(tmp_path, name, looked_for):
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(name, "train", root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{name}:")
    assert str(tmp_path / looked_for) in message


def test_missing_file_in_present_folder_is_named(cifar10_root):
    root = cifar10_root[0]
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataNotFoundError, match="data_batch_3"):
        load_dataset("cifar10", "train", root=root)


def test_unreadable_files_are_a_user_error(cifar10_root):
    root = cifar10_root[0]
    # Re-pickled with bytes keys (as read with encoding="bytes"): torchvision's parser finds no "data".
    _pickle(root / "cifar-10-batches-py" / "data_batch_2", {b"data": _rows(np.random.default_rng(0), 1)})
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("cifar10", "train", root=root)
    assert "\n" not in str(info.value) and str(root) in str(info.value)
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"truncated")
    with pytest.raises(DataNotFoundError, match="cifar10: could not load CIFAR-10"):
        load_dataset("cifar10", "test", root=root)


def test_data_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CROPD_DATA_ROOT", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "stl10_binary")):
        load_dataset("stl10", "test")


def test_unknown_dataset_and_split():
    with pytest.raises(ConfigError) as info:
        load_dataset("cifar1", "train")
    assert info.value.field == "data.dataset"
    assert "did you mean 'cifar10'" in str(info.value) and "tinyimagenet" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_dataset("digits", "validation")
    assert info.value.field == "data.split"


def test_registry():
    assert {"digits", "digits2", "cifar2", "cifar10", "cifar100", "svhn", "stl10", "imagenette", "tinyimagenet"} == set(
        DATASETS
    )
    assert DATASETS["cifar10"].eps == pytest.approx(8 / 255) and DATASETS["stl10"].image_size == 96
    assert DATASETS["tinyimagenet"].num_classes == 200 and "val" in DATASETS["tinyimagenet"].how_to_get
    # Either layout, for every dataset read from files.
    for name, info in DATASETS.items():
        assert not info.required or f"{name}/train.npz and {name}/test.npz" in info.how_to_get
