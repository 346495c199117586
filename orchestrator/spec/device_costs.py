"""A stage's cost on a device kind from measured per-image rates: `plan --device h200`'s second input.

`plan` estimates each stage from earlier sweeps' recorded stage times (estimate.py); for a device
no sweep has run on yet, these measured rates stand in: images per second of each part of the
pipeline at the paper's sizes, measured once per device kind and shipped beside this module
(measured/<device>.json; today the H200's, 2026-11-26, fp32, random weights at the real sizes, by
bench/gpu.py and bench/gpu_costs.py; bench/gpu_hours.py prints a spec's plan from them).

The model, and where it is rough:
- pre-training, pre-processor and fine-tuning: epochs x training images / measured images per
  second at the nearest measured batch size. ARAE has no measurement of its own: the encoder-only
  step (PGD-10 plus an update) stands in for it. Tiny-ImageNet's 64 px pre-processor with patch 4
  has paper32's 256 tokens and is costed as paper32.
- a clean head on a frozen foundation: one forward pass over the training and test images (the
  features); its 150 epochs on cached features are seconds. Trials that share those features are
  each costed the pass: an upper bound.
- a robust head: every epoch runs PGD-10 through the whole pipeline (measured: the lambda_ablation
  robust head step).
- evaluation: each PGD attack over the test points at the measured PGD-20 rate scaled by its steps;
  points that break early stop early in our attack, so this is an upper bound. AutoAttack
  (standard): APGD-CE's 100 steps on every point, then APGD-T, FAB-T (9 targets x 100 steps) and
  Square (5,000 queries, about a third of a step each) on the points still robust; with half of
  the points robust about 88 PGD-20 batches' worth per point. The robust fraction is not known
  before the run: the roughest line, and the largest.
- ResNet-18 foundations (Table 10, AdvCL): their heads and attacks are not measured. They are
  derived from the RoCL step (PGD-7 on three views: about ten ResNet-18 forward-backward passes
  per image) and the paper32 CRoPD step (about three auto-encoder passes), and marked "derived".
- the embedded foundation (digits, CIFAR-2 at 32 px) and a dataset of arrays are not costed: no
  rate was measured for them; their stages keep no estimate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from trainables.schema.data import SPLIT_SIZES
from trainables.schema.results import ATTACKS

MEASURED = Path(__file__).with_name("measured")
DEVICES = tuple(sorted(path.stem for path in MEASURED.glob("*.json")))
AUTOATTACK_PGD20_EQUIVALENTS = (100 + 0.5 * (900 + 900 + 5000 / 3)) / 20  # see the module docstring
NOT_COSTED_FOUNDATIONS = ("embedded",)


@lru_cache(maxsize=None)
def _measurements(device: str) -> dict[str, Any]:
    return json.loads((MEASURED / f"{device}.json").read_text())


@dataclass
class Rates:
    """Measured images per second (fp32) of one device kind, looked up by part and settings."""

    device: str
    rows: list[dict] = field(default_factory=list)

    @classmethod
    def of_device(cls, device: str) -> Rates:
        return cls(device, [row for row in _measurements(device)["rows"] if "error" not in row])

    @property
    def source(self) -> str:
        measured = _measurements(self.device)
        return f"{measured['machine'].get('gpu', self.device)} rates, {measured['measured']}"

    def of(self, part: str, batch: int | None = None, **match) -> float:
        candidates = [
            r
            for r in self.rows
            if r["part"] == part
            and r.get("precision", "fp32") == "fp32"
            and all(r.get(k) == v for k, v in match.items())
        ]
        if not candidates:
            raise KeyError(f"no fp32 measurement of {part} {match}")
        if batch is not None:  # the nearest measured batch size (ratio, not difference)
            candidates.sort(key=lambda r: abs((r.get("batch") or batch) / batch - 1))
        return candidates[0]["images_per_s"]

    # --- ViT-MAE-large pipelines (measured) ---
    def preprocessor(self, kind: str, arch: dict, batch: int) -> float:
        big = arch["patch_size"] >= 14  # paper224
        if kind in ("cropd", "vanilla"):
            return self.of("cropd_paper224_step", batch) if big else self.of("cropd_step", batch)
        if kind in ("arae", "encoder_only"):
            return self.of("encoder_only_step", arch="paper224" if big else "paper32")
        raise KeyError(kind)

    def pgd20(self, kind: str, image_size: int) -> float:
        if image_size >= 224:
            return self.of("pgd20_224", preprocessor="vae" if kind == "vae" else "cropd_paper224")
        return self.of("pgd20_vit_mae_large_224", 64)

    def robust_head(self) -> float:
        step = next(r for r in self.rows if r["part"] == "stage_memory" and r["stage"].startswith("robust head"))
        return step["batch"] / step["seconds"]

    # --- ResNet-18 pipelines (derived, see the module docstring) ---
    def resnet_pass(self) -> float:
        """Images/s of one forward-backward pass through paper32 + ResNet-18 at 32 px."""
        resnet = self.of("rocl_resnet18_step", 256) * 10
        autoencoder = self.of("cropd_step", 32) * 3
        return 1 / (1 / resnet + 1 / autoencoder)


def stage_seconds(c: dict, rates: Rates) -> dict[str, float]:
    """Seconds of each stage of one validated trial config on `rates`' device, by stage name:
    pretraining, preprocessor, features / head (a '(derived)' suffix where derived, not measured),
    evaluation, autoattack (rough). {} for what is not costed (see the module docstring)."""
    dataset, fraction = c["data"]["dataset"], c["data"]["data_fraction"]
    foundation, pre, head = c["foundation"], c["preprocessor"], c["head"]
    if dataset not in SPLIT_SIZES or foundation["name"] in NOT_COSTED_FOUNDATIONS:
        return {}
    n_train = SPLIT_SIZES[dataset][0] * fraction
    n_test = c["evaluation"]["n_examples"] or SPLIT_SIZES[dataset][1]
    image_size = 224 if dataset == "imagenette" else 32
    resnet = foundation["name"] == "resnet18"
    out: dict[str, float] = {}
    if "pretraining" in foundation:
        settings = foundation["pretraining"]
        images = SPLIT_SIZES[settings["dataset"]][0] if settings.get("dataset") else n_train
        part = {"advcl": "advcl_resnet18_step", "rocl": "rocl_resnet18_step"}[settings["method"]]
        out["pretraining"] = settings["epochs"] * images / rates.of(part, settings["batch_size"])
    kind = pre["kind"]
    if kind not in ("identity", "vae"):
        epochs, sizes = pre["epochs"], sorted((pre.get("batch_size_schedule") or {}).items())
        bounds = [(0, pre["batch_size"]), *sizes, (epochs, None)]
        out["preprocessor"] = sum(
            (min(end, epochs) - start) * n_train / rates.preprocessor(kind, pre["arch"], size)
            for (start, size), (end, _) in zip(bounds, bounds[1:])
            if start < epochs
        )
    if kind == "encoder_only":
        pass  # its own linear layer trains with it
    elif resnet:
        passes = rates.resnet_pass()
        per_epoch = {"clean": 0.0, "robust": n_train * 12 / passes}[head["mode"]]  # PGD-10 + the mixed update
        if foundation["mode"] == "frozen" and head["mode"] == "clean":
            out["features (derived)"] = (n_train + n_test) / (passes * 3)  # forward only
        elif foundation["mode"] == "finetune":
            per_epoch = n_train / passes
        out["head (derived)"] = head["epochs"] * per_epoch
    elif foundation["mode"] == "frozen" and head["mode"] == "clean":
        out["features"] = (n_train + n_test) / rates.of("features_vit_l", 256)
    else:
        lora = "lora" if "lora" in foundation else "full"
        rate = {
            ("frozen", "robust"): lambda: rates.robust_head(),
            ("finetune", "clean"): lambda: rates.of("clean_finetune_vit_l", 64, mode=lora),
            ("adversarial_finetune", "robust"): lambda: rates.of("adversarial_finetune_vit_l", 64, mode=lora),
        }[foundation["mode"], head["mode"]]()
        out["head"] = head["epochs"] * n_train / rate
    attacks = c["evaluation"]["attacks"]
    pgd20 = rates.resnet_pass() / 20 if resnet else rates.pgd20(kind, image_size)
    # each PGD attack (cross-entropy or margin: the same passes) in PGD-20 equivalents, by its steps
    pgd_steps = sum(ATTACKS[name].steps for name in attacks if ATTACKS[name].family == "pgd")
    out["evaluation (derived)" if resnet else "evaluation"] = n_test * (pgd_steps / 20) / pgd20
    n_aa = min(c["evaluation"]["autoattack_examples"], n_test) if "autoattack" in attacks else 0
    if n_aa:
        out["autoattack (rough)"] = n_aa * AUTOATTACK_PGD20_EQUIVALENTS / pgd20
    return out
