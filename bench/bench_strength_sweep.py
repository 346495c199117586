"""The evaluation's attack-strength sweep: its settings in shared batches against one run per setting.

The sweep attacks the first 64 evaluated points at 4 eps levels (10 steps) and 3 step counts (at
eps): 6 distinct PGD settings. trainables/survival.py can run them in shared batches of the
evaluation's batch size instead of one after another; the outcome is the same (checked here on
every run), only the time differs. Timed side by side, alternating, on one pipeline:

- `--pipeline embedded` (default): the embedded foundation behind a small CRoPD and a clean head,
  as bench_pgd_vs_torchattacks.py builds it (trained here or reused from the cache), on the digits.
- `--pipeline vit-large` (CUDA): paper32 CRoPD -> ViT-MAE-large at 224 px with random weights and
  a calibrated head, as bench/gpu.py builds it, on random 32 px images.

    python bench/bench_strength_sweep.py [--pipeline embedded|vit-large] [--device cpu|cuda] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import torch  # noqa: E402
from _machine import available_cores  # noqa: E402

import trainables.evaluation as evaluation  # noqa: E402
from trainables.data import load_dataset  # noqa: E402
from trainables.schema.evaluation import resolve_evaluation_config  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", default="embedded", choices=("embedded", "vit-large"))
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=128, help="the evaluation's batch size (default 128, its default)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each way after one warm-up (default 3)")
    p.add_argument("--threads", type=int, default=available_cores())
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="vit-large only: a tiny ViT, also on a CPU (checks the script)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device here")
    if args.pipeline == "vit-large" and args.device != "cuda" and not args.quick:
        p.error("--pipeline vit-large needs --device cuda (ViT-L at 224 px takes hours on a CPU)")
    return args


def model_and_points(args) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, float, int]:
    """The pipeline, the test images and labels, eps, the number of classes."""
    if args.pipeline == "vit-large":
        from gpu import EPS, build_pipeline

        pipeline = build_pipeline(torch.device(args.device), quick=args.quick)
        torch.manual_seed(1)
        images = torch.rand(64, 3, 32, 32)
        with torch.no_grad():  # every point starts correctly classified
            labels = pipeline(images.to(args.device)).argmax(dim=1).cpu()
        return pipeline, images, labels, EPS, 2
    from bench_pgd_vs_torchattacks import build_pipeline
    from bench_pgd_vs_torchattacks import parse_args as pgd_bench_args

    pipeline, _ = build_pipeline(
        pgd_bench_args(["--dataset", "digits", "--preprocessor", "cropd", "--device", args.device]),
        args.device,
        lambda line: print(line, file=sys.stderr),
    )
    test = load_dataset("digits", "test")
    return pipeline, test.float_images(), torch.as_tensor(test.labels), 8 / 255, test.num_classes


def sweep_once(model, images, labels, num_classes, config, device: str, shared: bool) -> tuple[float, dict]:
    evaluation.SWEEP_SHARED_BATCHES[torch.device(device).type] = shared
    order = evaluation.evaluation_order(labels, config["n_examples"], config["seed"])
    batches = evaluation.Batches(images, labels, order, config["batch_size"], device)
    with torch.no_grad():
        natural = evaluation.natural_predictions(model, batches, num_classes) == labels[order]
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.enable_grad():
        details = evaluation.sweeps(model, batches, natural, config, set())
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, details


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, images, labels, eps, num_classes = model_and_points(args)
    model.eval()
    config = resolve_evaluation_config(
        {"eps": eps, "batch_size": args.batch_size}, num_test=len(images), default_eps=eps
    )
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"pipeline {args.pipeline} | device {where} | torch {torch.__version__} | batch {args.batch_size}")
    seconds = {True: [], False: []}
    outcomes = {}
    for round_number in range(args.repeats + 1):
        for shared in (True, False) if round_number % 2 else (False, True):
            elapsed, details = sweep_once(model, images, labels, num_classes, config, args.device, shared)
            outcomes.setdefault(shared, (details["sweep_eps"], details["sweep_steps"]))
            if round_number:  # the first round warms up
                seconds[shared].append(elapsed)
    same = outcomes[True] == outcomes[False]
    shared_s, separate_s = statistics.median(seconds[True]), statistics.median(seconds[False])
    print(f"one run per setting: {separate_s:.2f} s (median of {args.repeats})")
    print(f"shared batches:      {shared_s:.2f} s")
    print(f"ratio (separate / shared): {separate_s / shared_s:.2f}x | same outcome: {same}")
    print(f"sweep eps: {outcomes[True][0]}\nsweep steps: {outcomes[True][1]}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "pipeline": args.pipeline,
                    "device": where,
                    "batch_size": args.batch_size,
                    "separate_s": seconds[False],
                    "shared_s": seconds[True],
                    "ratio": separate_s / shared_s,
                    "same_outcome": same,
                },
                indent=2,
            )
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
