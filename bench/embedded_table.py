"""The paper's Table 1 on the embedded data: Identity, Vanilla, ARAE, CRoPD (lambda 1, 10) with
clean and robust heads, natural / PGD-10 / PGD-20 / AutoAttack with 95% bootstrap bounds.

Runs each trial through trainables.trial.run_trial (resumable: rerun to continue). Slow on CPU:
the robust heads attack the whole pipeline every batch, and AutoAttack dominates evaluation.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from trainables.trial import run_trial  # noqa: E402

ROWS = [("identity", None), ("vanilla", None), ("arae", None), ("cropd", 1.0), ("cropd", 10.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/embedded_table"))
    parser.add_argument("--artifacts", type=Path, default=None, help="folder of fitted pre-processors to reuse")
    parser.add_argument("--pre-epochs", type=int, default=40)
    parser.add_argument("--clean-head-epochs", type=int, default=100)
    parser.add_argument("--robust-head-epochs", type=int, default=20)
    parser.add_argument("--autoattack-examples", type=int, default=32)
    parser.add_argument("--heads", default="clean,robust")
    parser.add_argument("--only", default=None, help="comma-separated trial names to run (e.g. cropd-lambda10-robust)")
    args = parser.parse_args()
    console = Console(width=200)
    table = Table(title="embedded digits2 (binary), eps 8/255; accuracies in %, [95% bootstrap bounds]")
    for column in ("pre-processor", "head", "natural", "PGD-10", "PGD-20", "AutoAttack", "integrity flags", "time (s)"):
        table.add_column(column)
    for head in args.heads.split(","):
        for kind, lam in ROWS:
            preprocessor = {"kind": kind, "epochs": args.pre_epochs, "lr": 2e-3, "batch_size": 32, "warmup_epochs": 2}
            if lam is not None:
                preprocessor["lambda"] = lam
            epochs = args.clean_head_epochs if head == "clean" else args.robust_head_epochs
            head_cfg = {"mode": head, "epochs": epochs}
            if head == "robust":
                head_cfg["milestones"] = [epochs // 2, 3 * epochs // 4]
            config = {
                "data": {"dataset": "digits2"},
                "foundation": {"name": "embedded"},
                "preprocessor": preprocessor,
                "head": head_cfg,
                "evaluation": {"autoattack_examples": args.autoattack_examples},
            }
            name = f"{kind}{'' if lam is None else f'-lambda{lam:g}'}-{head}"
            if args.only and name not in args.only.split(","):
                continue
            console.print(f"trial {name} ...")
            result = run_trial(config, args.out / name, artifacts=args.artifacts or args.out / "artifacts")

            def cell(metric: str) -> str:
                low, high = result[metric + "_lo"], result[metric + "_hi"]
                return f"{100 * result[metric]:.1f} [{100 * low:.1f}, {100 * high:.1f}]"

            total = sum(
                value
                for key, value in result.items()
                if key.startswith("time_") and key.endswith("_s") and key.count("_") == 2
            )
            row = [
                kind + ("" if lam is None else f" λ={lam:g}"),
                head,
                cell("acc_natural"),
                cell("acc_pgd10"),
                cell("acc_pgd20"),
                cell("acc_autoattack"),
                ", ".join(result["integrity_flags"]) or "-",
                f"{total:.0f}",
            ]
            table.add_row(*row)
            (args.out / "table.jsonl").parent.mkdir(parents=True, exist_ok=True)
            with open(args.out / "table.jsonl", "a") as handle:
                handle.write(
                    json.dumps(
                        {
                            "trial": name,
                            **{
                                k: v
                                for k, v in result.items()
                                if k.startswith(("acc_", "time_", "params_", "integrity_flags", "sweep_"))
                            },
                        }
                    )
                    + "\n"
                )
    console.print(table)


if __name__ == "__main__":
    main()
