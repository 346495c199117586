"""`orchestrator export SWEEP TRIAL -o DIR`: one finished trial's trained model as a folder anyone
loads with `torch.export.load("DIR/model.pt2").module()`, beside a JSON model card
(orchestrator/analysis/trained_models.py says what both hold)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="write a finished trial's trained model (torch.export) and its model card to a new folder",
    )
    parser.add_argument("sweep", type=Path, help="sweep folder, e.g. runs/quickstart")
    parser.add_argument(
        "trial", help="the trial: its config hash or first characters (as `status` prints), or trial id"
    )
    # -o/--output as in report and plot; --out, its old spelling, still accepted
    parser.add_argument("-o", "--output", "--out", dest="out", type=Path, required=True, help="a new folder to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.analysis.trained_models import export_trial

    out = export_trial(args.sweep, args.trial, args.out)
    print(f"exported to {out}: load it with torch.export.load('{out}/model.pt2').module()")
    return 0
