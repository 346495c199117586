"""`orchestrator plan SPEC [KEY=VALUE ...]`: the trials, shared stages, estimated cost and resources
of a sweep, and what its backend checks before submitting (for Slurm: the sbatch script with
sbatch's own `--test-only` verdict).

Imports no torch and writes or submits nothing (orchestrator/spec/estimate.py says how estimates are made).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from orchestrator.spec.backends import add_backend_options, backend_names
from trainables.errors import UserError


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "plan",
        help="what a spec would run and cost, before running it (nothing is written or submitted)",
    )
    parser.add_argument("spec", type=Path, help="sweep spec, e.g. search_spaces/lambda_ablation.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override the spec as `sweep` does")
    parser.add_argument(
        "--history",
        type=Path,
        action="append",
        default=None,
        help="a sweep folder, or a folder of sweeps, whose recorded stage times the estimates come from "
        "(repeatable; default: the folder the spec's own sweep would go in, runs/)",
    )
    parser.add_argument(
        "--device",
        choices=_devices(),
        default=None,
        help="cost the stages on this device kind: earlier trials that ran on it, else its measured rates "
        "(orchestrator/spec/device_costs.py); default: every earlier trial, whatever it ran on",
    )
    parser.add_argument("--backend", choices=backend_names(), default=None, help="default: the spec's backend")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_backend_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.backends.registry import backend_class
    from orchestrator.spec.sweep_spec import load_spec

    spec = load_spec(args.spec, args.overrides)
    backend = backend_class(args.backend or spec.backend).from_options(spec, args)
    planned = make_plan(spec, backend, args.history, args.device)
    if args.format == "json":
        print(json.dumps({**_as_json(spec, *planned, backend.name), "device": args.device}, indent=2))
    else:
        plan, at_once, why, wall_s, history, check = planned
        lines = ["", *backend.plan_lines(check)] if check is not None else []
        print(_as_text(spec, plan, at_once, why, wall_s, history, lines, args.device))
    return 0


def _devices() -> tuple[str, ...]:
    from orchestrator.spec.device_costs import DEVICES

    return DEVICES


def make_plan(spec, backend, history: list[Path] | None, device: str | None = None):
    """The plan of `spec` on `backend`: (stage estimates, trials at once, why, wall seconds or None,
    the history folders read, the backend's own check); `history` None: the spec's runs/ folder;
    `device`: a device kind whose earlier trials and measured rates cost the stages."""
    from orchestrator.spec.estimate import estimate, history_rows, planned_stages
    from orchestrator.store.paths import default_sweep_dir

    for folder in history or []:  # named on purpose: a typo would silently mean "no history"
        if not Path(folder).is_dir():
            raise UserError(f"--history {folder}: no such folder (a sweep folder, or a folder of sweeps)")
    history = [Path(folder) for folder in history] if history else [default_sweep_dir(spec.name).parent]
    plan = estimate(planned_stages(spec), history_rows(history), device)
    at_once, why = backend.plan_concurrency(spec) or concurrency(spec)
    wall_s = plan.total_s / at_once if at_once else None  # None: no trial fits
    return plan, at_once, why, wall_s, history, backend.plan_check(spec, wall_s)


def plan_data(spec, backend, history: list[Path] | None = None, device: str | None = None) -> dict:
    """`orchestrator plan --format json`'s object (orchestrator.plan returns it)."""
    return {**_as_json(spec, *make_plan(spec, backend, history, device), backend.name), "device": device}


def concurrency(spec) -> tuple[int, str]:
    """How many trials run at once here, and why: the per-trial request against this machine's
    cores and GPUs. 0 when no trial fits (`sweep` would refuse to start here, and the reason says
    so); the plan is still printed, since planning a GPU study on a login node is what plan is for."""
    cpu, gpu = spec.resources["cpu"], spec.resources["gpu"]
    limit = spec.max_concurrent or math.inf
    from orchestrator.spec.machine import cpus_here, gpus_here

    cores, gpus = cpus_here(), gpus_here()
    count = min(
        limit,
        math.floor(cores / cpu) if cpu else math.inf,
        math.floor(gpus / gpu) if gpu else math.inf,
        spec.num_trials,
    )
    fits = cpu <= cores and gpu <= gpus
    why = (
        f"{cores} cores here / cpu {cpu:g} per trial"
        + (f", {gpus} GPUs here / gpu {gpu:g} per trial" if gpu else "")
        + (f", max_concurrent {spec.max_concurrent}" if spec.max_concurrent else "")
    )
    if not fits:
        why = (
            f"no trial fits here: {why}; `sweep` would refuse to start on this machine "
            "(--backend slurm plans it for a cluster)"
        )
    return int(count if math.isfinite(count) else spec.num_trials), why


def _hours(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 3600:,.2f} h" if seconds >= 360 else f"{seconds:,.0f} s"


def _total_text(plan) -> str:
    """The estimated trial-slot time: unknown without any estimate, a lower bound with some."""
    if plan.unestimated == len(plan.stages):
        return "unknown (no earlier sweep ran any of these stages; --history names where to look)"
    if plan.unestimated:
        return f"at least {_hours(plan.total_s)} of trial slots ({plan.unestimated} stage(s) without an estimate)"
    return f"{_hours(plan.total_s)} of trial slots"


def _wall_text(plan, wall_s: float | None) -> str:
    if wall_s is None:
        return "no wall time: no trial fits what is asked for"
    if plan.unestimated == len(plan.stages):
        return "wall unknown"
    return f"wall {'at least' if plan.unestimated else 'about'} {_hours(wall_s)}"


def _as_text(spec, plan, at_once, why, wall_s, history, backend_lines: list[str], device: str | None = None) -> str:
    from orchestrator.spec.estimate import STAGE_KINDS

    seeds = spec.raw.get("seeds")
    points = len(spec.grid_points)
    lines = [
        f"plan for {spec.name} ({spec.path}{', ' + ' '.join(spec.overrides) if spec.overrides else ''}): "
        f"{spec.num_trials} trials = {points} grid points"
        + (f" ({points // len(seeds)} configurations x {len(seeds)} seeds)" if seeds else "")
        + (f" + {spec.search_trials} sampled by the search" if spec.search_trials else ""),
        "",
        f"stages, each shared one counted once (estimates from the stage times in {', '.join(map(str, history))}"
        + (f" that ran on {device}, else its measured rates" if device else "")
        + "):",
    ]
    # Stages alike (same kind and settings, e.g. the clean heads of several trials) on one line.
    groups: dict[tuple[str, str], list] = {}
    for stage in plan.stages:
        groups.setdefault((stage.kind, stage.label), []).append(stage)
    for (kind, label), alike in sorted(groups.items(), key=lambda item: STAGE_KINDS.index(item[0][0])):
        trials = sum(stage.trials for stage in alike)
        known = [stage.estimate_s for stage in alike if stage.estimate_s is not None]
        each = f"{len(alike)} x " if len(alike) > 1 else ""
        total = _hours(sum(known)) if len(known) == len(alike) else "?" if not known else f">= {_hours(sum(known))}"
        lines.append(
            f"  {kind:<24} {each}{label}  [{trials} trial{'s' if trials != 1 else ''}]  {total}  ({alike[0].basis})"
        )
    counts = {}
    for stage in plan.stages:
        counts[stage.kind] = counts.get(stage.kind, 0) + 1
    lines += [
        "",
        "distinct stages: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()),
        "estimated total: " + _total_text(plan),
        f"resources: cpu {spec.resources['cpu']}, gpu {spec.resources['gpu']} per trial; {at_once} at once ({why}); "
        + _wall_text(plan, wall_s),
    ]
    return "\n".join(lines + backend_lines)


def _as_json(spec, plan, at_once, why, wall_s, history, check: dict | None, backend: str) -> dict:
    return {
        "name": spec.name,
        "spec": str(spec.path),
        "overrides": list(spec.overrides),
        "trials": spec.num_trials,
        "grid_points": len(spec.grid_points),
        "search_trials": spec.search_trials,
        "history": [str(h) for h in history],
        "stages": [
            {"kind": s.kind, "label": s.label, "trials": s.trials, "estimate_s": s.estimate_s, "basis": s.basis}
            for s in plan.stages
        ],
        # null when no stage has an estimate (unknown, not 0 s); a lower bound while some have none
        "total_s": None if plan.unestimated == len(plan.stages) else plan.total_s,
        "total_is_lower_bound": 0 < plan.unestimated < len(plan.stages),
        "unestimated_stages": plan.unestimated,
        "at_once": at_once,
        "at_once_why": why,
        "wall_s": None if plan.unestimated == len(plan.stages) else wall_s,
        "backend": backend,
        # the backend's own check under its name ("slurm": the sbatch script and its verdict)
        **({backend: check} if check is not None else {}),
    }
