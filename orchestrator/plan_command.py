"""`orchestrator plan SPEC [KEY=VALUE ...]`: the trials, shared stages, estimated cost and resources
of a sweep, and for Slurm the sbatch script with sbatch's own `--test-only` verdict.

Imports no torch and writes or submits nothing (orchestrator/plan.py says how estimates are made).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from .backend_registry import BACKENDS
from .sweep_command import add_slurm_options


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
    parser.add_argument("--backend", choices=BACKENDS, default=None, help="default: the spec's backend")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_slurm_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .plan import estimate, history_rows, planned_stages
    from .spec import load_spec
    from .sweep_paths import default_sweep_dir

    spec = load_spec(args.spec, args.overrides)
    history = args.history or [default_sweep_dir(spec.name).parent]
    plan = estimate(planned_stages(spec), history_rows(history))
    at_once, why = concurrency(spec, args)
    wall_s = plan.total_s / at_once if at_once else None  # None: no trial fits
    backend = args.backend or spec.backend
    slurm = slurm_check(spec, args, wall_s) if backend == "slurm" else None
    if args.format == "json":
        print(json.dumps(_as_json(spec, plan, at_once, why, wall_s, history, slurm), indent=2))
    else:
        print(_as_text(spec, plan, at_once, why, wall_s, history, slurm))
    return 0


def concurrency(spec, args) -> tuple[int, str]:
    """How many trials run at once, and why: the per-trial request against what is asked for."""
    cpu, gpu = spec.resources["cpu"], spec.resources["gpu"]
    limit = spec.max_concurrent or math.inf
    if (args.backend or spec.backend) == "slurm":
        settings = spec.slurm
        nodes = args.nodes or settings.nodes
        cpus = args.cpus_per_task or settings.cpus_per_task
        gpus = args.gpus_per_node if args.gpus_per_node is not None else settings.gpus_per_node
        if (args.slurm_mode or settings.mode) == "array":
            parallel = settings.array_parallelism or spec.num_trials
            return int(min(limit, parallel, spec.num_trials)), f"array tasks, {parallel} at a time"
        per_node = math.inf if not cpus else math.floor(cpus / cpu) if cpu else math.inf
        if gpu:
            per_node = min(per_node, math.floor((gpus or 0) / gpu))
        count = min(limit, nodes * per_node, spec.num_trials)
        return int(count if math.isfinite(count) else spec.num_trials), (
            f"{nodes} node(s) x {per_node} trial(s) per node (cpu {cpu}, gpu {gpu} per trial)"
        )
    cores = os.cpu_count() or 1
    count = min(limit, math.floor(cores / cpu) if cpu else math.inf, spec.num_trials)
    why = (
        ("no trial fits here: " if cpu > cores else "")
        + f"{cores} cores here / cpu {cpu} per trial"
        + (f", max_concurrent {spec.max_concurrent}" if spec.max_concurrent else "")
    )
    if gpu:
        why += f"; each trial also asks for {gpu} GPU (not counted here: at most {math.floor(1 / gpu)} per GPU)"
    return int(count if math.isfinite(count) else spec.num_trials), why


def slurm_check(spec, args, wall_s: float | None) -> dict:
    """The sbatch script the sweep would submit and sbatch's `--test-only` verdict on it."""
    from .backends.slurm.backend import SLURM_FLAGS
    from .backends.slurm.executor import make_executor, sbatch_script, sbatch_verdict

    settings = spec.slurm.with_overrides({key: getattr(args, flag, None) for flag, key in SLURM_FLAGS.items()})
    script = None
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        # submitit builds its executor only on a Slurm machine; the sweep itself refuses the same way.
        verdict = "not asked: no Slurm here (sbatch and srun not on PATH); plan on a login node for the script"
    else:
        with tempfile.TemporaryDirectory(prefix="cropd-plan-") as folder:
            executor = make_executor(settings, name=spec.name, resources=spec.resources, log_root=Path(folder))
            script = sbatch_script(executor, spec.num_trials if settings.mode == "array" else None)
        accepted, line = sbatch_verdict(script)
        verdict = ("accepted: " if accepted else "REFUSED: ") + line
    allowed_s = settings.time_min * 60 * (settings.max_requeues + 1)
    warning = None
    if settings.mode != "array" and wall_s is not None and wall_s > allowed_s:
        warning = (
            f"the estimated wall time ({wall_s / 3600:,.1f} h) is more than the time limit times the "
            f"requeues allowed ({settings.time_min} min x {settings.max_requeues + 1} = {allowed_s / 3600:,.1f} h): "
            "raise --time or slurm.max_requeues"
        )
    return {"mode": settings.mode, "script": script, "test_only": verdict, "warning": warning}


def _hours(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 3600:,.2f} h" if seconds >= 360 else f"{seconds:,.0f} s"


def _as_text(spec, plan, at_once, why, wall_s, history, slurm) -> str:
    seeds = spec.raw.get("seeds")
    points = len(spec.grid_points)
    lines = [
        f"plan for {spec.name} ({spec.path}{', ' + ' '.join(spec.overrides) if spec.overrides else ''}): "
        f"{spec.num_trials} trials = {points} grid points"
        + (f" ({points // len(seeds)} configurations x {len(seeds)} seeds)" if seeds else "")
        + (f" + {spec.search_trials} sampled by the search" if spec.search_trials else ""),
        "",
        f"stages, each shared one counted once (estimates from the stage times in {', '.join(map(str, history))}):",
    ]
    # Stages alike (same kind and settings, e.g. the clean heads of several trials) on one line.
    groups: dict[tuple[str, str], list] = {}
    for stage in plan.stages:
        groups.setdefault((stage.kind, stage.label), []).append(stage)
    order = ["foundation pre-training", "pre-processor", "head", "evaluation"]
    for (kind, label), alike in sorted(groups.items(), key=lambda item: order.index(item[0][0])):
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
        f"estimated total: {_hours(plan.total_s)} of trial slots"
        + (f" ({plan.unestimated} stage(s) without an estimate are not in it)" if plan.unestimated else ""),
        f"resources: cpu {spec.resources['cpu']}, gpu {spec.resources['gpu']} per trial; {at_once} at once ({why}); "
        + (f"wall about {_hours(wall_s)}" if wall_s is not None else "no wall time: no trial fits what is asked for"),
    ]
    if slurm is not None:
        lines += ["", f"slurm ({slurm['mode']} mode): sbatch --test-only: {slurm['test_only']}"]
        if slurm["warning"]:
            lines.append(f"warning: {slurm['warning']}")
        if slurm["script"] is not None:
            lines += ["the script that would be submitted:", slurm["script"].rstrip()]
    return "\n".join(lines)


def _as_json(spec, plan, at_once, why, wall_s, history, slurm) -> dict:
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
        "total_s": plan.total_s,
        "unestimated_stages": plan.unestimated,
        "at_once": at_once,
        "at_once_why": why,
        "wall_s": wall_s,
        "slurm": slurm,
    }
