"""What a trial's `data:` section may say: the dataset registry and the section's fields.

Free of torch, so the command line and the results readers can use it without paying for torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fields import Field, integer, number, optional, text

_NEEDS_NETWORK = "or set download: true (needs network)"


@dataclass(frozen=True)
class DatasetInfo:
    title: str
    num_classes: int
    image_size: int
    eps: float  # default L-inf attack budget for this resolution
    how_to_get: str


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("scikit-learn digits", 10, 32, 8 / 255, "embedded; nothing to get"),
    "digits2": DatasetInfo("scikit-learn digits 0/1", 2, 32, 8 / 255, "embedded; nothing to get"),
    "cifar2": DatasetInfo(
        "CIFAR-10", 2, 32, 8 / 255, f"put torchvision's cifar-10-python files there {_NEEDS_NETWORK}"
    ),
    "cifar10": DatasetInfo(
        "CIFAR-10", 10, 32, 8 / 255, f"put torchvision's cifar-10-python files there {_NEEDS_NETWORK}"
    ),
    "cifar100": DatasetInfo(
        "CIFAR-100", 100, 32, 8 / 255, f"put torchvision's cifar-100-python files there {_NEEDS_NETWORK}"
    ),
    "svhn": DatasetInfo(
        "SVHN", 10, 32, 8 / 255, f"put SVHN's train_32x32.mat and test_32x32.mat there {_NEEDS_NETWORK}"
    ),
    "stl10": DatasetInfo(
        "STL-10", 10, 96, 8 / 255, f"extract stl10_binary.tar.gz there (stl10_binary/*.bin) {_NEEDS_NETWORK}"
    ),
    "imagenette": DatasetInfo(
        "Imagenette",
        10,
        224,
        4 / 255,
        f"extract fast.ai's imagenette2.tgz there (imagenette2/{{train,val}}/<wnid>/*.JPEG) {_NEEDS_NETWORK}",
    ),
    "tinyimagenet": DatasetInfo(
        "Tiny ImageNet",
        200,
        64,
        8 / 255,
        "extract tiny-imagenet-200.zip there and move val/images/* into val/<wnid>/ folders "
        "following val/val_annotations.txt (no automatic download)",
    ),
}


DATA_SCHEMA = {
    "dataset": Field("digits2", f"a dataset name: one of {sorted(DATASETS)}", text),
    "root": Field(None, "a local data folder, or null for $CROPD_DATA_ROOT / ./data", optional(text)),
    "data_fraction": Field(1.0, "a number in (0, 1]", number(0, 1, low_open=True)),
    "seed": Field(0, "an integer", integer()),
    "preprocessor_dataset": Field(
        None, "a dataset name to train the pre-processor on (transfer, Table 3), or null", optional(text)
    ),
}
