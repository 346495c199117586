"""GPU step costs of the paper-table stages bench/gpu.py does not time, for issue 18's GPU-hour estimates.

bench/gpu.py times the paper32 CRoPD step and PGD-20 through the lambda_ablation pipeline. This adds,
on one device, each case's images/s and peak allocated memory (after reset_peak_memory_stats):

1. paper224 CRoPD step at 224 px (ImagenetTe, CRoPD Table 2): batch 32 and 128, fp32 and bf16.
   Epoch seconds for ImagenetTe's 9,469 training images are extrapolated from the timed steps.
2. Adversarial fine-tuning of ViT-MAE-large (random weights, the real size, 224 px) behind paper32
   CRoPD: PGD-10 (step 0.007) then one AdamW step on the clean + adversarial batch, for the whole
   ViT-L ("full", the paper's fine-tuned rows) and for LoRA adapters on the attention's query and
   value projections (peft, rank 8, alpha 16: the "+ LoRA" rows). Trainable parameters counted.
   The attack is fp32 in every case; only the update step is timed at both precisions.
3. AdvCL pre-training at its real setting: CIFAR ResNet-18 of width 64, AdvCL's views and PGD-5 on
   the multi-view loss (trainables/robust_pretraining.py's advcl_step), batch 512 as in AdvCL's code;
   epoch seconds at CIFAR-10 size.

Images live on the device; the CPU augmentation is bench/gpu.py's business. Random weights: these are
costs, not accuracies.

Run: python bench/gpu_costs.py [--json PATH] [--quick] [--parts cropd224,finetune,advcl]
(needs peft for the LoRA case: pip install peft)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from gpu import EPS, Precision, Recorder, build_pipeline, machine, peak_gib, print_rows, reset_peak, sync  # noqa: E402

from trainables.attacks import pgd  # noqa: E402
from trainables.preprocessors import MaskedAutoencoder, resolve_preprocessor_config  # noqa: E402
from trainables.preprocessors.objectives import cropd_step  # noqa: E402

IMAGENETTE_TRAIN = 9_469
CIFAR10_TRAIN = 50_000


def timed(step, device: torch.device, seconds: float, quick: bool) -> tuple[int, float]:
    """(steps, seconds) of `step` run after 2 warm-up calls until `seconds` pass (at least 3 steps)."""
    for _ in range(1 if quick else 2):
        step()
    sync(device)
    steps, started = 0, time.perf_counter()
    while steps < (1 if quick else 3) or (not quick and time.perf_counter() - started < seconds):
        step()
        steps += 1
        sync(device)
    return steps, time.perf_counter() - started


def trainable_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# --- 1. paper224 CRoPD ------------------------------------------------------------------------------


def cropd224_case(batch: int, precision: str, device: torch.device, seconds: float, quick: bool) -> list[dict]:
    size = 56 if quick else 224
    cfg = resolve_preprocessor_config(
        {"kind": "cropd", "arch": "paper224", "lambda": 1.0, "temperature": 0.5, "eps": EPS, "batch_size": batch},
        image_size=size,
    )
    torch.manual_seed(0)
    model = MaskedAutoencoder(cfg["arch"], size).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    images = torch.rand(batch, 3, size, size, device=device)
    labels = torch.zeros(batch, dtype=torch.long, device=device)

    def step() -> None:
        with Precision(precision, device):
            terms = cropd_step(model, images, labels, cfg)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

    reset_peak(device)
    steps, elapsed = timed(step, device, seconds, quick)
    rate = steps * batch / elapsed
    return [
        {
            "part": "cropd_paper224_step",
            "batch": batch,
            "precision": precision,
            "parameters": sum(p.numel() for p in model.parameters()),
            "images_per_s": rate,
            "epoch_s_imagenette": IMAGENETTE_TRAIN / rate,
            "peak_gib": peak_gib(device),
        }
    ]


# --- 2. adversarial fine-tuning, full and LoRA --------------------------------------------------------


def finetune_cases(device: torch.device, batch: int, seconds: float, quick: bool) -> list[dict]:
    from peft import LoraConfig, get_peft_model

    rows = []
    for mode in ("full", "lora"):
        pipeline = build_pipeline(device, quick, trainable_foundation=mode == "full")
        if mode == "lora":
            vit = pipeline.foundation.model
            names = {name.rsplit(".", 1)[-1] for name, _ in vit.named_modules()}
            # transformers renamed ViT's attention projections (query/value -> q_proj/v_proj) in 5.x.
            targets = ["q_proj", "v_proj"] if "q_proj" in names else ["query", "value"]
            pipeline.foundation.model = get_peft_model(vit, LoraConfig(r=8, lora_alpha=16, target_modules=targets))
        pipeline.preprocessor.requires_grad_(False)  # the pre-processor is trained before and frozen
        torch.manual_seed(3)
        x = torch.rand(batch, 3, 32, 32, device=device)
        y = torch.randint(0, 2, (batch,), device=device)
        optimizer = torch.optim.AdamW([p for p in pipeline.parameters() if p.requires_grad], lr=1e-4)
        for precision in ("fp32", "bf16"):

            def step(precision: str = precision) -> None:
                pipeline.eval()
                adversarial = pgd(
                    lambda xa: F.cross_entropy(pipeline(xa), y),
                    x,
                    eps=EPS,
                    steps=10,
                    step_size=0.007,
                    random_start=True,
                )
                pipeline.train()
                with Precision(precision, device):
                    loss = F.cross_entropy(pipeline(torch.cat([x, adversarial])), torch.cat([y, y]))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            reset_peak(device)
            steps, elapsed = timed(step, device, seconds, quick)
            rows.append(
                {
                    "part": "adversarial_finetune_vit_l",
                    "mode": mode,
                    "batch": batch,
                    "precision": precision,
                    "trainable_parameters": trainable_count(pipeline),
                    "images_per_s": steps * batch / elapsed,
                    "epoch_s_cifar10": CIFAR10_TRAIN / (steps * batch / elapsed),
                    "peak_gib": peak_gib(device),
                }
            )
    return rows


# --- 3. AdvCL pre-training of a ResNet-18 ---------------------------------------------------------------


def advcl_cases(device: torch.device, seconds: float, quick: bool) -> list[dict]:
    from trainables.foundation import build_untrained_resnet
    from trainables.robust_pretraining import ContrastiveEncoder, advcl_step
    from trainables.schema.foundation import RESNET_NAME, resolve_foundation_config
    from trainables.schema.pretraining import resolve_pretraining_config

    width, batch = (8, 16) if quick else (64, 512)
    foundation_cfg = resolve_foundation_config(
        {"name": RESNET_NAME, "resnet": {"width": width}, "pretraining": {"method": "advcl"}}
    )
    # AdvCL's pseudo-label clusters (its code: 2, 10, 50, 100, 500; ClusterFit CE weight 0.2).
    cfg = resolve_pretraining_config(
        {"method": "advcl", "batch_size": batch, "pseudo_clusters": [2, 10, 50, 100, 500]},
        untrained=True,
        image_size=32,
    )
    clusters = cfg["pseudo_clusters"]
    rows = []
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = ContrastiveEncoder(
            build_untrained_resnet(foundation_cfg, trainable=True),
            cfg["projector_hidden"],
            cfg["projector_dim"],
            clusters,
        ).to(device)
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        images = torch.rand(batch, 3, 32, 32, device=device)
        pseudo = torch.stack([torch.randint(0, k, (batch,), device=device) for k in clusters], dim=1)

        def step(precision: str = precision) -> None:
            with Precision(precision, device):
                terms = advcl_step(model, images, pseudo, cfg)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()

        reset_peak(device)
        steps, elapsed = timed(step, device, seconds, quick)
        rate = steps * batch / elapsed
        rows.append(
            {
                "part": "advcl_resnet18_step",
                "width": width,
                "batch": batch,
                "precision": precision,
                "views": ",".join(cfg["views"]),
                "images_per_s": rate,
                "epoch_s_cifar10": CIFAR10_TRAIN / rate,
                "peak_gib": peak_gib(device),
            }
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="tiny sizes, also on a CPU: checks the script")
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per case (default 5)")
    p.add_argument("--parts", default="cropd224,finetune,advcl")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.quick:
        print("error: no CUDA device here; run with --quick to check the script on a CPU", file=sys.stderr)
        return 2
    info = machine(device)
    print(json.dumps(info), flush=True)
    recorder = Recorder(info, args.json, device)
    rows = recorder.rows

    def attempt(part: str, run, *run_args) -> None:
        # Any failure (peft missing, out of memory) is recorded as the case's row.
        recorder.attempt(part, run, *run_args, catch=Exception)

    parts = {part.strip() for part in args.parts.split(",")}
    if "cropd224" in parts:
        for batch in (2,) if args.quick else (32, 128):
            for precision in ("fp32", "bf16"):
                attempt("cropd_paper224_step", cropd224_case, batch, precision, device, args.seconds, args.quick)
    if "finetune" in parts:
        attempt("adversarial_finetune_vit_l", finetune_cases, device, 4 if args.quick else 64, args.seconds, args.quick)
    if "advcl" in parts:
        attempt("advcl_resnet18_step", advcl_cases, device, args.seconds, args.quick)

    print_rows(
        "CRoPD paper224 step at 224 px (ImagenetTe epoch = 9,469 images, extrapolated)",
        [r for r in rows if r["part"] == "cropd_paper224_step"],
        ["batch", "precision", "parameters", "images_per_s", "epoch_s_imagenette", "peak_gib"],
    )
    print_rows(
        "Adversarial fine-tuning step (PGD-10 fp32 + AdamW on clean+adv), paper32 CRoPD -> ViT-MAE-large 224 px",
        [r for r in rows if r["part"] == "adversarial_finetune_vit_l"],
        ["mode", "batch", "precision", "trainable_parameters", "images_per_s", "epoch_s_cifar10", "peak_gib"],
    )
    print_rows(
        "AdvCL pre-training step, CIFAR ResNet-18 (epoch = 50,000 images)",
        [r for r in rows if r["part"] == "advcl_resnet18_step"],
        ["width", "batch", "precision", "views", "images_per_s", "epoch_s_cifar10", "peak_gib"],
    )
    errors = [r for r in rows if "error" in r]
    for r in errors:
        print(f"error in {r['part']}: {r['error']}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
