"""Rebuild a shipped embedded foundation (trainables/shipped_foundations.py): only when its settings change.

    python -m trainables.build_shipped_foundation digits

pre-trains the data set's foundation at its default settings into its shipped folder and prints
the weights digest to write into shipped_foundations.SHIPPED. Another CPU builds other weights:
that is why the result is shipped instead of rebuilt.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from .data import load_dataset
from .foundation import load_foundation_folder, mae_pretrain
from .provenance import weights_digest
from .schema.foundation import resolve_embedded_config
from .shipped_foundations import FOLDER, SHIPPED


def build(dataset: str) -> tuple[Path, str]:
    """Pre-train `dataset`'s foundation at its default settings into its shipped folder; (folder, digest)."""
    name, _ = SHIPPED[dataset]
    cfg = resolve_embedded_config({"dataset": dataset})
    with tempfile.TemporaryDirectory() as scratch:
        built = Path(scratch) / name
        mae_pretrain(cfg, load_dataset(dataset, "train"), built, None)
        target = FOLDER / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(built, target)
    return target, weights_digest(load_foundation_folder(target))


def main() -> None:
    parser = argparse.ArgumentParser(description="rebuild a shipped embedded foundation")
    parser.add_argument("dataset", choices=sorted(SHIPPED))
    args = parser.parse_args()
    folder, digest = build(args.dataset)
    print(f"{folder}: weights digest {digest} (write it into SHIPPED)")


if __name__ == "__main__":
    main()
