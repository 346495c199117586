"""`orchestrator prepare SPEC.yaml [--fetch]`: what the spec's trials need on disk, what is missing, how to get it.

Trials never download a dataset, and fetch a hub model only with `foundation.allow_download: true`,
so a missing input otherwise fails every trial that needs it, on the cluster. This verifies
before submitting: one line per dataset or model (each once, with how many trials need it),
then a summary; exit 0 when everything is there, 1 when something is missing, 2 for a bad spec.
Without --fetch it only looks (orchestrator.spec.needs): no torch, no network, nothing written. With
--fetch, on a machine with network (a login node), it first gets what is not there
(orchestrator.spec.fetch: datasets into the data root, models into the Hugging Face cache), then looks.

A registry dataset is there in either layout (trainables.schema.data): its arrays files
(<root>/<name>/{train,test}.npz) or torchvision's files; its line says which it found. --fetch gets
torchvision's; an `arrays:<folder>` dataset is the user's own files, never fetched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FORMATS = ("text", "json")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "prepare",
        help="verify that the datasets and models a spec's trials need are on disk; --fetch gets what is not",
        description="Verify, offline, that the datasets and models a spec's trials need are on disk: one line "
        "per input (present, MISSING, or download when allow_download fetches it), how to get a missing one, then "
        "a summary. Looks in the data root (data.root, else $CROPD_DATA_ROOT, else ./data, from here) and the "
        "local Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub); without --fetch it downloads and writes nothing. "
        "Exit 0: everything there; 1: something missing; 2: a bad spec.",
    )
    parser.add_argument("spec", type=Path, help="sweep spec, e.g. search_spaces/lambda_ablation.yaml")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="override the spec as `orchestrator sweep` does"
    )
    parser.add_argument(
        "--fetch",
        action="store_true",
        help="first download what is not on disk (needs network): datasets into the data root through "
        "torchvision (md5-checked), models into the Hugging Face cache with huggingface_hub",
    )
    parser.add_argument("--format", choices=FORMATS, default="text", help="text (default): one line per input; json")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.spec.needs import PRESENT, spec_inputs
    from orchestrator.spec.sweep_spec import load_spec

    spec = load_spec(args.spec, args.overrides)  # a bad spec raises UserError: one line, exit 2
    inputs = spec_inputs(spec)
    failures = []
    if args.fetch:
        from orchestrator.spec.fetch import fetch

        for need in inputs.needs:
            if need.status == PRESENT:
                continue
            print(f"fetching {need.kind} {need.name} ...", file=sys.stderr, flush=True)
            problem = _unfetchable(need) or fetch(need)
            if problem:
                failures.append({"kind": need.kind, "name": need.name, "problem": problem})
                print(f"orchestrator: could not fetch {need.kind} {need.name}: {problem}", file=sys.stderr)
        inputs = spec_inputs(spec)  # look again: what is on disk now decides the exit status
    if args.format == "json":
        document = {"spec": str(args.spec), "name": spec.name, **_json(inputs)}
        if args.fetch:
            document["fetch_failures"] = failures
        print(json.dumps(document, indent=2))
    else:
        print(report_text(inputs))
    return 1 if inputs.missing or failures else 0


def _unfetchable(need) -> str | None:
    """Why `need` cannot be fetched, or None: an arrays: dataset is the user's own files."""
    from trainables.schema.data import arrays_folder

    if need.kind == "dataset" and arrays_folder(need.name) is not None:
        return f"nothing to fetch: {need.how_to_get}"
    return None


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
        + (
            f"; the trials needing a missing one would fail (`orchestrator prepare {inputs.spec.path} --fetch` "
            "gets them where there is network)"
            if summary["MISSING"]
            else ""
        )
    )
    return "\n".join(lines)


def _short(path: str, where: str) -> str:
    """A missing path relative to the folder the line already names (the data root), else whole."""
    return str(Path(path).relative_to(where)) if where and Path(path).is_relative_to(where) else path
