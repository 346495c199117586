"""Stage seconds of one sweep with stages shared across trials against the same sweep without sharing.

    python bench/bench_stage_reuse.py [--spec search_spaces/embedded_table1.yaml] [--seeds 0]
        [--preprocessor-epochs N] [--no-autoattack] [--json PATH]

Both runs use this checkout, the same spec and a fresh sweep folder each; the embedded foundation
is pre-trained once beforehand into a fresh cache both share (untimed: a project pays it once).
Sharing off (CROPD_SHARE_STAGES=0) gives every trial its own pre-processor and its own clean
features; on (the default), trials behind the same pre-processor reuse the artifact and the
features (trainables/shared_features.py). Printed: each run's slot-seconds (its trials' durations
summed) and stage seconds spent (a reused pre-processor counts 0: its row carries the training cost
of the artifact), their ratios on / off (issue 17's target: <= 0.6), the best ratio the spec allows
(only the reused pre-processors' training can go; heads and evaluations are per trial), the
ratio at equal machine speed (from the pre-processors both runs trained), and per trial what it
reused.
The machine's speed drifts between runs (up to 30% on this 2-core machine): compare the two orders.

The whole embedded_table1 (36 trials, AutoAttack on 12) is about an hour per run on 2 cores; the
options scale it down, and say so in the output: --seeds keeps only those seeds of the grid,
--preprocessor-epochs sets trial.preprocessor.epochs, --no-autoattack drops AutoAttack.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_speedup import WARM_FOUNDATION  # noqa: E402

from trainables.schema.results import WALL_STAGES, time_column  # noqa: E402

# A trial's stages but loading the data (as this bench has always counted them); the other time_
# columns (natural, pgd10, integrity, ...) are parts of evaluation.
STAGES = tuple(stage for stage in WALL_STAGES if stage != "data")
PREPROCESSOR_TIME = time_column("preprocessor")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default="search_spaces/embedded_table1.yaml")
    p.add_argument("--seeds", default=None, help="comma-separated seeds to keep (default: the spec's)")
    p.add_argument("--preprocessor-epochs", type=int, default=None)
    p.add_argument("--no-autoattack", action="store_true")
    p.add_argument("--order", default="on,off", choices=("on,off", "off,on"), help="which run first (default on,off)")
    p.add_argument("--out", type=Path, default=None, help="keep the sweeps here (default: a temp folder)")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def scaled_spec(raw: dict, args) -> tuple[dict, list[str]]:
    """The spec with the asked-for reductions, and a line per reduction."""
    changes = []
    trial = raw.setdefault("trial", {})
    if args.preprocessor_epochs is not None:
        trial.setdefault("preprocessor", {})["epochs"] = args.preprocessor_epochs
        changes.append(f"trial.preprocessor.epochs = {args.preprocessor_epochs}")
    if args.no_autoattack:
        evaluation = trial.setdefault("evaluation", {})
        evaluation["attacks"] = [a for a in evaluation.get("attacks", []) if a != "autoattack"]
        changes.append("no AutoAttack")
    grid = raw.get("grid", [])
    entries = grid if isinstance(grid, list) else [grid]
    if args.no_autoattack:
        for entry in entries:
            entry.pop("evaluation.autoattack_examples", None)
    if args.seeds is not None:
        keep = [int(s) for s in args.seeds.split(",")]
        if "seeds" in raw:
            raw["seeds"] = [s for s in raw["seeds"] if s in keep]
        for entry in entries:
            if "seed" in entry:
                entry["seed"] = [s for s in entry["seed"] if s in keep]
        entries = [e for e in entries if e.get("seed", True) != []]
        changes.append(f"seeds {keep} only")
    raw["grid"] = entries if isinstance(grid, list) else entries[0]
    return raw, changes


def run(spec: Path, sweep_dir: Path, cache: Path, share: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CROPD_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    env["CROPD_SHARE_STAGES"] = "1" if share else "0"
    log = sweep_dir.with_suffix(".log")
    started = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", "sweep", str(spec), "--out", str(sweep_dir)],
            cwd=REPO,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        raise SystemExit(f"sharing {'on' if share else 'off'}: the sweep failed (exit {done.returncode}); see {log}")
    return {"wall_s": time.perf_counter() - started, **spent_seconds(sweep_dir)}


def spent_seconds(sweep_dir: Path) -> dict:
    """What the trials spent: slot-seconds (each trial's finish minus start, summed) and stage
    seconds. A row's pre-processor time is the artifact's training cost even when the trial reused
    it (the paper's cost tables want that), so a reused one counts 0 here: its load is in the slot."""
    from orchestrator.store.query import load_trials

    trials = load_trials(sweep_dir)
    reused = preprocessor_reused(trials)
    trained = ~reused & (trials["preprocessor.kind"] != "identity")
    slot_s = float((trials["finished_at"] - trials["started_at"]).dt.total_seconds().sum())
    stages = {}
    for stage in STAGES:
        seconds = trials[time_column(stage)].fillna(0.0)
        if stage == "preprocessor":
            seconds = seconds.where(~reused, 0.0)
        stages[stage] = round(float(seconds.sum()), 1)
    return {"slot_s": round(slot_s, 1), "stages_s": stages, "trained": int(trained.sum())}


def preprocessor_reused(trials):
    """Per row: whether the trial loaded its pre-processor rather than training it."""
    return trials["preprocessor_reused"].fillna(False).astype(bool)


def best_ratio(off, on, off_total: float) -> float:
    """What sharing could reach if it removed nothing but the pre-processor training of the trials
    whose pre-processor the on run reused (their heads and evaluations are per trial). `off` and
    `on`: the two runs' trial rows, indexed by config_hash."""
    reused = on.index[preprocessor_reused(on)]
    return (off_total - float(off[PREPROCESSOR_TIME].reindex(reused).fillna(0.0).sum())) / off_total


def same_work_speed(off, on) -> float:
    """On-run seconds over off-run seconds for identical work: the pre-processors both runs trained
    (the same weights, bit for bit, on the CPU). Below 1: the machine ran faster during the on run."""
    both = on.index[~preprocessor_reused(on) & (on[PREPROCESSOR_TIME] > 0)]
    return float(on.loc[both, PREPROCESSOR_TIME].sum()) / float(off.loc[both, PREPROCESSOR_TIME].sum())


def reuse_table(sweep_dir: Path) -> list[str]:
    from orchestrator.store.query import load_trials

    trials = load_trials(sweep_dir).sort_values("trial_id")
    lines = []
    for _, row in trials.iterrows():
        kind = row["preprocessor.kind"]
        name = kind + (f" lambda {row['preprocessor.lambda']:g}" if kind == "cropd" else "")
        features = row.get("features_reused")
        features = json.loads(features) if isinstance(features, str) else list(features if features is not None else [])
        reused = [*(["pre-processor"] if row.get("preprocessor_reused") else []), *features]
        line = f"{row['trial_id']} | {name} | {row['head.mode']} head | seed {row['seed']} | reused: "
        lines.append(line + (", ".join(reused) or "-"))
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    raw, changes = scaled_spec(yaml.safe_load((REPO / args.spec).read_text()), args)
    root = args.out or Path(tempfile.mkdtemp(prefix="bench-stage-reuse-"))
    root.mkdir(parents=True, exist_ok=True)
    spec = root / Path(args.spec).name
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    cache = root / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CROPD_CACHE": str(cache)}
    subprocess.run([sys.executable, "-c", WARM_FOUNDATION], cwd=REPO, env=env, check=True)
    print(f"spec {args.spec}" + (f" scaled: {'; '.join(changes)}" if changes else " as it is"), flush=True)
    figures = {}
    for side in args.order.split(","):
        share = side == "on"
        figures[side] = run(spec, root / f"sharing-{side}", cache, share)
        f = figures[side]
        print(
            f"sharing {side:3}: wall {f['wall_s']:.0f} s, slot-seconds {f['slot_s']:.0f}, "
            f"pre-processors trained {f['trained']}, stage seconds spent {f['stages_s']}",
            flush=True,
        )
    total = {side: sum(figures[side]["stages_s"].values()) for side in figures}
    ratio = total["on"] / total["off"]
    slot_ratio = figures["on"]["slot_s"] / figures["off"]["slot_s"]
    print(
        f"stage seconds spent ({' + '.join(STAGES)}): on {total['on']:.0f}, off {total['off']:.0f}, ratio {ratio:.2f}"
    )
    print(
        f"slot-seconds: ratio on/off {slot_ratio:.2f}; "
        f"wall ratio {figures['on']['wall_s'] / figures['off']['wall_s']:.2f}"
    )
    from orchestrator.store.query import load_trials

    off, on = (load_trials(root / f"sharing-{side}").set_index("config_hash") for side in ("off", "on"))
    best = best_ratio(off, on, total["off"])
    print(
        f"best ratio this spec allows: {best:.2f} (the off run's stage seconds less its training of the "
        "pre-processors the on run reused, over all of them)"
    )
    speed = same_work_speed(off, on)
    print(
        f"the same training in both runs (pre-processors both trained) took {speed:.2f}x as long in the on run "
        f"as in the off run; at equal speed the ratio would be {ratio / speed:.2f}"
    )
    print("\n".join(reuse_table(root / "sharing-on")))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "spec": args.spec,
                    "changes": changes,
                    **figures,
                    "ratio": ratio,
                    "slot_ratio": slot_ratio,
                    "best_ratio": best,
                    "same_work_speed": speed,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
