"""The `compute:` switches on the device at hand: one embedded trial per setting, its stage times and accuracies.

For the day a GPU is lent (the `device` tool): does each switch run on CUDA, what does it cost or
save per stage, and do the accuracies move. The same trial (embedded foundation and digits, a
CRoPD pre-processor, a clean head, PGD-10/20) under: fp32; bf16 training (+ TF32); fp32 training
with bf16 evaluation; fp32 with torch.compile. Each in its own workdir, so nothing is reused
between settings except the embedded foundation (pre-trained once, first, and not timed).

    python bench/gpu_switches.py [--device cuda] [--epochs 20] [--n 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from trainables.foundation import load_foundation  # noqa: E402
from trainables.schema.results import WALL_STAGES, stage, time_column  # noqa: E402
from trainables.trial import run_trial  # noqa: E402

SETTINGS = {
    "fp32": {},
    "bf16 training + tf32": {"autocast": "bf16", "tf32": True},
    "bf16 evaluation": {"evaluation_autocast": True},
    "compile": {"compile": True},
}
# The cost table's stages that the trial runs itself (its foundation is pre-trained first, untimed).
STAGES = tuple(name for name in WALL_STAGES if stage(name).cost)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=20, help="pre-processor epochs")
    parser.add_argument("--head-epochs", type=int, default=20)
    parser.add_argument("--n", type=int, default=200, help="test points attacked")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names from SETTINGS")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gpu-switches-"))
    os.environ.setdefault("CROPD_CACHE", str(root / "cache"))
    foundation = {"name": "embedded"}
    started = time.perf_counter()
    load_foundation(foundation, device=args.device)  # the embedded MAE pre-training, once, untimed below
    print(
        f"device {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}), "
        f"torch {torch.__version__}; embedded foundation ready in {time.perf_counter() - started:.1f} s"
    )
    rows = []
    for name in args.settings.split(","):
        config = {
            "data": {"dataset": "digits"},
            "foundation": foundation,
            "preprocessor": {"kind": "cropd", "lambda": 10, "epochs": args.epochs, "batch_size": 64, "lr": 2e-3},
            "head": {"epochs": args.head_epochs},
            "evaluation": {"n_examples": args.n, "attacks": ["pgd10", "pgd20"]},
            **({"compute": SETTINGS[name]} if SETTINGS[name] else {}),
        }
        started = time.perf_counter()
        result = run_trial(config, root / name.replace(" ", "_").replace("+", ""), device=args.device)
        row = {
            "setting": name,
            "wall_s": round(time.perf_counter() - started, 1),
            **{f"{name}_s": round(result[time_column(name)], 1) for name in STAGES},
            **{metric: round(result[metric], 4) for metric in ("acc_natural", "acc_pgd10", "acc_pgd20")},
            "flags": ",".join(result["integrity_flags"]),
        }
        rows.append(row)
        print(" | ".join(f"{key} {value}" for key, value in row.items()), flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
