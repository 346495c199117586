"""Per-step time and peak memory of one CRoPD training step (augment, FGSM, MSE + lambda * NT-Xent, backward, AdamW).

Each (architecture, device, batch) case runs in its own subprocess, so the peak memory reported is that case's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import available_cores  # noqa: E402

# Put this checkout first on the path, so `python bench/bench_preprocessor_step.py` measures the code
# next to it even where the project is not installed (or another copy of it is).
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

IMAGE_SIZE = 32
DEFAULT_ARCHS = ("paper32", "tiny")
# paper32 batch 32 is the paper's Table 6; tiny is the embedded default's batch size.
DEFAULT_BATCH = {"paper32": 32, "tiny": 64}
# paper32 takes ~15-20 s a step on a 2-core CPU, so fewer timed steps by default.
DEFAULT_STEPS = {"paper32": 3, "tiny": 5}
# The paper's CRoPD settings; FGSM with random start as in the project's default config.
STEP_SETTINGS = {"kind": "cropd", "lambda": 1.0, "temperature": 0.5, "eps": 8 / 255, "fgsm_random_start": True}
MIB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default=",".join(DEFAULT_ARCHS), help="comma-separated presets (default: paper32,tiny)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--batch-sizes",
        action="append",
        default=[],
        metavar="[ARCH=]B[,B...]",
        help="batch sizes for ARCH (repeatable), or for every arch without ARCH=; "
        f"default {', '.join(f'{a}={b}' for a, b in DEFAULT_BATCH.items())}",
    )
    p.add_argument("--steps", type=int, default=None, help=f"timed steps per case (default {DEFAULT_STEPS})")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before the timed ones (default 2)")
    p.add_argument("--threads", type=int, default=available_cores(), help="torch.set_num_threads (default: all cores)")
    p.add_argument(
        "--bf16", action="store_true", help="CUDA only: torch.autocast(bfloat16) around the forward and loss"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here as JSON")
    # Internal: the parent re-invokes this script once per case with these.
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)
    p.add_argument("--case-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    args.archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    if not args.archs:
        p.error("--arch: give at least one preset")
    if args.bf16 and args.device != "cuda":
        p.error("--bf16 is for --device cuda only (CPU bf16 autocast is a different, slower code path)")
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    args.batches = {a: [DEFAULT_BATCH.get(a, 64)] for a in args.archs}
    for spec in args.batch_sizes:
        arch, _, sizes = spec.rpartition("=")
        try:
            values = [int(s) for s in sizes.split(",") if s.strip()]
        except ValueError:
            p.error(f"--batch-sizes {spec!r}: expected [ARCH=]B[,B...] with integer B")
        if not values or min(values) < 2:
            p.error(f"--batch-sizes {spec!r}: batch sizes must be >= 2 (NT-Xent takes negatives from the batch)")
        if arch and arch not in args.archs:
            p.error(f"--batch-sizes {spec!r}: {arch!r} is not in --arch {args.arch}")
        for a in [arch] if arch else args.archs:
            args.batches[a] = values
    return args


# --- one case, in its own process ---------------------------------------------------------------


def current_rss_bytes() -> int | None:
    """Resident set size now (Linux /proc); None elsewhere, where only the peak is reported."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_case(args: argparse.Namespace) -> dict:
    import torch

    from trainables.artifacts import count_parameters
    from trainables.augmentation import augment
    from trainables.preprocessors import MaskedAutoencoder, resolve_preprocessor_config
    from trainables.preprocessors.objectives import cropd_step

    arch_name, batch = args.case.split(":")
    batch, device = int(batch), torch.device(args.device)
    steps = args.steps if args.steps is not None else DEFAULT_STEPS.get(arch_name, 5)
    torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"

    # The project's own config resolution, so the preset expands exactly as a training run's would.
    cfg = resolve_preprocessor_config(
        {**STEP_SETTINGS, "arch": arch_name, "batch_size": batch, "seed": args.seed}, image_size=IMAGE_SIZE
    )
    torch.manual_seed(args.seed)
    model = MaskedAutoencoder(cfg["arch"], IMAGE_SIZE).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    # Every batch made up front so the timed steps do not include making data. They stay on the CPU,
    # as in fit.py: the batch moves to the device and is augmented there (trainables/augmentation.py).
    generator = torch.Generator().manual_seed(args.seed)
    batches = [torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator) for _ in range(args.warmup + steps)]
    labels = torch.zeros(batch, dtype=torch.long, device=device)  # cropd_step ignores labels

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def one_step(x_cpu: torch.Tensor) -> torch.Tensor:
        x = augment(x_cpu.to(device, non_blocking=True))
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.bf16):
            terms = cropd_step(model, x, labels, cfg)
        optimizer.zero_grad(set_to_none=True)
        # Backward outside autocast, as torch recommends; it reuses the forward's dtypes anyway.
        terms["loss"].backward()
        optimizer.step()
        return terms["loss"].detach()

    # Baseline taken before the first step: model, data and libraries are in, AdamW's state
    # (allocated lazily at its first step), activations and allocator caches are not.
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        baseline = current_rss_bytes()

    times, loss = [], None
    for i, x_cpu in enumerate(batches):
        sync()
        started = time.perf_counter()
        loss = one_step(x_cpu)
        sync()  # CUDA runs asynchronously: without this the clock would stop before the work does
        if i >= args.warmup:
            times.append(time.perf_counter() - started)

    if cuda:
        peak, mem_kind = torch.cuda.max_memory_allocated(device), "cuda max_memory_allocated"
        device_name = torch.cuda.get_device_name(device)
    else:
        peak, mem_kind = peak_rss_bytes(), "peak RSS (ru_maxrss)"
        device_name = cpu_name()
    median = statistics.median(times)
    return {
        "arch": arch_name,
        "device": args.device,
        "batch": batch,
        "bf16": args.bf16,
        "params": count_parameters(model),
        "warmup_steps": args.warmup,
        "timed_steps": steps,
        "step_ms": [t * 1000 for t in times],
        "median_ms": median * 1000,
        "min_ms": min(times) * 1000,
        "images_per_s": batch / median,
        "mem_kind": mem_kind,
        "peak_mem_mib": peak / MIB,
        "mem_before_first_step_mib": None if baseline is None else baseline / MIB,
        "mem_increase_mib": None if baseline is None else (peak - baseline) / MIB,
        "last_loss": float(loss),
        "loss_finite": bool(torch.isfinite(loss)),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device_name": device_name,
            "cpu_count": os.cpu_count(),
            "cores_available": available_cores(),
            "threads": torch.get_num_threads(),
            "cuda": torch.version.cuda if cuda else None,
        },
    }


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- the parent: one subprocess per case, then the table ------------------------------------------


def case_command(args: argparse.Namespace, arch: str, batch: int, out: Path) -> list[str]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--case",
        f"{arch}:{batch}",
        "--case-out",
        str(out),
        "--device",
        args.device,
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
    ]
    if args.steps is not None:
        cmd += ["--steps", str(args.steps)]
    if args.bf16:
        cmd.append("--bf16")
    return cmd


def check_cases(args: argparse.Namespace) -> str | None:
    """Fail before spending minutes: unknown presets, ones that do not fit 32px, no CUDA."""
    from trainables.errors import ConfigError
    from trainables.preprocessors import resolve_preprocessor_config

    for arch in args.archs:
        try:
            resolve_preprocessor_config({**STEP_SETTINGS, "arch": arch}, image_size=IMAGE_SIZE)
        except ConfigError as exc:
            return f"--arch {arch}: {exc}"
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "--device cuda: torch sees no CUDA device here"
    return None


def print_table(results: list[dict], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 120)  # rich assumes 80 columns when piped, which wraps every header
    ok = [r for r in results if "error" not in r]
    m = ok[0]["machine"] if ok else None
    if m:
        where = m["device_name"] + (f" (CUDA {m['cuda']})" if m["cuda"] else "")
        console.print(
            f"torch {m['torch']} | python {m['python']} | {args.device}: {where} | "
            f"CPUs {m['cpu_count']} ({m['cores_available']} available) | torch threads {m['threads']}"
        )
    # Other processes on the same cores distort CPU timings badly (OpenMP threads wait on each other).
    if getattr(args, "load_at_start", None) is not None:
        console.print(f"1-min load average before the first case: {args.load_at_start:.2f}")
    mem_title = "peak CUDA alloc" if args.device == "cuda" else "peak RSS"
    table = Table(
        title=f"CRoPD training step, {IMAGE_SIZE}x{IMAGE_SIZE}, lambda 1, tau 0.5, eps 8/255"
        + (", bf16 autocast" if args.bf16 else ", fp32")
    )
    for name in (
        "arch",
        "batch",
        "params",
        "warm+timed",
        "median ms",
        "min ms",
        "images/s",
        f"{mem_title} MiB",
        "+ over pre-step MiB",
    ):
        table.add_column(name, justify="left" if name == "arch" else "right", no_wrap=True)
    for r in results:
        if "error" in r:
            table.add_row(r["arch"], str(r["batch"]), "", "", "[red]failed[/red]", "", "", "", r["error"][:40])
            continue
        increase = "n/a" if r["mem_increase_mib"] is None else f"{r['mem_increase_mib']:,.0f}"
        table.add_row(
            r["arch"],
            str(r["batch"]),
            f"{r['params']:,}",
            f"{r['warmup_steps']}+{r['timed_steps']}",
            f"{r['median_ms']:,.0f}",
            f"{r['min_ms']:,.0f}",
            f"{r['images_per_s']:,.1f}",
            f"{r['peak_mem_mib']:,.0f}",
            increase,
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.case:
        result = run_case(args)
        args.case_out.write_text(json.dumps(result))
        return 0

    problem = check_cases(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    args.load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-cropd-") as scratch:
        for arch in args.archs:
            for batch in args.batches[arch]:
                out = Path(scratch) / f"{arch}-{batch}.json"
                print(f"... {arch} batch {batch} on {args.device}", file=sys.stderr, flush=True)
                # The child's stderr (warnings, tracebacks) goes straight through; its result comes back
                # as a file, so nothing it prints can corrupt it.
                done = subprocess.run(case_command(args, arch, batch, out), stdout=sys.stderr)
                if done.returncode == 0 and out.is_file():
                    results.append(json.loads(out.read_text()))
                else:
                    # One case failing (e.g. out of memory at a big batch) should not lose the others.
                    results.append(
                        {
                            "arch": arch,
                            "batch": batch,
                            "device": args.device,
                            "error": f"subprocess exit status {done.returncode}",
                        }
                    )
    print_table(results, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {
            **STEP_SETTINGS,
            "image_size": IMAGE_SIZE,
            "device": args.device,
            "bf16": args.bf16,
            "warmup_steps": args.warmup,
            "threads": args.threads,
            "seed": args.seed,
            "load_average_1min_at_start": args.load_at_start,
        }
        args.json.write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
