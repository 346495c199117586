"""`orchestrator prepare SPEC.yaml`: what the spec's trials need on disk, what is missing, how to get it.

Trials never download a dataset, and fetch a hub model only with `foundation.allow_download: true`,
so a missing input otherwise fails every trial that needs it, on the cluster. This verifies
before submitting: one line per dataset or model (each once, with how many trials need it),
then a summary; exit 0 when everything is there, 1 when something is missing, 2 for a bad spec.
It only looks (orchestrator.inputs): no torch, no network, nothing written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

FORMATS = ("text", "json")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "prepare",
        help="verify that the datasets and models a spec's trials need are on disk (offline; fetches nothing)",
        description="Verify, offline, that the datasets and models a spec's trials need are on disk: one line "
        "per input (present, MISSING, or download when allow_download fetches it), how to get a missing one, then "
        "a summary. Looks in the data root (data.root, else $CROPD_DATA_ROOT, else ./data, from here) and the "
        "local Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub); downloads and writes nothing. "
        "Exit 0: everything there; 1: something missing; 2: a bad spec.",
    )
    parser.add_argument("spec", type=Path, help="sweep spec, e.g. search_spaces/lambda_ablation.yaml")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="override the spec as `orchestrator sweep` does"
    )
    parser.add_argument("--format", choices=FORMATS, default="text", help="text (default): one line per input; json")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .inputs import spec_inputs
    from .spec import load_spec

    inputs = spec_inputs(load_spec(args.spec, args.overrides))  # a bad spec raises UserError: one line, exit 2
    if args.format == "json":
        print(json.dumps({"spec": str(args.spec), "name": inputs.spec.name, **_json(inputs)}, indent=2))
    else:
        print(report_text(inputs))
    return 1 if inputs.missing else 0


def _json(inputs) -> dict:
    return {"summary": inputs.summary(), "inputs": inputs.as_records()}


def report_text(inputs) -> str:
    """One line per input: status, kind, what and where, trials needing it, how to get a missing one."""
    lines = []
    for record in inputs.as_records():
        place = " ".join(part for part in (record["source"], record["where"]) if part)
        if record["missing"]:
            place += "; missing " + ", ".join(_short(path, record["where"]) for path in record["missing"])
        trials = f"{record['trials']} trial{'s' if record['trials'] != 1 else ''}"
        line = f"{record['status']:<8} {record['kind']:<12} {record['name']} ({place})  [{trials}]"
        if record["status"] != "present" and record["how_to_get"]:
            line += f"  -> {record['how_to_get']}"
        lines.append(line)
    summary = inputs.summary()
    lines.append(
        f"{inputs.spec.name}: {summary['inputs']} inputs for {summary['trials']} trials: "
        f"{summary['present']} present, {summary['MISSING']} missing, {summary['download']} to download"
        + ("; the trials needing a missing one would fail" if summary["MISSING"] else "")
    )
    return "\n".join(lines)


def _short(path: str, where: str) -> str:
    """A missing path relative to the folder the line already names (the data root), else whole."""
    return str(Path(path).relative_to(where)) if where and Path(path).is_relative_to(where) else path
