"""GPU figures for the day a GPU is lent (issue 17, item 6): the paper32 CRoPD epoch, PGD-20 through
ViT-MAE-large, peak memory per trial stage.

Three parts, all in one process and on one device, each case's peak memory taken after
`torch.cuda.reset_peak_memory_stats` (allocated tensors, not the allocator's cache):

1. The paper32 CRoPD training step (FGSM on the adversarial NT-Xent, MSE + lambda * NT-Xent,
   backward, AdamW) at 32 px, batch 32 and 256, in fp32, fp32 with TF32 matrix products, and bf16
   autocast. An epoch at CIFAR-10 size (50,000 images) is extrapolated from the timed steps. Images
   are already on the device: the CPU augmentation fit.py runs before each step is timed apart
   (images/s on this machine's CPU), so one can see whether it, not the GPU, sets the pace.
2. PGD-20 (eps 8/255, step eps/10) through the whole lambda_ablation pipeline: paper32 CRoPD at
   32 px, bilinear up to 224 px, a ViT-MAE built from the facebook/vit-mae-large configuration
   (random weights, the real size; nothing is downloaded), a linear head. Images/s of the full
   attack (every point attacked all 20 steps) per precision, and whether bf16 keeps the attack as
   strong: robust accuracy of the evaluation's own early-stopping PGD in fp32 and in bf16, on the
   same points, from the same random start, labels being the fp32 clean predictions, the head
   calibrated to the features' spread (calibrate_head). With random weights that comparison is
   indicative only. On an H200 (bench/results/gpu-h200-2026-11-26-strength.json) bf16 stalled:
   robust accuracy 0.47 at eps 1, 2 and 8/255 alike, against 0.48 / 0.19 / 0.00 in fp32 and
   0.42 / 0.16 / 0.00 in TF32, so attacks must not run under bf16 autocast.
3. Peak memory of each stage a lambda_ablation trial runs at its batch sizes (fp32, the trial
   default): clean head step, robust head step (PGD-10 then the mixed batch), PGD-20 evaluation,
   adversarial fine-tuning step of the whole ViT-L; the largest sets the spec's GPU fraction.

Run: python bench/gpu.py [--json PATH] [--quick]   (--quick: tiny sizes, also runs on a CPU, to check the script)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch
import torch.nn.functional as F
from torch import nn

from trainables.attacks import pgd
from trainables.augmentation import augment
from trainables.encoders import FoundationFeatures
from trainables.foundation import IMAGENET_MEAN, IMAGENET_STD
from trainables.pipeline import Pipeline
from trainables.preprocessors import MaskedAutoencoder, resolve_preprocessor_config
from trainables.preprocessors.objectives import cropd_step
from trainables.survival import pgd_survives

GIB = 1024**3
CIFAR10_TRAIN = 50_000
EPS = 8 / 255
# facebook/vit-mae-large's config.json, the encoder part (the decoder is never used downstream).
VIT_MAE_LARGE = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "image_size": 224,
    "patch_size": 16,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "qkv_bias": True,
}
PRECISIONS = ("fp32", "tf32", "bf16")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=None, help="also write every figure here")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps: checks the script, measures nothing")
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per CRoPD case (default 6)")
    p.add_argument(
        "--parts",
        default="cropd,augmentation,pgd,memory",
        help="comma-separated parts to run (default: cropd,augmentation,pgd,memory)",
    )
    p.add_argument(
        "--pgd-batches", default="64,256", help="PGD batch sizes (default 64,256; strength is measured at the first)"
    )
    return p.parse_args(argv)


class Precision:
    """fp32 (TF32 off), tf32 (fp32 tensors, TF32 matrix products) or bf16 (autocast)."""

    def __init__(self, name: str, device: torch.device):
        self.name, self.device = name, device

    def __enter__(self):
        tf32 = self.name == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.name == "bf16")
        self.autocast.__enter__()
        return self

    def __exit__(self, *exc):
        self.autocast.__exit__(*exc)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def cropd_config(batch: int) -> dict:
    return resolve_preprocessor_config(
        {"kind": "cropd", "arch": "paper32", "lambda": 1.0, "temperature": 0.5, "eps": EPS, "batch_size": batch},
        image_size=32,
    )


# --- 1. CRoPD training ------------------------------------------------------------------------------


def cropd_case(batch: int, precision: str, device: torch.device, seconds: float, quick: bool) -> dict:
    cfg = cropd_config(batch)
    if quick:
        cfg["arch"] = resolve_preprocessor_config({"arch": "tiny"}, image_size=32)["arch"]
    torch.manual_seed(0)
    model = MaskedAutoencoder(cfg["arch"], 32).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    images = torch.rand(8, batch, 3, 32, 32, device=device)
    labels = torch.zeros(batch, dtype=torch.long, device=device)

    def step(i: int) -> torch.Tensor:
        with Precision(precision, device):
            terms = cropd_step(model, images[i % len(images)], labels, cfg)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        return terms["loss"].detach()

    reset_peak(device)
    for i in range(1 if quick else 5):
        step(i)
    sync(device)
    steps, started = 0, time.perf_counter()
    while steps < (2 if quick else 10_000) and (steps < 10 or time.perf_counter() - started < seconds):
        loss = step(steps)
        steps += 1
        if steps % 10 == 0:
            sync(device)
    sync(device)
    elapsed = time.perf_counter() - started
    per_second = steps * batch / elapsed
    return {
        "part": "cropd_step",
        "batch": batch,
        "precision": precision,
        "timed_steps": steps,
        "images_per_s": per_second,
        "epoch_s_cifar10": CIFAR10_TRAIN / per_second,
        "peak_gib": peak_gib(device),
        "loss_finite": bool(torch.isfinite(loss)),
    }


def augmentation_rate(batch: int) -> dict:
    """Images/s of fit.py's augmentation (batched, trainables/augmentation.py) on the CPU, with this
    process's torch threads."""
    images = torch.rand(batch, 3, 32, 32)
    augment(images)
    started = time.perf_counter()
    rounds = 3
    for _ in range(rounds):
        augment(images)
    return {
        "part": "cpu_augmentation",
        "batch": batch,
        "threads": torch.get_num_threads(),
        "images_per_s": rounds * batch / (time.perf_counter() - started),
    }


# --- 2. PGD-20 through the lambda_ablation pipeline -------------------------------------------------


def build_pipeline(device: torch.device, quick: bool, *, trainable_foundation: bool = False) -> Pipeline:
    from transformers import ViTMAEConfig, ViTMAEModel

    settings = dict(VIT_MAE_LARGE)
    if quick:
        settings.update(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=64
        )
    torch.manual_seed(0)
    vit = ViTMAEModel(ViTMAEConfig(**settings, mask_ratio=0.0))
    foundation = FoundationFeatures(vit, IMAGENET_MEAN, IMAGENET_STD, "mean", trainable=trainable_foundation)
    arch = resolve_preprocessor_config({"arch": "tiny" if quick else "paper32"}, image_size=32)["arch"]
    preprocessor = MaskedAutoencoder(arch, 32).eval()
    head = nn.Linear(foundation.feature_dim, 2)  # CIFAR-2
    pipeline = Pipeline(preprocessor, foundation, head).to(device).eval()
    calibrate_head(pipeline, device)
    return pipeline


@torch.no_grad()
def calibrate_head(pipeline: Pipeline, device: torch.device, size: int = 32) -> None:
    """A head whose clean margins are neither huge nor nil, so the attack-strength comparison means something.

    Random ViT weights give features that barely vary from image to image: a random head then
    classifies every image with a margin no eps-ball attack can cross (robust accuracy 1.0 in both
    precisions, the first run's finding), and compares nothing. Here the two logits are +-z, z the
    features' projection on a random direction standardised over 256 random images: about half of
    the images in each class, margins of the order of the spread that inputs cause.
    """
    generator = torch.Generator().manual_seed(4)
    images = torch.rand(256, 3, size, size, generator=generator).to(device)
    features = torch.cat([pipeline.features(chunk) for chunk in images.split(64)])
    direction = torch.randn(features.shape[1], generator=generator).to(device)
    projection = features @ direction
    scale = 1.0 / projection.std().clamp_min(1e-12)
    pipeline.head.weight.copy_(torch.stack([direction, -direction]) * scale)
    pipeline.head.bias.copy_(torch.stack([-projection.mean(), projection.mean()]) * scale)


def pgd_cases(pipeline: Pipeline, batch: int, device: torch.device, quick: bool, measure_strength: bool) -> list[dict]:
    torch.manual_seed(1)
    x = torch.rand(batch, 3, 32, 32, device=device)
    with torch.no_grad():
        y = pipeline(x).argmax(dim=1)  # every point starts correctly classified
    rows = []
    for precision in PRECISIONS:

        def loss_of(xa: torch.Tensor, precision: str = precision) -> torch.Tensor:
            with Precision(precision, device):
                return F.cross_entropy(pipeline(xa), y, reduction="sum")

        reset_peak(device)
        pgd(loss_of, x, eps=EPS, steps=1, step_size=EPS / 10, random_start=True)  # warm-up
        sync(device)
        rounds = 1 if quick else 2
        started = time.perf_counter()
        for _ in range(rounds):
            pgd(loss_of, x, eps=EPS, steps=20, step_size=EPS / 10, random_start=True)
        sync(device)
        rate = rounds * batch / (time.perf_counter() - started)
        strength = {}
        for eps in (1 / 255, 2 / 255, EPS) if measure_strength else ():
            torch.manual_seed(2)  # the same random start for every precision
            with Precision(precision, device):
                survives = pgd_survives(pipeline, x, y, eps=eps, steps=20, step_size=eps / 10, random_start=True)
            strength[f"robust_acc_eps{round(eps * 255)}"] = survives.float().mean().item()
        rows.append(
            {
                "part": "pgd20_vit_mae_large_224",
                "batch": batch,
                "precision": precision,
                "images_per_s": rate,
                "peak_gib": peak_gib(device),
                **strength,
            }
        )
    return rows


# --- 3. peak memory per trial stage (fp32, lambda_ablation's batch sizes) ------------------------------


def stage_memory(pipeline: Pipeline, device: torch.device, quick: bool) -> list[dict]:
    batch = 8 if quick else 64  # head.batch_size and evaluation.batch_size of lambda_ablation.yaml
    torch.manual_seed(3)
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    rows = []

    def record(stage: str, started: float) -> None:
        sync(device)
        rows.append(
            {
                "part": "stage_memory",
                "stage": stage,
                "batch": batch,
                "precision": "fp32",
                "seconds": time.perf_counter() - started,
                "peak_gib": peak_gib(device),
            }
        )

    head_optimizer = torch.optim.SGD(pipeline.head.parameters(), lr=1e-2, momentum=0.9)
    reset_peak(device)
    started = time.perf_counter()
    with torch.no_grad():
        features = pipeline.features(x)
    loss = F.cross_entropy(pipeline.head(features), y)
    loss.backward()
    head_optimizer.step()
    record("clean head step", started)

    reset_peak(device)
    started = time.perf_counter()
    adversarial = pgd(
        lambda xa: F.cross_entropy(pipeline(xa), y), x, eps=EPS, steps=10, step_size=0.007, random_start=True
    )
    loss = F.cross_entropy(pipeline(torch.cat([x, adversarial])), torch.cat([y, y]))
    head_optimizer.zero_grad()
    loss.backward()
    head_optimizer.step()
    record("robust head step (PGD-10 + mixed batch)", started)

    reset_peak(device)
    started = time.perf_counter()
    pgd_survives(pipeline, x, y, eps=EPS, steps=20, step_size=EPS / 10, random_start=True)
    record("PGD-20 evaluation batch", started)

    pipeline.foundation.set_trainable(True)
    optimizer = torch.optim.AdamW([p for p in pipeline.parameters() if p.requires_grad], lr=1e-4)
    reset_peak(device)
    started = time.perf_counter()
    adversarial = pgd(
        lambda xa: F.cross_entropy(pipeline(xa), y), x, eps=EPS, steps=10, step_size=0.007, random_start=True
    )
    pipeline.train()
    loss = F.cross_entropy(pipeline(torch.cat([x, adversarial])), torch.cat([y, y]))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    pipeline.eval()
    record("adversarial fine-tuning step (whole ViT-L, AdamW)", started)
    pipeline.foundation.set_trainable(False)
    return rows


def machine(device: torch.device) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=props.total_memory / GIB, cuda=torch.version.cuda)
    return info


class Recorder:
    """The rows of a GPU bench, printed and saved (to `json_path`, with `info`) as each case ends,
    so a run cut short still leaves what it measured; a failing case becomes an error row."""

    def __init__(self, info: dict, json_path: Path | None, device: torch.device):
        self.info, self.json_path, self.device = info, json_path, device
        self.rows: list[dict] = []

    def emit(self, new_rows: list[dict]) -> None:
        for row in new_rows:
            self.rows.append(row)
            print(json.dumps(row), flush=True)
        if self.json_path:
            self.json_path.parent.mkdir(parents=True, exist_ok=True)
            self.json_path.write_text(json.dumps({"machine": self.info, "rows": self.rows}, indent=2))

    def attempt(self, part: str, run, *run_args, catch: type[BaseException] = RuntimeError, **run_kwargs) -> None:
        """emit(run(...)); one case running out of memory (or failing with `catch`) loses no other."""
        try:
            self.emit(run(*run_args, **run_kwargs))
        except catch as exc:
            self.emit([{"part": part, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}])
            if self.device.type == "cuda":
                torch.cuda.empty_cache()


def print_rows(title: str, rows: list[dict], columns: list[str]) -> None:
    print(f"\n{title}")
    print(" | ".join(columns))
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            cells.append("-" if v is None else f"{v:,.3f}" if isinstance(v, float) else str(v))
        print(" | ".join(cells))


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.quick:
        print("error: no CUDA device here; run with --quick to check the script on a CPU", file=sys.stderr)
        return 2
    info = machine(device)
    print(json.dumps(info), flush=True)
    recorder = Recorder(info, args.json, device)
    rows, emit, attempt = recorder.rows, recorder.emit, recorder.attempt

    parts = {part.strip() for part in args.parts.split(",")}
    if "cropd" in parts:
        for batch in (4,) if args.quick else (32, 256):
            for precision in PRECISIONS:
                attempt("cropd_step", lambda *a: [cropd_case(*a)], batch, precision, device, args.seconds, args.quick)
    if "augmentation" in parts:
        for threads in sorted({1, 6, min(16, os.cpu_count() or 1)}):
            torch.set_num_threads(threads)
            emit([augmentation_rate(16 if args.quick else 256)])
        torch.set_num_threads(info["torch_threads"])

    if parts & {"pgd", "memory"}:
        pipeline = build_pipeline(device, args.quick)
    if "pgd" in parts:
        batches = [4] if args.quick else [int(b) for b in args.pgd_batches.split(",")]
        for batch in batches:
            attempt(
                "pgd20_vit_mae_large_224",
                pgd_cases,
                pipeline,
                batch,
                device,
                args.quick,
                measure_strength=batch == batches[0],
            )
    if "memory" in parts:
        attempt("stage_memory", stage_memory, pipeline, device, args.quick)

    print_rows(
        "CRoPD paper32 training step, 32 px (epoch = 50,000 images, extrapolated)",
        [r for r in rows if r["part"] == "cropd_step"],
        ["batch", "precision", "timed_steps", "images_per_s", "epoch_s_cifar10", "peak_gib", "loss_finite"],
    )
    print_rows(
        "fit.py's CPU augmentation",
        [r for r in rows if r["part"] == "cpu_augmentation"],
        ["batch", "threads", "images_per_s"],
    )
    print_rows(
        "PGD-20 through paper32 CRoPD -> ViT-MAE-large (random weights) at 224 px -> linear head",
        [r for r in rows if r["part"] == "pgd20_vit_mae_large_224"],
        ["batch", "precision", "images_per_s", "peak_gib", "robust_acc_eps1", "robust_acc_eps2", "robust_acc_eps8"],
    )
    print_rows(
        "Peak memory per lambda_ablation trial stage (fp32)",
        [r for r in rows if r["part"] == "stage_memory"],
        ["stage", "batch", "seconds", "peak_gib"],
    )
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
