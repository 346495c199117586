"""Estimated GPU-hours of shipped paper specs, from the stage costs measured on an H200.

Issue 18 asks, table by table, what a study costs before anyone spends it. This reads the measured
per-image rates (bench/results/gpu-h200-2026-11-26*.json: bench/gpu.py and bench/gpu_costs.py,
fp32, random weights at the real sizes) and each spec's planned trials, and prints the GPU-seconds
of every stage: stages that trials share (one robust pre-training, one pre-processor artifact, one
set of clean features) are counted once, as the sweep runs them once.

The model, and where it is rough:
- pre-training, pre-processor and fine-tuning: epochs x training images / measured images per
  second at the nearest measured batch size. ARAE has no measurement of its own: the encoder-only
  step (PGD-10 plus an update) stands in for it. Tiny-ImageNet's 64 px pre-processor with patch 4
  has paper32's 256 tokens and is costed as paper32.
- a clean head on a frozen foundation: one forward pass over the training and test images (the
  shared features); its 150 epochs on cached features are seconds.
- a robust head: every epoch runs PGD-10 through the whole pipeline (measured: the lambda_ablation
  robust head step).
- evaluation: PGD-10 and PGD-20 over the test points at the measured PGD-20 rate (PGD-10 at twice
  it); points that break early stop early in our attack, so this is an upper bound.
  AutoAttack (standard): APGD-CE's 100 steps on every point, then APGD-T, FAB-T (9 targets x 100
  steps each) and Square (5,000 queries, about a third of a step each) on the points still robust;
  with half of the points robust that is about 88 PGD-20 batches' worth per point. The robust fraction
  is not known before the run: this is the roughest line, and the largest.
- ResNet-18 foundations (Table 10, AdvCL): their heads and attacks are not measured. They are
  derived from the RoCL step (PGD-7 on three views: about ten ResNet-18 forward-backward passes
  per image) and the paper32 CRoPD step (about three auto-encoder passes), and marked "derived".
All figures are H200 fp32 without early stopping of the pre-processor ("until convergence" in
the paper would be shorter); bf16 (compute.autocast) cuts pre-processor and fine-tuning steps 4-6x.

Run: python bench/gpu_hours.py search_spaces/table2.yaml [more specs] [--per-trial]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.spec.sweep_spec import load_spec
from trainables.schema import validate_trial_config  # noqa: E402
from trainables.schema.data import SPLIT_SIZES  # noqa: E402
from trainables.schema.preprocessor import artifact_key_config  # noqa: E402
from trainables.schema.results import ATTACKS  # noqa: E402

RESULTS = REPO / "bench" / "results"
RATE_FILES = ("gpu-h200-2026-11-26.json", "gpu-h200-2026-11-26-costs.json", "gpu-h200-2026-11-26-costs-stages.json")
AUTOATTACK_PGD20_EQUIVALENTS = (100 + 0.5 * (900 + 900 + 5000 / 3)) / 20  # see the docstring


def load_rows() -> list[dict]:
    rows = []
    for name in RATE_FILES:
        rows += [r for r in json.loads((RESULTS / name).read_text())["rows"] if "error" not in r]
    return rows


@dataclass
class Rates:
    """Measured images per second (fp32, H200), looked up by part and settings."""

    rows: list[dict] = field(default_factory=load_rows)

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


def stage_seconds(c: dict, rates: Rates, seen: set) -> dict[str, float]:
    """GPU-seconds of each stage of one trial; a stage in `seen` (shared, already counted) costs 0."""
    dataset, fraction = c["data"]["dataset"], c["data"]["data_fraction"]
    n_train = SPLIT_SIZES[dataset][0] * fraction
    n_test = c["evaluation"]["n_examples"] or SPLIT_SIZES[dataset][1]
    image_size = 224 if dataset == "imagenette" else 32
    foundation, pre, head = c["foundation"], c["preprocessor"], c["head"]
    resnet = foundation["name"] == "resnet18"
    out: dict[str, float] = {}

    def once(key: str, seconds: float) -> float:
        if key in seen:
            return 0.0
        seen.add(key)
        return seconds

    if "pretraining" in foundation:
        settings = foundation["pretraining"]
        images = SPLIT_SIZES[settings["dataset"]][0] if settings.get("dataset") else n_train
        part = {"advcl": "advcl_resnet18_step", "rocl": "rocl_resnet18_step"}[settings["method"]]
        key = json.dumps({k: v for k, v in foundation.items() if k != "mode"}, sort_keys=True)
        rate = rates.of(part, settings["batch_size"])
        out["pretraining"] = once("pretrain" + key, settings["epochs"] * images / rate)

    kind = pre["kind"]
    if kind not in ("identity", "vae"):
        epochs, sizes = pre["epochs"], sorted((pre.get("batch_size_schedule") or {}).items())
        bounds = [(0, pre["batch_size"]), *sizes, (epochs, None)]
        seconds = sum(
            (min(end, epochs) - start) * n_train / rates.preprocessor(kind, pre["arch"], size)
            for (start, size), (end, _) in zip(bounds, bounds[1:])
            if start < epochs
        )
        key = json.dumps([dataset, fraction, artifact_key_config(pre)], sort_keys=True, default=str)
        out["preprocessor"] = once("pre" + key, seconds)
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
        key = json.dumps([dataset, fraction, kind, artifact_key_config(pre), foundation], sort_keys=True, default=str)
        out["features"] = once("features" + key, (n_train + n_test) / rates.of("features_vit_l", 256))
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
    label = "evaluation (derived)" if resnet else "evaluation"
    # each PGD attack (cross-entropy or margin: the same passes) in PGD-20 equivalents, by its steps
    pgd_steps = sum(ATTACKS[name].steps for name in attacks if ATTACKS[name].family == "pgd")
    out[label] = n_test * (pgd_steps / 20) / pgd20
    n_aa = min(c["evaluation"]["autoattack_examples"], n_test) if "autoattack" in attacks else 0
    if n_aa:
        out["autoattack (rough)"] = n_aa * AUTOATTACK_PGD20_EQUIVALENTS / pgd20
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specs", nargs="+", type=Path)
    p.add_argument("--per-trial", action="store_true", help="one line per trial too")
    args = p.parse_args(argv)
    rates = Rates()
    print(f"# H200 fp32 GPU-hours from {', '.join(RATE_FILES)}")
    for path in args.specs:
        spec = load_spec(path)
        seen: set = set()
        totals: dict[str, float] = {}
        print(f"\n## {spec.name}: {spec.num_trials} trials")
        # A search's sampled trials are costed at the base trial config, each with its own stages
        # (its sampled values give each its own pre-processor).
        planned = [(point, seen) for point in spec.grid_points]
        planned += [({"search sample": i}, set()) for i in range(spec.search_trials)]
        for point, shared in planned:
            sample = "search sample" in point
            config = validate_trial_config(spec.trial_config({} if sample else point))
            if config["data"]["dataset"] in ("digits", "digits2"):
                print(f"  {json.dumps(point)}: {config['data']['dataset']} is not costed here (embedded data)")
                continue
            stages = stage_seconds(config, rates, shared)
            for stage, seconds in stages.items():
                totals[stage] = totals.get(stage, 0.0) + seconds
            if args.per_trial:
                cells = ", ".join(f"{s} {v / 3600:,.1f}" for s, v in stages.items() if v)
                print(f"  {json.dumps(point, default=str)}: {sum(stages.values()) / 3600:,.1f} h ({cells})")
        for stage, seconds in totals.items():
            print(f"  {stage:22s} {seconds / 3600:10,.1f} h")
        print(f"  {'total':22s} {sum(totals.values()) / 3600:10,.1f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
