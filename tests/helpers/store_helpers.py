"""A results store built by hand: trial rows written by the same writer the trials use.

A plain module in tests/helpers/ (pyproject's pytest `pythonpath` puts it on sys.path), shared by the analysis and the
paired-comparison tests.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from orchestrator.store.parquet import write_trial
from orchestrator.store.rows import trial_row
from trainables.artifacts import config_hash

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def add_trial(
    sweep_dir: Path,
    *,
    kind: str,
    lam=None,
    tau=None,
    seed=0,
    natural: float,
    pgd20: float,
    status="TERMINATED",
    head="clean",
    flags=(),
    minute=0,
    extra_metrics: dict | None = None,
    foundation: dict | None = None,
    sweep: str = "hand",
    arch: dict | None = None,
    **data,
) -> str:
    """One trial row as a real trial writes it; returns its config hash. `extra_metrics` adds to
    (or replaces) the metrics a finished trial records."""
    preprocessor = {
        "kind": kind,
        "seed": seed,
        **({"lambda": lam} if lam is not None else {}),
        **({"temperature": tau} if tau is not None else {}),
        **({"arch": arch} if arch is not None else {}),
    }
    config = {
        "data": {"dataset": "digits", "data_fraction": 1.0, "seed": seed, **data},
        "preprocessor": preprocessor,
        "head": {"mode": head, "seed": seed},
        **({"foundation": foundation} if foundation is not None else {}),
    }
    metrics = (
        None
        if status != "TERMINATED"
        else {
            "acc_natural": natural,
            "acc_natural_lo": natural - 0.02,
            "acc_natural_hi": natural + 0.03,
            "acc_pgd20": pgd20,
            "acc_pgd20_lo": pgd20 - 0.04,
            "acc_pgd20_hi": pgd20 + 0.01,
            "n_natural": 200,
            "time_head_s": 1.5,
            "integrity_flags": list(flags),
            **(extra_metrics or {}),
        }
    )
    key = config_hash(config)
    write_trial(
        sweep_dir,
        trial_row(
            sweep=sweep,
            trial_id=f"t-{key[:6]}",
            config_hash=key,
            config=config,
            status=status,
            metrics=metrics,
            error=None if metrics else "RuntimeError: boom",
            started_at=T0 + timedelta(minutes=minute),
            finished_at=T0 + timedelta(minutes=minute + 1),
        ),
    )
    return key
