"""Estimated GPU-hours of shipped paper specs on a device kind: `orchestrator plan --device` per spec.

Issue 18 asks, table by table, what a study costs before anyone spends it; issue 34 asks for one
estimator. This prints, per spec, the GPU-hours of each stage kind and the total as `orchestrator
plan SPEC --device h200` estimates them (orchestrator/spec/estimate.py with the measured rates of
orchestrator/spec/device_costs.py, whose docstring says where the model is rough): stages that
trials share (one robust pre-training, one pre-processor artifact) are counted once, as the sweep
runs them once. Earlier sweeps that ran on the device are used first when --history names them.

Run: python bench/gpu_hours.py search_spaces/table2.yaml [more specs] [--device h200] [--per-stage]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.spec.device_costs import DEVICES, Rates  # noqa: E402
from orchestrator.spec.estimate import estimate, history_rows, planned_stages  # noqa: E402
from orchestrator.spec.sweep_spec import load_spec  # noqa: E402


def hours(seconds: float | None) -> str:
    return f"{'unknown':>10}" if seconds is None else f"{seconds / 3600:10,.1f} h"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specs", nargs="+", type=Path)
    p.add_argument("--device", choices=DEVICES, default="h200")
    p.add_argument("--history", type=Path, action="append", default=[], help="sweeps that ran on the device")
    p.add_argument("--per-stage", action="store_true", help="one line per distinct stage too")
    args = p.parse_args(argv)
    source = Rates.of_device(args.device).source
    print(f"# GPU-hours on {args.device}: `orchestrator plan --device {args.device}` ({source})")
    for path in args.specs:
        spec = load_spec(path)
        plan = estimate(planned_stages(spec), history_rows(args.history), args.device)
        print(f"\n## {spec.name}: {spec.num_trials} trials")
        totals: dict[str, list[float | None]] = {}
        for stage in plan.stages:
            totals.setdefault(stage.kind, []).append(stage.estimate_s)
            if args.per_stage:
                print(f"  {stage.kind:<24} {stage.label}  [{stage.trials}]  {hours(stage.estimate_s)}")
        for kind, seconds in totals.items():
            known = [s for s in seconds if s is not None]
            partial = " at least" if known and len(known) < len(seconds) else ""
            print(f"  {kind:24s} {hours(sum(known) if known else None)}{partial}")
        unknown = f" ({plan.unestimated} stages not costed: embedded data or no rate)" if plan.unestimated else ""
        total = None if plan.unestimated == len(plan.stages) else plan.total_s
        bound = " at least" if total is not None and plan.unestimated else ""
        print(f"  {'total':24s} {hours(total)}{bound}{unknown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
