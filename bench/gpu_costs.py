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
4. The remaining per-unit costs of issue 18's GPU-hour estimates ("stages"): clean fine-tuning of
   ViT-L (full and LoRA), ViT-L forward passes (the shared clean features a clean head trains on),
   the encoder-only baseline's step (CRoPD Table 8) at 32 and 224 px, RoCL pre-training of the
   ResNet-18 (Table 10's foundation), and PGD-20 through the 224 px pipelines (paper224 CRoPD, and
   a diffusers AutoencoderKL of sd-vae-ft-mse's shape when diffusers is installed) in front of ViT-L.

Images live on the device; the CPU augmentation is bench/gpu.py's business. Random weights: these are
costs, not accuracies.

Run: python bench/gpu_costs.py [--json PATH] [--quick] [--parts cropd224,finetune,advcl,stages]
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
from gpu import (  # noqa: E402
    EPS,
    VIT_MAE_LARGE,
    Precision,
    Recorder,
    build_pipeline,
    calibrate_head,
    machine,
    peak_gib,
    print_rows,
    reset_peak,
    sync,
)

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


def measured(
    part: str,
    step,
    batch: int,
    device: torch.device,
    seconds: float,
    quick: bool,
    *,
    epoch_images: int = CIFAR10_TRAIN,
    epoch_key: str = "epoch_s_cifar10",
    **fields,
) -> dict:
    """One case's row: `step` timed from a reset memory peak; images/s and the epoch it implies."""
    reset_peak(device)
    steps, elapsed = timed(step, device, seconds, quick)
    rate = steps * batch / elapsed
    return {
        "part": part,
        **fields,
        "batch": batch,
        "images_per_s": rate,
        epoch_key: epoch_images / rate,
        "peak_gib": peak_gib(device),
    }


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

    parameters = sum(p.numel() for p in model.parameters())
    return [
        measured(
            "cropd_paper224_step",
            step,
            batch,
            device,
            seconds,
            quick,
            epoch_images=IMAGENETTE_TRAIN,
            epoch_key="epoch_s_imagenette",
            precision=precision,
            parameters=parameters,
        )
    ]


# --- 2. adversarial fine-tuning, full and LoRA --------------------------------------------------------


def finetune_cases(device: torch.device, batch: int, seconds: float, quick: bool) -> list[dict]:
    rows = []
    for mode in ("full", "lora"):
        pipeline = build_pipeline(device, quick, trainable_foundation=mode == "full")
        if mode == "lora":
            lora_wrap(pipeline)
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

            rows.append(
                measured(
                    "adversarial_finetune_vit_l",
                    step,
                    batch,
                    device,
                    seconds,
                    quick,
                    mode=mode,
                    precision=precision,
                    trainable_parameters=trainable_count(pipeline),
                )
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

        views = ",".join(cfg["views"])
        rows.append(
            measured(
                "advcl_resnet18_step",
                step,
                batch,
                device,
                seconds,
                quick,
                width=width,
                precision=precision,
                views=views,
            )
        )
    return rows


# --- 4. the remaining stage costs --------------------------------------------------------------------


def lora_wrap(pipeline) -> None:
    """LoRA adapters (rank 8, alpha 16) on the ViT's query and value projections, in place."""
    from peft import LoraConfig, get_peft_model

    vit = pipeline.foundation.model
    names = {name.rsplit(".", 1)[-1] for name, _ in vit.named_modules()}
    # transformers renamed ViT's attention projections (query/value -> q_proj/v_proj) in 5.x.
    targets = ["q_proj", "v_proj"] if "q_proj" in names else ["query", "value"]
    pipeline.foundation.model = get_peft_model(vit, LoraConfig(r=8, lora_alpha=16, target_modules=targets))


def clean_finetune_cases(device: torch.device, batch: int, seconds: float, quick: bool) -> list[dict]:
    """Clean fine-tuning (CIFAR-100 / SVHN rows, "+ LoRA" clean rows): one AdamW step on a clean batch."""
    rows = []
    for mode in ("full", "lora"):
        pipeline = build_pipeline(device, quick, trainable_foundation=mode == "full")
        if mode == "lora":
            lora_wrap(pipeline)
        pipeline.preprocessor.requires_grad_(False)
        torch.manual_seed(3)
        x = torch.rand(batch, 3, 32, 32, device=device)
        y = torch.randint(0, 2, (batch,), device=device)
        optimizer = torch.optim.AdamW([p for p in pipeline.parameters() if p.requires_grad], lr=1e-4)
        pipeline.train()
        for precision in ("fp32", "bf16"):

            def step(precision: str = precision) -> None:
                with Precision(precision, device):
                    loss = F.cross_entropy(pipeline(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            rows.append(
                measured("clean_finetune_vit_l", step, batch, device, seconds, quick, mode=mode, precision=precision)
            )
    return rows


@torch.no_grad()
def feature_cases(device: torch.device, seconds: float, quick: bool) -> list[dict]:
    """Forward passes through paper32 CRoPD and ViT-L: the cost of a split's shared clean features."""
    pipeline = build_pipeline(device, quick)
    batch = 16 if quick else 256
    x = torch.rand(batch, 3, 32, 32, device=device)
    rows = []
    for precision in ("fp32", "bf16"):

        def step(precision: str = precision) -> None:
            with Precision(precision, device):
                pipeline.features(x)

        rows.append(measured("features_vit_l", step, batch, device, seconds, quick, precision=precision))
    return rows


def encoder_only_cases(device: torch.device, seconds: float, quick: bool) -> list[dict]:
    """CRoPD Table 8's baseline: PGD-10 (step 0.007) then an AdamW step of encoder + linear layer."""
    from trainables.preprocessors.masked_autoencoder import EncoderOnlyClassifier
    from trainables.preprocessors.objectives import encoder_only_step

    rows = []
    for arch, size, train_images in (("paper32", 32, CIFAR10_TRAIN), ("paper224", 224, IMAGENETTE_TRAIN)):
        size = 32 if quick else size
        batch = 4 if quick else 32
        cfg = resolve_preprocessor_config(
            {"kind": "encoder_only", "arch": "tiny" if quick else arch, "eps": EPS, "batch_size": batch},
            image_size=size,
        )
        torch.manual_seed(0)
        model = EncoderOnlyClassifier(cfg["arch"], size, 10).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        images = torch.rand(batch, 3, size, size, device=device)
        labels = torch.randint(0, 10, (batch,), device=device)

        def step() -> None:
            terms = encoder_only_step(model, images, labels, cfg)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()

        rows.append(
            measured(
                "encoder_only_step",
                step,
                batch,
                device,
                seconds,
                quick,
                epoch_images=train_images,
                epoch_key="epoch_s",
                arch=arch,
                precision="fp32",
                epoch_of="cifar10" if arch == "paper32" else "imagenette",
            )
        )
    return rows


def rocl_cases(device: torch.device, seconds: float, quick: bool) -> list[dict]:
    """RoCL pre-training of the CIFAR ResNet-18 (PGD-7 from t1 against t2, NT-Xent over 3 views)."""
    from trainables.foundation import build_untrained_resnet
    from trainables.robust_pretraining import ContrastiveEncoder, rocl_step
    from trainables.schema.foundation import RESNET_NAME, resolve_foundation_config
    from trainables.schema.pretraining import resolve_pretraining_config

    width, batch = (8, 16) if quick else (64, 256)  # RoCL's published run: batch 256
    foundation_cfg = resolve_foundation_config(
        {"name": RESNET_NAME, "resnet": {"width": width}, "pretraining": {"method": "rocl"}}
    )
    cfg = resolve_pretraining_config({"method": "rocl", "batch_size": batch}, untrained=True, image_size=32)
    rows = []
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = ContrastiveEncoder(
            build_untrained_resnet(foundation_cfg, trainable=True), cfg["projector_hidden"], cfg["projector_dim"], []
        ).to(device)
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        images = torch.rand(batch, 3, 32, 32, device=device)
        none = torch.zeros(batch, 0, dtype=torch.long, device=device)

        def step(precision: str = precision) -> None:
            with Precision(precision, device):
                terms = rocl_step(model, images, none, cfg)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()

        rows.append(
            measured("rocl_resnet18_step", step, batch, device, seconds, quick, width=width, precision=precision)
        )
    return rows


def vae_module(quick: bool) -> torch.nn.Module:
    """An AutoencoderKL of stabilityai/sd-vae-ft-mse's shape (its config.json), random weights, in
    the VAE row's round trip."""
    from diffusers import AutoencoderKL

    from trainables.preprocessors.simple import VAEPreprocessor

    channels = [32, 32] if quick else [128, 256, 512, 512]
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(channels),
        up_block_types=["UpDecoderBlock2D"] * len(channels),
        block_out_channels=channels,
        layers_per_block=1 if quick else 2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=256,
    )
    module = VAEPreprocessor.__new__(VAEPreprocessor)
    torch.nn.Module.__init__(module)
    module.vae = vae.requires_grad_(False).eval()
    module.path = "(random weights)"
    return module


def pgd224_cases(device: torch.device, quick: bool) -> list[dict]:
    """PGD-20 (fp32, eps 4/255 as ImagenetTe's) through a 224 px pre-processor and ViT-L."""
    from transformers import ViTMAEConfig, ViTMAEModel

    from trainables.attacks import pgd
    from trainables.encoders import FoundationFeatures
    from trainables.foundation import IMAGENET_MEAN, IMAGENET_STD
    from trainables.pipeline import Pipeline

    size = 32 if quick else 224
    settings = dict(VIT_MAE_LARGE)
    if quick:
        settings.update(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=64
        )
    rows = []
    for kind in ("cropd_paper224", "vae"):
        try:
            if kind == "vae":
                preprocessor = vae_module(quick)
            else:
                arch = resolve_preprocessor_config({"arch": "tiny" if quick else "paper224"}, image_size=size)["arch"]
                preprocessor = MaskedAutoencoder(arch, size)
        except ImportError as exc:
            rows.append({"part": "pgd20_224", "preprocessor": kind, "error": f"{type(exc).__name__}: {exc}"})
            continue
        torch.manual_seed(0)
        vit = ViTMAEModel(ViTMAEConfig(**settings, mask_ratio=0.0))
        foundation = FoundationFeatures(vit, IMAGENET_MEAN, IMAGENET_STD, "mean", trainable=False)
        pipeline = (
            Pipeline(preprocessor.eval(), foundation, torch.nn.Linear(foundation.feature_dim, 2)).to(device).eval()
        )
        calibrate_head(pipeline, device, size)
        batch = 4 if quick else 32
        x = torch.rand(batch, 3, size, size, device=device)
        with torch.no_grad():
            y = pipeline(x).argmax(dim=1)

        def loss_of(xa: torch.Tensor, pipeline: Pipeline = pipeline, y: torch.Tensor = y) -> torch.Tensor:
            return F.cross_entropy(pipeline(xa), y, reduction="sum")

        reset_peak(device)
        pgd(loss_of, x, eps=4 / 255, steps=1, step_size=0.4 / 255, random_start=True)  # warm-up
        sync(device)
        started = time.perf_counter()
        pgd(loss_of, x, eps=4 / 255, steps=20, step_size=0.4 / 255, random_start=True)
        sync(device)
        rows.append(
            {
                "part": "pgd20_224",
                "preprocessor": kind,
                "batch": batch,
                "precision": "fp32",
                "images_per_s": batch / (time.perf_counter() - started),
                "peak_gib": peak_gib(device),
            }
        )
        del pipeline
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# What main() prints: one table per part, in this order (a part's failures go to stderr instead).
TABLES = (
    (
        "cropd_paper224_step",
        "CRoPD paper224 step at 224 px (ImagenetTe epoch = 9,469 images, extrapolated)",
        ["batch", "precision", "parameters", "images_per_s", "epoch_s_imagenette", "peak_gib"],
    ),
    (
        "adversarial_finetune_vit_l",
        "Adversarial fine-tuning step (PGD-10 fp32 + AdamW on clean+adv), paper32 CRoPD -> ViT-MAE-large 224 px",
        ["mode", "batch", "precision", "trainable_parameters", "images_per_s", "epoch_s_cifar10", "peak_gib"],
    ),
    (
        "advcl_resnet18_step",
        "AdvCL pre-training step, CIFAR ResNet-18 (epoch = 50,000 images)",
        ["width", "batch", "precision", "views", "images_per_s", "epoch_s_cifar10", "peak_gib"],
    ),
    (
        "clean_finetune_vit_l",
        "Clean fine-tuning step (AdamW on a clean batch), paper32 CRoPD -> ViT-MAE-large 224 px",
        ["mode", "batch", "precision", "images_per_s", "epoch_s_cifar10", "peak_gib"],
    ),
    (
        "features_vit_l",
        "Clean features (no grad): paper32 CRoPD -> ViT-MAE-large 224 px",
        ["batch", "precision", "images_per_s", "epoch_s_cifar10", "peak_gib"],
    ),
    (
        "encoder_only_step",
        "Encoder-only adversarial training step (PGD-10 + AdamW), CRoPD Table 8",
        ["arch", "batch", "precision", "images_per_s", "epoch_s", "epoch_of", "peak_gib"],
    ),
    (
        "rocl_resnet18_step",
        "RoCL pre-training step, CIFAR ResNet-18 (epoch = 50,000 images)",
        ["width", "batch", "precision", "images_per_s", "epoch_s_cifar10", "peak_gib"],
    ),
    (
        "pgd20_224",
        "PGD-20 at 224 px (eps 4/255), pre-processor -> ViT-MAE-large",
        ["preprocessor", "batch", "precision", "images_per_s", "peak_gib"],
    ),
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="tiny sizes, also on a CPU: checks the script")
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per case (default 5)")
    p.add_argument("--parts", default="cropd224,finetune,advcl,stages")
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
    if "stages" in parts:
        attempt("clean_finetune_vit_l", clean_finetune_cases, device, 4 if args.quick else 64, args.seconds, args.quick)
        attempt("features_vit_l", feature_cases, device, args.seconds, args.quick)
        attempt("encoder_only_step", encoder_only_cases, device, args.seconds, args.quick)
        attempt("rocl_resnet18_step", rocl_cases, device, args.seconds, args.quick)
        attempt("pgd20_224", pgd224_cases, device, args.quick)

    for part, title, columns in TABLES:
        print_rows(title, [r for r in rows if r["part"] == part and "error" not in r], columns)
    errors = [r for r in rows if "error" in r]
    for r in errors:
        print(f"error in {r['part']}: {r['error']}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
