"""What a scheduler saved: one sweep run with early stopping against the same sweep run without.

    python bench/bench_early_stopping.py runs/embedded_asha runs/embedded_asha_off [--at 2]

Both folders hold finished runs of the same trials (search_spaces/embedded_asha.yaml and its
`scheduler=null name=embedded_asha_off` twin). Printed: the trials stopped and at which epoch;
the compute each run spent (pre-processor epochs, validation measurements, heads, evaluations, in
trial seconds from the epochs table and the rows) and their ratio; the best configuration each
run found on the objective; what the validation measurements cost; and, over the run without
the scheduler, how well the held-out robust estimate at epoch `--at` ranks the trials against
their final objective (Spearman's rho, Kendall's tau).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.store.parquet import read_state
from orchestrator.store.query import connect, frame


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stopped", type=Path, help="the sweep run with the scheduler")
    p.add_argument("full", type=Path, help="the same trials run without it")
    p.add_argument("--metric", default="val_acc_pgd5", help="the validation metric (default val_acc_pgd5)")
    p.add_argument("--at", type=int, default=2, help="the early epoch whose estimate is ranked (default 2)")
    return p.parse_args(argv)


def load(sweep_dir: Path):
    connection = connect(sweep_dir)
    trials = frame(connection, "SELECT * FROM trials")
    epochs = frame(connection, "SELECT * FROM epochs WHERE stage = 'preprocessor'")
    return trials, epochs


def settings_columns(trials) -> list[str]:
    """The config columns that differ between trials: what names a configuration."""
    return [c for c in trials.columns if c.startswith("preprocessor.") and trials[c].astype(str).nunique() > 1]


def compute(trials, epochs) -> dict[str, float]:
    """Trial seconds by part: pre-processor epochs, validation measurements, heads, evaluations."""
    parts = {
        "pre-processor epochs": float(epochs["epoch_time_s"].sum()),
        "validation": float(epochs["val_time_s"].fillna(0).sum()) if "val_time_s" in epochs else 0.0,
        "heads": float(trials["time_head_s"].fillna(0).sum()),
        "evaluations": float(trials["time_evaluation_s"].fillna(0).sum()),
    }
    parts["total"] = sum(parts.values())
    return parts


def best(trials, objective: str, mode: str, columns: list[str]) -> str:
    finished = trials[trials["status"] == "TERMINATED"]
    row = finished.loc[finished[objective].idxmax() if mode == "max" else finished[objective].idxmin()]
    return ", ".join(f"{c.split('.')[-1]} {row[c]:g}" for c in columns) + f": {objective} {row[objective]:.4f}"


def main(argv=None) -> int:
    from scipy.stats import kendalltau, spearmanr

    args = parse_args(argv)
    objective, mode = next(iter(read_state(args.full)["objectives"].items()))
    runs = {"with the scheduler": load(args.stopped), "without": load(args.full)}
    columns = settings_columns(runs["without"][0])
    print(f"=== Early stopping: {args.stopped} against {args.full} (objective {objective}, {mode}) ===")
    totals = {}
    for name, (trials, epochs) in runs.items():
        counts = trials["status"].value_counts().to_dict()
        parts = compute(trials, epochs)
        totals[name] = parts["total"]
        print(
            f"{name}: {len(trials)} trials {counts}; trial seconds "
            + ", ".join(f"{k} {v:.0f}" for k, v in parts.items())
        )
        print(f"  best: {best(trials, objective, mode, columns)}")
        stopped = trials[trials["status"] == "STOPPED"]
        if len(stopped):
            at = stopped["stopped_epoch"].value_counts().sort_index().to_dict()
            print(f"  stopped: {len(stopped)} trials, by epoch {at}")
        if parts["total"]:
            print(f"  validation cost: {parts['validation'] / parts['total']:.1%} of the trial seconds")
    print(f"compute with / without the scheduler: {totals['with the scheduler'] / totals['without']:.2f}")

    trials, epochs = runs["without"]
    early = epochs[epochs["epoch"] == args.at].set_index("config_hash")[args.metric]
    final = trials.set_index("config_hash")[objective]
    joined = final.to_frame().join(early, how="inner").dropna()
    rho, rho_p = spearmanr(joined[args.metric], joined[objective])
    tau, tau_p = kendalltau(joined[args.metric], joined[objective])
    print(
        f"{args.metric} at epoch {args.at} against the final {objective}, {len(joined)} trials of the run without "
        f"the scheduler: Spearman rho {rho:.2f} (p {rho_p:.3f}), Kendall tau {tau:.2f} (p {tau_p:.3f})"
    )
    last = epochs.sort_values("epoch").groupby("config_hash").tail(1).set_index("config_hash")[args.metric]
    joined_last = final.to_frame().join(last, how="inner").dropna()
    rho_last, _ = spearmanr(joined_last[args.metric], joined_last[objective])
    print(f"  (at the last epoch: Spearman rho {rho_last:.2f})")
    for config_hash, row in joined.sort_values(objective, ascending=False).iterrows():
        settings = trials.set_index("config_hash").loc[config_hash, columns]
        shown = ", ".join(f"{c.split('.')[-1]} {v:g}" for c, v in settings.items())
        print(f"  {shown}: {args.metric}@{args.at} {row[args.metric]:.3f}, final {objective} {row[objective]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
