"""Size an embedded foundation by reconstruction loss, a linear probe's clean accuracy and time; no robust number.

The CIFAR-2 foundation's settings (trainables/schema/foundation.py EMBEDDED_PRESETS) were chosen
with this: it pre-trains one candidate (settings of `foundation.embedded` as key=value) into
--out, then prints one JSON line: its pre-training time, final training loss, the MAE
reconstruction loss on the validation split (the model's own 75% random masking, seeded), and the
clean accuracy of a logistic-regression probe on its frozen features, fitted on the rest of the
training split and scored on the validation split. The test split is never read; no attack runs.

    python bench/foundation_probe.py --root ../shared/data dataset=cifar2 epochs=30
    python bench/foundation_probe.py --root ../shared/data dataset=cifar2 hidden_size=192 num_hidden_layers=6

The validation split is the sweep's (data.validation_images of the data set, validation_seed 0);
the foundation itself is pre-trained on the whole training split without labels, as a sweep's is.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="*", help="foundation.embedded settings as key=value (YAML values)")
    parser.add_argument("--root", default=None, help="the data root (default: $CROPD_DATA_ROOT, else ./data)")
    parser.add_argument("--out", type=Path, default=Path("runs/foundation_probe"), help="the cache root it builds into")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--probe-images", type=int, default=4000, help="training images the linear probe fits on")
    args = parser.parse_args()

    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from transformers import ViTMAEForPreTraining

    from trainables.data import load_dataset, stratified_fraction, validation_split
    from trainables.foundation import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        load_foundation_folder,
        pretrain_embedded_foundation,
        quiet_transformers,
    )
    from trainables.provenance import compute_identity, weights_digest
    from trainables.schema.data import VALIDATION_IMAGES
    from trainables.schema.foundation import resolve_embedded_config

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {key: yaml.safe_load(value) for key, _, value in (text.partition("=") for text in args.settings)}
    cfg = resolve_embedded_config(settings)
    started = time.perf_counter()
    folder = pretrain_embedded_foundation(cfg, cache_root=args.out, data_root=args.root)
    built_s = time.perf_counter() - started
    record = json.loads((folder / "pretraining.json").read_text())

    train = load_dataset(cfg["dataset"], "train", root=args.root)
    rest, validation = validation_split(train, VALIDATION_IMAGES[cfg["dataset"]], 0)
    fraction = min(1.0, args.probe_images / len(rest))
    probe_train = stratified_fraction(rest, fraction, seed=0)
    foundation = load_foundation_folder(folder)

    def features(data) -> np.ndarray:
        with torch.no_grad():
            return torch.cat(
                [foundation(data.float_images(slice(i, i + 256))) for i in range(0, len(data), 256)]
            ).numpy()

    scaler = StandardScaler().fit(features(probe_train))
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(features(probe_train)), probe_train.labels.numpy())
    probe_accuracy = float(probe.score(scaler.transform(features(validation)), validation.labels.numpy()))

    with quiet_transformers():
        mae = ViTMAEForPreTraining.from_pretrained(folder).eval()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    generator, losses = torch.Generator().manual_seed(0), []
    with torch.no_grad():
        for i in range(0, len(validation), 256):
            pixels = (validation.float_images(slice(i, i + 256)) - mean) / std
            noise = torch.rand(len(pixels), (cfg["image_size"] // cfg["patch_size"]) ** 2, generator=generator)
            losses.append(mae(pixel_values=pixels, noise=noise).loss.item() * len(pixels))
    print(
        json.dumps(
            {
                "settings": settings,
                "pretraining_s": round(record["time_s"], 1),
                "built_here_s": round(built_s, 1),
                "final_train_loss": round(record["final_loss"], 4),
                "validation_reconstruction_loss": round(sum(losses) / len(validation), 4),
                "probe_clean_accuracy_validation": round(probe_accuracy, 4),
                "probe_images": len(probe_train),
                "validation_images": len(validation),
                "weights_digest": weights_digest(foundation),
                "params_encoder": sum(p.numel() for p in foundation.parameters()),
                **compute_identity("cpu"),
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
