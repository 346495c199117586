"""`orchestrator preprocessors`: Algorithm 1 steps 1-2 end to end on one dataset, no Ray needed.

Pre-trains (or reuses) the foundation, trains each pre-processor kind with per-epoch checkpoints
(rerunning the command resumes), and prints a table of what each one cost and reconstructs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from trainables.errors import ConfigError, UserError

# torch and the trainables that need it are imported inside the functions below, so that
# `orchestrator --help` and the other commands do not wait seconds for torch.


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "preprocessors", help="train pre-processors on one dataset (embedded default: digits2)"
    )
    parser.add_argument(
        "--dataset", default="digits2", help="dataset name (default: digits2, the embedded binary task)"
    )
    parser.add_argument("--data-root", default=None, help="local data root (default: $CROPD_DATA_ROOT or ./data)")
    parser.add_argument("--kinds", default="identity,vanilla,cropd,arae", help="comma-separated pre-processor kinds")
    parser.add_argument("--lambdas", default="1,10", help="comma-separated CRoPD lambda values")
    # Defaults sized for the embedded data on a laptop; the paper trains 150-400 epochs at lr 1.5e-4.
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (paper: 1.5e-4)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-fraction", type=float, default=1.0)
    parser.add_argument("--foundation", default="embedded", help="foundation name or local path (default: embedded)")
    parser.add_argument("--config", type=Path, default=None, help="YAML mapping of extra preprocessor settings")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/preprocessors"), help="working folder (artifacts, checkpoints)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.set_defaults(run=run)


def _read_extra_settings(path: Path | None) -> dict:
    if path is None:
        return {}
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        extra = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(extra, dict):
        raise ConfigError("preprocessor", "a mapping of settings", type(extra).__name__, source=str(path))
    return extra


def _configs(args: argparse.Namespace, extra: dict) -> list[dict]:
    from trainables.preprocessors import KINDS
    from trainables.schema.preprocessor import PREPROCESSOR_KINDS

    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError("--kinds", f"kinds from {list(KINDS)}", kind)
    try:
        lambdas = [float(value) for value in args.lambdas.split(",") if value.strip()]
    except ValueError as exc:
        raise ConfigError("--lambdas", "comma-separated numbers", args.lambdas) from exc
    configs = []
    for kind in kinds:
        # --lambdas: one config per value for the kinds whose label names lambda (cropd's)
        for lam in lambdas if "lambda" in PREPROCESSOR_KINDS[kind].label_settings else [None]:
            cfg = {
                "epochs": args.epochs,
                "lr": args.lr,
                "batch_size": args.batch_size,
                "warmup_epochs": 2,
                **extra,
                "kind": kind,
            }
            if lam is not None:
                cfg["lambda"] = lam
            configs.append(cfg)
    return configs


def _validate(configs: list[dict], source: Path | None) -> None:
    """Every config checked before anything loads or trains; errors name the YAML file."""
    from trainables.preprocessors import resolve_preprocessor_config

    for cfg in configs:
        try:
            resolve_preprocessor_config(cfg)
        except ConfigError as err:
            raise ConfigError(err.field, err.expected, err.got, source=str(source) if source else None) from err


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from trainables.data import load_dataset, stratified_fraction
    from trainables.foundation import load_foundation
    from trainables.losses import reconstruction_mse
    from trainables.preprocessors import fit_preprocessor
    from trainables.pseudo_labels import FeatureModel
    from trainables.schema.preprocessor import PREPROCESSOR_KINDS

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # Off a terminal rich would wrap to 80 columns and truncate names; logs can be wide.
    console = Console(width=None if sys.stdout.isatty() else 160)
    extra = _read_extra_settings(args.config)
    configs = _configs(args, extra)
    _validate(configs, args.config)
    train = stratified_fraction(load_dataset(args.dataset, "train", root=args.data_root), args.data_fraction, seed=0)
    test = load_dataset(args.dataset, "test", root=args.data_root)

    def pretrain_report(record: dict) -> None:
        console.print(
            f"  embedded foundation pre-training (once, then cached) epoch {record['epoch']} loss {record['loss']:.4f}"
        )

    foundation = load_foundation({"name": args.foundation}, device=args.device, on_pretrain_epoch=pretrain_report)
    features_of = FeatureModel.of_foundation(
        {"name": args.foundation}, foundation
    )  # advcl's pseudo-labels cluster these
    console.print(
        f"foundation: {args.foundation} ({sum(p.numel() for p in foundation.parameters()):,} parameters, frozen)"
    )
    console.print(f"data: {args.dataset}, {len(train)} training images, {len(test)} test images")

    table = Table(title=f"pre-processors on {args.dataset}")
    for column in (
        "kind",
        "lambda",
        "params",
        "train time (s)",
        "epochs",
        "train loss",
        "test recon. MSE",
        "feature shift",
    ):
        table.add_column(column, justify="right")
    x_test = test.float_images().to(args.device)
    for cfg in configs:
        label = cfg["kind"] + (f" (lambda {cfg['lambda']:g})" if "lambda" in cfg else "")

        def report(record: dict, label: str = label) -> None:
            console.print(
                f"  {label} epoch {record['epoch']}/{record['epochs']} loss {record['loss']:.4f} "
                f"({record['epoch_time_s']:.1f}s)"
            )

        fitted = fit_preprocessor(cfg, train, args.out, device=args.device, on_epoch=report, foundation=features_of)
        with torch.no_grad():
            module = fitted.module.eval()
            if PREPROCESSOR_KINDS[fitted.config["kind"]].output == "logits":  # a classifier: nothing to reconstruct
                mse, shift = "-", "-"
            else:
                cleaned = module(x_test)
                mse = f"{reconstruction_mse(cleaned, x_test).item():.4f}"
                # How far the pre-processor moves the foundation's view of the test images.
                shift = f"{(foundation(cleaned) - foundation(x_test)).norm(dim=1).mean().item():.3f}"
        last = f"{fitted.history[-1]['loss']:.4f}" if fitted.history else "-"
        table.add_row(
            fitted.config["kind"],
            f"{cfg.get('lambda', '-')}",
            f"{fitted.params:,}",
            f"{fitted.time_s:.1f}",
            str(len(fitted.history)),
            last,
            mse,
            shift,
        )
    console.print(table)
    console.print(f"artifacts under {args.out / 'preprocessors'}; run again to reuse or resume")
    return 0
