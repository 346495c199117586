"""Choose a study's budgets before looking at robust accuracy: one trial, natural accuracy and stage times only.

embedded_table1.yaml's budgets (data fraction, auto-encoder size and epochs, head epochs) were
chosen with this: it runs one trial of a spec's trial section with overrides and prints its
natural accuracy and the time of each stage as one JSON line, and never the robust accuracies
(any attacks given are run for their time only). Run two at a time, one thread each, to measure
what a sweep of two concurrent trials costs:

    python bench/budget_probe.py search_spaces/embedded_table1.yaml preprocessor.kind=cropd preprocessor.lambda=10
    python bench/budget_probe.py search_spaces/embedded_table1.yaml head.mode=robust head.epochs=5 --attacks pgd10,pgd20

Trials and artifacts go under --out (default runs/budget_probe), so a repeated probe reuses the
pre-processor it trained.
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
    parser.add_argument("spec", type=Path, help="a sweep spec whose trial section is the base")
    parser.add_argument(
        "overrides", nargs="*", help="dotted key=value (YAML values), e.g. preprocessor.epochs=40 seed=1"
    )
    parser.add_argument(
        "--attacks", default="", help="attacks to time (their accuracies are not printed), e.g. pgd10,pgd20,autoattack"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/budget_probe"))
    args = parser.parse_args()

    import torch

    from orchestrator.spec.sweep_spec import apply_overrides, load_spec
    from trainables.artifacts import config_hash
    from trainables.schema import validate_trial_config
    from trainables.trial import run_trial

    torch.set_num_threads(args.threads)
    overrides = {}
    for text in args.overrides:
        key, _, value = text.partition("=")
        overrides[key] = yaml.safe_load(value)
    config = apply_overrides(load_spec(args.spec).trial, overrides)
    attacks = [name for name in args.attacks.split(",") if name]
    config["evaluation"] = {
        **config.get("evaluation", {}),
        "attacks": attacks,
        "integrity": bool(attacks),
        "autoattack_examples": config.get("evaluation", {}).get("autoattack_examples") or 100,
    }
    key = config_hash(validate_trial_config(config))
    started = time.perf_counter()
    result = run_trial(config, args.out / "trials" / key, artifacts=args.out / "artifacts")
    print(
        json.dumps(
            {
                "overrides": overrides,
                "attacks": attacks,
                "threads": args.threads,
                "config_hash": key,
                # Budgets are chosen on the validation split's clean accuracy (the test one is shown
                # for comparison with earlier probes); no robust number is printed.
                "val_acc_natural": round(result["val_acc_natural"], 4) if "val_acc_natural" in result else None,
                "acc_natural": round(result["acc_natural"], 4),
                "wall_s": round(time.perf_counter() - started, 1),
                **{name: round(value, 1) for name, value in result.items() if name.startswith("time_")},
            }
        )
    )


if __name__ == "__main__":
    main()
