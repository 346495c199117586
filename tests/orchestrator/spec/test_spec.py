"""orchestrator.spec.sweep_spec: the shipped studies load and plan the trials their YAML describes; every bad
input is one line naming the file, the field and what was expected; trial and plan hashes are stable.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from orchestrator.cli.app import main
from orchestrator.spec.sections import SEED_KEY
from orchestrator.spec.sweep_spec import load_spec
from trainables.artifacts import config_hash
from trainables.data import DATASETS
from trainables.errors import ConfigError, UserError
from trainables.schema import validate_trial_config
from trainables.schema.contrastive import parse_clusters, parse_views
from trainables.schema.preprocessor import ARCH_PRESETS, artifact_key_config
from trainables.schema.results import SEED_FIELDS

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = sorted((ROOT / "search_spaces").glob("*.yaml"))
PAPER_STUDIES = {
    "lambda_ablation",
    "temperature",
    "data_fraction",
    "transfer",
    "table2",
    "table8_encoder_only",
    "table10_rocl",
    "table11_costs",
    "advcl_cifar10",
}


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def dump(tmp_path: Path, spec: dict, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def trial_hashes(spec) -> list[str]:
    return [config_hash(validate_trial_config(spec.trial_config(point))) for point in spec.grid_points]


def lookup(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


# --- (a) the shipped studies ---------------------------------------------------------------------


def expected_points(raw: dict) -> list[dict]:
    """The planned grid points, worked out from the YAML alone: each mapping is a cartesian
    product, a list of mappings is their union, and `seeds` repeats every point per seed."""
    grid = raw.get("grid")
    search = raw.get("search") or {}
    if grid is None:
        subgrids = [] if search.get("parameters") else [{}]
    else:
        subgrids = grid if isinstance(grid, list) else [grid]
    points = []
    for sub in subgrids:
        keys = list(sub)
        points += [dict(zip(keys, values)) for values in itertools.product(*(sub[key] for key in keys))]
    if "seeds" in raw:
        points = [{**point, SEED_KEY: seed} for seed in raw["seeds"] for point in points]
    return points


def as_multiset(points: list[dict]) -> list[str]:
    return sorted(json.dumps(point, sort_keys=True) for point in points)


def test_the_paper_studies_are_shipped():
    assert PAPER_STUDIES <= {path.stem for path in SHIPPED}


# Grid values are scalars, so list settings are written "a+b" or as one K, and stored as lists.
LIST_SETTINGS = {"preprocessor.views": parse_views, "preprocessor.pseudo_clusters": parse_clusters}


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_shipped_spec_loads_and_plans_the_trials_its_yaml_describes(path):
    raw = yaml.safe_load(path.read_text())
    spec = load_spec(path)

    points = expected_points(raw)
    search_trials = (raw.get("search") or {}).get("trials", 0)
    assert spec.num_trials == len(points) + search_trials
    assert as_multiset(spec.grid_points) == as_multiset(points)
    assert [p.key for p in spec.search] == list(((raw.get("search") or {}).get("parameters") or {}))

    for point in spec.grid_points:
        config = validate_trial_config(spec.trial_config(point))
        # every grid value lands where its dotted key says, and seeds set every training seed
        for key, value in point.items():
            for target in SEED_FIELDS if key == SEED_KEY else (key,):
                if target == "foundation.pretraining.method" and value == "none":
                    assert "pretraining" not in config["foundation"]  # no robust pre-training: no section
                elif target == "foundation.mask_ratio" and value == 0:
                    assert "mask_ratio" not in config["foundation"]  # its default: left out, hashes stay
                elif target == "preprocessor.arch.preset":  # a preset is expanded into its settings
                    arch = config["preprocessor"]["arch"]
                    overridden = {key.rsplit(".", 1)[1] for key in point if key.startswith("preprocessor.arch.")}
                    preset = {k: v for k, v in ARCH_PRESETS[value].items() if k not in overridden}
                    assert preset.items() <= arch.items(), (path.name, point)
                elif value is not None:
                    expected = LIST_SETTINGS.get(target, lambda given: given)(value)
                    assert lookup(config, target) == expected, (path.name, point, target)
        # shipped studies read $CROPD_DATA_ROOT, never a machine-specific folder
        assert config["data"]["root"] is None
        # transfer needs a pre-processor trained on images of the target's size; a trial only
        # refuses a mismatch once it has loaded both datasets, so check it here
        source = config["data"]["preprocessor_dataset"]
        if source is not None:
            assert DATASETS[source].image_size == DATASETS[config["data"]["dataset"]].image_size, point
    # no two planned trials are the same trial
    assert len(set(trial_hashes(spec))) == len(spec.grid_points)


def _points_of(name: str) -> list[dict]:
    path = ROOT / "search_spaces" / f"{name}.yaml"
    if not path.is_file():
        pytest.skip(f"{path.name} not shipped")
    spec = load_spec(path)
    return [validate_trial_config(spec.trial_config(point)) for point in spec.grid_points]


def test_lambda_ablation_has_every_table_1_row_with_both_heads():
    rows = {
        (
            c["preprocessor"]["kind"],
            c["preprocessor"]["lambda"] if c["preprocessor"]["kind"] == "cropd" else None,
            c["foundation"]["mode"],
            c["head"]["mode"],
        )
        for c in _points_of("lambda_ablation")
    }
    for kind, lam in [
        ("identity", None),
        ("vanilla", None),
        ("arae", None),
        ("cropd", 0.1),
        ("cropd", 1),
        ("cropd", 10),
    ]:
        assert {(kind, lam, "frozen", "clean"), (kind, lam, "frozen", "robust")} <= rows
    assert ("identity", None, "adversarial_finetune", "robust") in rows
    assert all(c["data"]["dataset"] == "cifar2" for c in _points_of("lambda_ablation"))


PAPER_TABLE1_ROWS = {
    (kind, lam, head)
    for kind, lam in [("identity", None), ("vanilla", None), ("arae", None)] + [("cropd", lam) for lam in (0.1, 1, 10)]
    for head in ("clean", "robust")
}


def _table1_runs(name: str) -> dict[tuple, dict[int, dict]]:
    """Paper Table 1's rows of study `name`, each with its configuration per seed, after checking
    what every row of such a study must share: seeds, attacks and the auto-encoders' training."""
    runs: dict[tuple, dict[int, dict]] = {}
    for c in _points_of(name):
        row = (
            c["preprocessor"]["kind"],
            c["preprocessor"]["lambda"] if c["preprocessor"]["kind"] == "cropd" else None,
            c["head"]["mode"],
        )
        runs.setdefault(row, {})[c["data"]["seed"]] = c
        assert {"pgd10", "pgd20"} <= set(c["evaluation"]["attacks"])
        assert c["preprocessor"]["seed"] == c["head"]["seed"] == c["data"]["seed"]
        if c["preprocessor"]["kind"] != "identity":
            assert c["preprocessor"]["arch"]["combine"] == "average" and c["preprocessor"]["fgsm_random_start"] is False
        if c["preprocessor"]["kind"] == "arae":  # App. A: the auto-encoders' adversarial examples by FGSM
            assert c["preprocessor"]["arae_attack"] == "fgsm"
    assert set(runs) == PAPER_TABLE1_ROWS
    for row, by_seed in runs.items():
        assert len(by_seed) >= 3, row
        with_autoattack = [
            c
            for c in by_seed.values()
            if "autoattack" in c["evaluation"]["attacks"] and c["evaluation"]["autoattack_examples"] >= 100
        ]
        assert with_autoattack, row  # the standard AutoAttack on at least 100 points for at least one seed
    return runs


def test_embedded_table1_is_the_study_the_paper_question_needs():
    for by_seed in _table1_runs("embedded_table1").values():
        for c in by_seed.values():
            assert c["data"]["dataset"] == "digits" and c["evaluation"]["n_examples"] is None  # all 450 test points
    masked = _points_of("embedded_table1_masked")
    assert {(c["preprocessor"]["kind"], c["preprocessor"]["arch"]["combine"]) for c in masked} == {
        ("vanilla", "masked"),
        ("cropd", "masked"),
    }
    assert {c["preprocessor"]["lambda"] for c in masked if c["preprocessor"]["kind"] == "cropd"} == {10}


def test_data_fraction_pairs_each_fraction_with_the_papers_lambda():
    pairs = {(c["data"]["data_fraction"], c["preprocessor"]["lambda"]) for c in _points_of("data_fraction")}
    assert pairs == {(0.1, 0.15), (0.2, 1), (0.5, 10), (1.0, 10)}  # paper Table 9


def test_transfer_runs_both_directions_with_the_papers_lambdas():
    configs = _points_of("transfer")
    cropd = {
        (c["data"]["preprocessor_dataset"], c["data"]["dataset"]): c
        for c in configs
        if c["preprocessor"]["kind"] == "cropd"
    }
    assert cropd[("cifar10", "cifar100")]["preprocessor"]["lambda"] == 1  # paper Table 3 caption
    assert cropd[("cifar100", "cifar10")]["preprocessor"]["lambda"] == 6
    assert all(c["data"]["preprocessor_dataset"] != c["data"]["dataset"] for c in configs)


def _row(c: dict) -> tuple:
    """A CRoPD-table row: pre-processor (with lambda for CRoPD), foundation use, LoRA or not, head."""
    kind = c["preprocessor"]["kind"]
    return (
        kind,
        c["preprocessor"]["lambda"] if kind == "cropd" else None,
        c["foundation"]["mode"],
        "lora" in c["foundation"],
        c["head"]["mode"],
    )


TABLE1_ROWS = {
    *(
        (kind, None, "frozen", False, head)
        for kind in ("identity", "vae", "vanilla", "arae")
        for head in ("clean", "robust")
    ),
    *(("cropd", lam, "frozen", False, head) for lam in (0.1, 1, 10) for head in ("clean", "robust")),
    ("identity", None, "finetune", False, "clean"),
    ("identity", None, "adversarial_finetune", False, "robust"),
}


def test_lambda_ablation_has_table_1s_lora_and_vae_rows_and_table_6s_batch_schedule():
    configs = _points_of("lambda_ablation")
    lora = {("identity", None, "finetune", True, "clean"), ("identity", None, "adversarial_finetune", True, "robust")}
    assert sorted(map(_row, configs)) == sorted(TABLE1_ROWS | lora)
    for c in configs:
        if c["preprocessor"]["kind"] in ("vanilla", "arae", "cropd"):
            assert c["preprocessor"]["batch_size"] == 32 and c["preprocessor"]["batch_size_schedule"] == {150: 256}


# Table 2's per-dataset settings (Tables 4 and 6, App. A): foundation use, lambda, batch, epochs,
# the pre-processor's eps (x 255), and whether the dataset has an AutoAttack column.
TABLE2 = {
    "cifar10": ("frozen", 10, 32, 400, 8, True),
    "imagenette": ("frozen", 10, 96, 150, 4, True),
    "svhn": ("finetune", 1, 32, 400, 8, False),
    "cifar100": ("finetune", 1, 96, 150, 8, True),
    "tinyimagenet": ("finetune", 1, 96, 150, 8, False),  # our choices, as CIFAR-100 (see the spec)
}


def test_table2_runs_every_row_of_every_dataset_with_its_papers_settings():
    configs = _points_of("table2")
    by_dataset: dict[str, list[dict]] = {}
    for c in configs:
        by_dataset.setdefault(c["data"]["dataset"], []).append(c)
    assert set(by_dataset) == set(TABLE2)
    for dataset, rows in by_dataset.items():
        mode, lam, batch, epochs, eps255, autoattack = TABLE2[dataset]
        kinds = sorted(c["preprocessor"]["kind"] for c in rows if "lora" not in c["foundation"])
        assert kinds == sorted(["identity", "vae", "vanilla", "arae", "cropd"]), dataset
        # "+ LoRA" rows only where the paper has them: Identity with LoRA fine-tuning
        lora = [c for c in rows if "lora" in c["foundation"]]
        assert len(lora) == (1 if dataset in ("cifar10", "imagenette") else 0), dataset
        assert all(c["preprocessor"]["kind"] == "identity" and c["foundation"]["mode"] == "finetune" for c in lora)
        for c in rows:
            assert c["head"]["mode"] == "clean"
            assert (c["evaluation"]["autoattack_examples"] > 0) == autoattack, dataset
            if "lora" not in c["foundation"]:
                assert c["foundation"]["mode"] == mode, dataset
            assert c["head"]["lr"] == (1e-2 if c["foundation"]["mode"] == "frozen" else 1e-4)
        (cropd,) = [c["preprocessor"] for c in rows if c["preprocessor"]["kind"] == "cropd"]
        assert (cropd["lambda"], cropd["batch_size"], cropd["epochs"]) == (lam, batch, epochs), dataset
        assert round(cropd["eps"] * 255, 6) == eps255, dataset  # the dataset's budget (App. A)
        assert cropd["arch"]["patch_size"] == {"imagenette": 14, "tinyimagenet": 4}.get(dataset, 2)


def test_table8_pairs_encoder_only_with_table2s_own_cropd_rows():
    table2 = {
        c["data"]["dataset"]: artifact_key_config(c["preprocessor"])
        for c in _points_of("table2")
        if c["preprocessor"]["kind"] == "cropd"
    }
    rows = {(c["data"]["dataset"], c["preprocessor"]["kind"]): c for c in _points_of("table8_encoder_only")}
    assert set(rows) == {(d, k) for d in ("cifar10", "imagenette") for k in ("encoder_only", "cropd")}
    for dataset in ("cifar10", "imagenette"):
        # the same pre-processor as Table 2's CRoPD row: Table 8 repeats its numbers
        assert artifact_key_config(rows[dataset, "cropd"]["preprocessor"]) == table2[dataset]
    # Table 8's Time column: 50 and 90 encoder-only epochs
    assert rows["cifar10", "encoder_only"]["preprocessor"]["epochs"] == 50
    assert rows["imagenette", "encoder_only"]["preprocessor"]["epochs"] == 90


def test_table10_is_table1_in_front_of_one_rocl_resnet_pretrained_on_cifar10():
    configs = _points_of("table10_rocl")
    assert sorted(map(_row, configs)) == sorted(TABLE1_ROWS - {r for r in TABLE1_ROWS if r[0] == "vae"})
    pretrainings = {
        json.dumps({k: v for k, v in c["foundation"].items() if k != "mode"}, sort_keys=True) for c in configs
    }
    assert len(pretrainings) == 1  # one foundation, pre-trained once, behind every row
    foundation = configs[0]["foundation"]
    assert foundation["name"] == "resnet18" and foundation["resnet"]["width"] == 64
    assert foundation["pretraining"]["method"] == "rocl" and foundation["pretraining"]["dataset"] == "cifar10"
    assert all(c["data"]["dataset"] == "cifar2" and c["evaluation"]["autoattack_examples"] == 0 for c in configs)


def test_advcl_cifar10_runs_slf_alf_aff_at_advcls_setting():
    configs = _points_of("advcl_cifar10")
    schemes = {(c["foundation"]["pretraining"]["method"], c["foundation"]["mode"], c["head"]["mode"]) for c in configs}
    assert schemes == {
        (method, mode, head)
        for method in ("advcl", "rocl")
        for mode, head in (("frozen", "clean"), ("frozen", "robust"), ("adversarial_finetune", "robust"))
    }
    for c in configs:
        assert c["data"]["dataset"] == "cifar10" and c["foundation"]["resnet"]["width"] == 64
        assert c["evaluation"]["pgd_step_size"] == {"pgd20": 2 / 255}  # AdvCL's PGD-20 step
        pretraining = c["foundation"]["pretraining"]
        if pretraining["method"] == "advcl":
            assert pretraining["fft_radius"] == 8 and pretraining["pseudo_clusters"] == [2, 10, 50, 100, 500]


def test_table11_costs_has_the_four_cost_columns_on_both_datasets():
    rows = {
        (c["data"]["dataset"], c["preprocessor"]["kind"], c["foundation"]["mode"], c["head"]["mode"])
        for c in _points_of("table11_costs")
    }
    assert rows == {
        (dataset, kind, mode, head)
        for dataset in ("cifar100", "imagenette")
        for kind, mode, head in (
            ("cropd", "frozen", "clean"),
            ("identity", "finetune", "clean"),
            ("identity", "adversarial_finetune", "robust"),
        )
    }


# --- (b) bad inputs: one line naming file, field and what was expected ----------------------------

BASE = "trial: {data: {dataset: digits2}}\n"
TEMPERATURE = "preprocessor.temperature"

BAD_SPECS = {
    # id: (yaml, field, fragments the message must contain)
    "unknown top-level key": (
        BASE + "grdi: {preprocessor.lambda: [1, 10]}\n",
        "grdi",
        ["expected a known key", "did you mean 'grid'?"],
    ),
    "unknown trial key via grid": (
        BASE + "grid: {preprocessor.lamda: [1, 10]}\n",
        "grid.preprocessor.lamda",
        ["did you mean 'lambda'?"],
    ),
    "unknown trial key in trial": (
        "trial: {preprocessor: {temprature: 0.5}}\n",
        "trial.preprocessor.temprature",
        ["did you mean 'temperature'?"],
    ),
    "unknown section in grid key": (
        BASE + "grid: {preprocesor.lambda: [1]}\n",
        "grid.preprocesor.lambda",
        ["did you mean 'preprocessor'?"],
    ),
    "grid key not dotted": (BASE + "grid: {lambda: [1]}\n", "grid.lambda", ["a dotted trial-config key"]),
    "grid values not a list": (
        BASE + "grid: {preprocessor.lambda: 10}\n",
        "grid.preprocessor.lambda",
        ["a non-empty list", "got 10"],
    ),
    "grid values empty": (BASE + "grid: {preprocessor.lambda: []}\n", "grid.preprocessor.lambda", ["a non-empty list"]),
    "grid value a mapping": (
        BASE + "grid: {preprocessor.lambda: [{a: 1}]}\n",
        "grid.preprocessor.lambda",
        ["numbers, strings, booleans or null"],
    ),
    "grid value out of range": (
        BASE + "grid: {preprocessor.lambda: [1, -1]}\n",
        "grid.preprocessor.lambda",
        ["a number >= 0", "got -1"],
    ),
    "grid value wrong type": (
        BASE + "grid: {preprocessor.epochs: [10, 2.5]}\n",
        "grid.preprocessor.epochs",
        ["an integer >= 1", "got 2.5"],
    ),
    "empty grid list": (BASE + "grid: []\n", "grid", ["a mapping of dotted keys"]),
    "empty grid mapping": (BASE + "grid: {}\n", "grid", ["a non-empty mapping"]),
    "union member not a mapping": (
        BASE + "grid: [{preprocessor.lambda: [1]}, 3]\n",
        "grid[1]",
        ["a non-empty mapping"],
    ),
    "grid point repeated": (
        BASE + "grid: {preprocessor.lambda: [1, 10, 1]}\n",
        "grid",
        ["do not repeat the same point"],
    ),
    "grid point repeated across union": (
        BASE + "grid: [{preprocessor.lambda: [1, 10]}, {preprocessor.lambda: [10]}]\n",
        "grid",
        ["do not repeat the same point"],
    ),
    "seeds not ints": (BASE + "seeds: [0, one]\n", "seeds", ["a non-empty list of distinct integers", "'one'"]),
    "seeds a scalar": (BASE + "seeds: 3\n", "seeds", ["a non-empty list of distinct integers", "got 3"]),
    "seeds booleans": (BASE + "seeds: [true]\n", "seeds", ["distinct integers"]),
    "seeds repeated": (BASE + "seeds: [1, 1]\n", "seeds", ["distinct integers"]),
    "seeds empty": (BASE + "seeds: []\n", "seeds", ["a non-empty list"]),
    "log-uniform low 0": (
        BASE + f"search: {{trials: 4, parameters: {{{TEMPERATURE}: {{distribution: loguniform, low: 0, high: 1}}}}}}\n",
        f"search.parameters.{TEMPERATURE}.low",
        ["a number > 0", "log-uniform", "got 0"],
    ),
    "log-uniform low negative": (
        BASE
        + f"search: {{trials: 4, parameters: {{{TEMPERATURE}: {{distribution: loguniform, low: -0.1, high: 1}}}}}}\n",
        f"search.parameters.{TEMPERATURE}.low",
        ["a number > 0"],
    ),
    "low above high": (
        BASE + f"search: {{trials: 4, parameters: {{{TEMPERATURE}: {{distribution: uniform, low: 1, high: 0.5}}}}}}\n",
        f"search.parameters.{TEMPERATURE}.high",
        ["a number > low (1)", "got 0.5"],
    ),
    "low equal to high": (
        BASE
        + f"search: {{trials: 4, parameters: {{{TEMPERATURE}: {{distribution: uniform, low: 0.5, high: 0.5}}}}}}\n",
        f"search.parameters.{TEMPERATURE}.high",
        ["a number > low"],
    ),
    "int bounds not integers": (
        BASE + "search: {trials: 4, parameters: {preprocessor.epochs: {distribution: int, low: 1, high: 2.5}}}\n",
        "search.parameters.preprocessor.epochs.high",
        ["an integer"],
    ),
    "search end outside the field's range": (
        BASE + f"search: {{trials: 4, parameters: {{{TEMPERATURE}: {{distribution: uniform, low: 0.0, high: 1}}}}}}\n",
        f"search.parameters.{TEMPERATURE}",
        ["a number > 0"],
    ),
    "distribution misspelt": (
        BASE
        + f"search: {{trials: 4, parameters: {{{TEMPERATURE}: {{distribution: log-uniform, low: 0.1, high: 1}}}}}}\n",
        f"search.parameters.{TEMPERATURE}.distribution",
        ["did you mean 'loguniform'?"],
    ),
    "search key misspelt": (
        BASE + f"search: {{trails: 4, parameters: {{{TEMPERATURE}: {{distribution: uniform, low: 0.1, high: 1}}}}}}\n",
        "search.trails",
        ["did you mean 'trials'?"],
    ),
    "sampler unknown": (
        BASE
        + "search: {trials: 4, sampler: tpee, parameters: "
        + f"{{{TEMPERATURE}: {{distribution: uniform, low: 0.1, high: 1}}}}}}\n",
        "search.sampler",
        ["did you mean 'tpe'?"],
    ),
    "search without a budget": (
        BASE + f"search: {{parameters: {{{TEMPERATURE}: {{distribution: uniform, low: 0.1, high: 1}}}}}}\n",
        "search.trials",
        ["an integer >= 1"],
    ),
    "key in both grid and search": (
        BASE + f"grid: {{{TEMPERATURE}: [0.5]}}\nsearch: "
        f"{{trials: 4, parameters: {{{TEMPERATURE}: {{distribution: uniform, low: 0.1, high: 1}}}}}}\n",
        f"search.parameters.{TEMPERATURE}",
        ["not also a grid axis"],
    ),
    "unknown dataset": (
        "trial: {data: {dataset: cifar11}}\n",
        "trial.data.dataset",
        ["one of", "'cifar10'", "got 'cifar11'"],
    ),
    "unknown dataset via grid": (
        BASE + "grid: {data.dataset: [cifar10, cifar11]}\n",
        "grid.data.dataset",
        ["one of", "got 'cifar11'"],
    ),
    "unknown transfer source": (
        BASE + "grid: {data.preprocessor_dataset: [cifar1000]}\n",
        "grid.data.preprocessor_dataset",
        ["got 'cifar1000'"],
    ),
    "unknown preprocessor kind": (
        "trial: {preprocessor: {kind: crop}}\n",
        "trial.preprocessor.kind",
        ["one of", "'cropd'", "got 'crop'"],
    ),
    "unknown preprocessor kind via grid": (
        BASE + "grid: {preprocessor.kind: [cropd, vanila]}\n",
        "grid.preprocessor.kind",
        ["got 'vanila'"],
    ),
    "objective attack not evaluated": (
        "trial: {evaluation: {attacks: [pgd10]}}\nobjectives: {val_acc_pgd20: max}\n",
        "objectives.val_acc_pgd20",
        ["add 'pgd20' to trial.evaluation.validation_attacks"],
    ),
    "objective on a test metric, opted in, not evaluated": (
        "trial: {evaluation: {attacks: [pgd10]}}\nselect_on_test: true\nobjectives: {acc_pgd20: max}\n",
        "objectives.acc_pgd20",
        ["add 'pgd20' to trial.evaluation.attacks"],
    ),
    "objective on a test metric": (
        BASE + "objectives: {acc_pgd20: max}\n",
        "objectives.acc_pgd20",
        ["a validation metric such as val_acc_pgd20", "select_on_test: true", "got 'acc_pgd20'"],
    ),
    "select_on_test not a boolean": (BASE + "select_on_test: yes please\n", "select_on_test", ["true or false"]),
    "objective metric unknown": (
        BASE + "objectives: {val_acc_pgd30: max}\n",
        "objectives.val_acc_pgd30",
        ["did you mean 'val_acc_pgd20'?"],
    ),
    "objective mode unknown": (
        BASE + "objectives: {val_acc_pgd20: maximize}\n",
        "objectives.val_acc_pgd20",
        ["max or min", "got 'maximize'"],
    ),
    "objectives empty": (BASE + "objectives: {}\n", "objectives", ["a mapping of metric to max or min"]),
    "gpu 1.5": (
        BASE + "resources: {cpu: 4, gpu: 1.5}\n",
        "resources.gpu",
        ["a fraction such as 0.25, or a whole number", "got 1.5"],
    ),
    "gpu negative": (BASE + "resources: {gpu: -0.25}\n", "resources.gpu", ["a number >= 0"]),
    "cpu zero": (BASE + "resources: {cpu: 0}\n", "resources.cpu", ["a number > 0"]),
    "resources key misspelt": (BASE + "resources: {gpus: 1}\n", "resources.gpus", ["cpu or gpu"]),
    "max_concurrent zero": (BASE + "max_concurrent: 0\n", "max_concurrent", ["an integer >= 1"]),
    "max_retries negative": (BASE + "max_retries: -1\n", "max_retries", ["an integer >= 0"]),
    "name with a space": (BASE + "name: my sweep\n", "name", ["letters, digits"]),
    "top level a list": ("- 1\n- 2\n", "(top level)", ["a mapping with keys"]),
}


@pytest.mark.parametrize("text, field, fragments", list(BAD_SPECS.values()), ids=list(BAD_SPECS))
def test_bad_spec_is_one_line_naming_file_field_and_expectation(tmp_path, text, field, fragments):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    err, message = info.value, str(info.value)
    assert err.field == field and err.source == str(path)
    assert "\n" not in message
    assert message.startswith(f"{path}: {field}: expected "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    "text, line",
    [
        ("name: x\ntrial:\n  data:\n\tdataset: digits2\n", 4),  # a tab indent on line 4
        ("name: x\ntrial:\n  data: {dataset: digits2\ngrid: {a.b: [1]}\n", 4),  # unclosed flow mapping, found on line 4
        ("name: x\ngrid: [{preprocessor.lambda: [1]}\n", 3),  # unclosed list, found at the end
    ],
)
def test_invalid_yaml_names_file_and_line(tmp_path, text, line):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: not valid YAML (line {line}, column "), message


def test_missing_spec_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_bad_value_in_one_union_member_is_reported_against_the_grid(tmp_path):
    # the second member's value only reaches the trial config through the grid
    path = write(
        tmp_path,
        BASE
        + "grid: [{preprocessor.kind: [identity]}, {preprocessor.kind: [cropd], preprocessor.temperature: [0.5, 0]}]\n",
    )
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert info.value.field == "grid.preprocessor.temperature" and "a number > 0" in str(info.value)


def test_seeds_and_a_seed_field_grid_axis_do_not_plan_the_same_trial_twice(tmp_path):
    path = write(tmp_path, BASE + "grid: {data.seed: [1, 2]}\nseeds: [0]\n")
    with pytest.raises(ConfigError, match="seeds: expected no seeds list when the grid or search sets data.seed"):
        load_spec(path)
    spec = load_spec(write(tmp_path, BASE + "grid: {data.seed: [1, 2]}\n", name="no-seeds.yaml"))
    assert len(set(trial_hashes(spec))) == len(spec.grid_points) == 2


def test_a_seed_grid_axis_gives_one_seed_a_setting_the_others_lack(tmp_path):
    # AutoAttack on seed 0 only: the seed-0 subgrid sets autoattack_examples, the others keep 0.
    text = BASE + (
        "grid:\n"
        "  - {preprocessor.kind: [identity, vanilla], seed: [0], evaluation.autoattack_examples: [100]}\n"
        "  - {preprocessor.kind: [identity, vanilla], seed: [1, 2]}\n"
    )
    spec = load_spec(write(tmp_path, text))
    configs = [spec.trial_config(point) for point in spec.grid_points]
    assert len(configs) == len(set(trial_hashes(spec))) == 6
    for config in configs:
        seed = config["data"]["seed"]
        assert config["preprocessor"]["seed"] == config["head"]["seed"] == seed  # every training seed
        assert config.get("evaluation", {}).get("autoattack_examples") == (100 if seed == 0 else None)
    with pytest.raises(ConfigError, match="seeds: expected no seeds list when the grid or search sets seed"):
        load_spec(write(tmp_path, text + "seeds: [0, 1]\n", name="both.yaml"))


def test_seeds_in_a_search_only_spec_are_refused_not_ignored(tmp_path):
    text = (
        BASE + "search: {trials: 3, parameters: {preprocessor.lambda: {distribution: loguniform, low: 0.1, high: "
        "10}}}\nseeds: [0, 1]\n"
    )
    with pytest.raises(ConfigError, match="seeds: expected a grid to repeat"):
        load_spec(write(tmp_path, text))


def test_repeated_yaml_key_is_an_error(tmp_path):
    path = write(tmp_path, BASE + "grid: {preprocessor.lambda: [1, 10]}\ngrid: {preprocessor.lambda: [3]}\n")
    with pytest.raises(UserError, match="key 'grid' given twice"):
        load_spec(path)


# --- (c) the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        BASE + "grdi: {preprocessor.lambda: [1, 10]}\n",
        BASE + "grid: {preprocessor.lambda: [1, 10\n",
        BASE + "resources: {gpu: 1.5}\n",
    ],
    ids=["unknown key", "invalid yaml", "bad value"],
)
def test_sweep_command_refuses_a_bad_spec_in_one_line_and_writes_nothing(tmp_path, capsys, text):
    bad = write(tmp_path, text, name="bad-study.yaml")
    out = tmp_path / "runs"
    try:
        code = main(["sweep", str(bad), "--out", str(out)])
    except SystemExit as exit:  # argparse refusing the command line is not the one-line error asked for
        code = exit.code
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("orchestrator: error:") and bad.name in lines[0], lines[0]
    assert not out.exists()


# --- (d) hashes ---------------------------------------------------------------------------------------

STUDY = {
    "name": "hashing",
    "description": "a small study",
    "trial": {
        "data": {"dataset": "digits2", "data_fraction": 0.5},
        "foundation": {"name": "embedded", "mode": "frozen"},
        "preprocessor": {"kind": "cropd", "epochs": 3, "batch_size": 16, "temperature": 0.5},
        "head": {"mode": "clean", "epochs": 2},
        "evaluation": {"attacks": ["pgd10", "pgd20"], "autoattack_examples": 8},
    },
    "grid": [
        {"preprocessor.kind": ["identity", "vanilla"]},
        {"preprocessor.kind": ["cropd"], "preprocessor.lambda": [1, 10], "head.mode": ["clean", "robust"]},
    ],
    "seeds": [0, 1],
    "objectives": {"val_acc_natural": "max", "val_acc_pgd20": "max"},
    "resources": {"cpu": 2, "gpu": 0},
    "max_concurrent": 2,
}


def reversed_keys(value):
    """The same data with every mapping's keys in reverse order (list order kept)."""
    if isinstance(value, dict):
        return {key: reversed_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(item) for item in value]
    return value


def edited(*changes: tuple[tuple, object]) -> dict:
    """STUDY with each (path, value) set; a path is a tuple of keys and list indexes."""
    study = json.loads(json.dumps(STUDY))
    for (*parents, leaf), value in changes:
        node = study
        for part in parents:
            node = node[part]
        node[leaf] = value
    return study


def test_trial_hashes_are_stable_across_loads_and_key_order(tmp_path):
    first = load_spec(dump(tmp_path, STUDY, "a.yaml"))
    again = load_spec(dump(tmp_path, STUDY, "a.yaml"))
    reordered_path = dump(tmp_path, reversed_keys(STUDY), "b.yaml")
    assert reordered_path.read_text().index("max_concurrent") < reordered_path.read_text().index("trial")
    reordered = load_spec(reordered_path)

    hashes = trial_hashes(first)
    assert len(hashes) == (2 + 4) * 2 and len(set(hashes)) == len(hashes)
    assert trial_hashes(again) == hashes
    assert sorted(trial_hashes(reordered)) == sorted(hashes)
    assert reordered.plan_hash == first.plan_hash == again.plan_hash


def test_trial_hash_is_the_same_in_a_fresh_process(tmp_path):
    path = dump(tmp_path, STUDY)
    script = (
        "import json, sys; from orchestrator.spec.sweep_spec import load_spec; "
        "from trainables.artifacts import config_hash; "
        "from trainables.schema import validate_trial_config; s = load_spec(sys.argv[1]); "
        "print(json.dumps([config_hash(validate_trial_config(s.trial_config(p))) for p in s.grid_points]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == trial_hashes(load_spec(path))


def test_spelling_out_a_default_keeps_the_trial_hash(tmp_path):
    explicit = edited(
        (("trial", "head", "batch_size"), 64), (("trial", "preprocessor", "weight_decay"), 0.05)
    )  # both the schema defaults
    assert trial_hashes(load_spec(dump(tmp_path, explicit, "b.yaml"))) == trial_hashes(
        load_spec(dump(tmp_path, STUDY, "a.yaml"))
    )


def test_changing_one_value_changes_the_hash_of_the_trials_it_reaches(tmp_path):
    base = load_spec(dump(tmp_path, STUDY, "a.yaml"))
    hashes = dict(zip(map(json.dumps, base.grid_points), trial_hashes(base)))

    # one grid value: only the points that carry it change
    changed = load_spec(dump(tmp_path, edited((("grid", 1, "preprocessor.lambda"), [1, 5])), "b.yaml"))
    new = dict(zip(map(json.dumps, changed.grid_points), trial_hashes(changed)))
    kept = set(hashes) & set(new)
    assert kept and all(hashes[key] == new[key] for key in kept)
    assert len(set(new.values()) - set(hashes.values())) == 4  # lambda 5 x {clean, robust} x 2 seeds

    # one value of the trial section: every trial changes
    changed = load_spec(dump(tmp_path, edited((("trial", "preprocessor", "epochs"), 4)), "c.yaml"))
    assert not set(trial_hashes(changed)) & set(hashes.values())

    # seeds reach every training seed, so another seed is another trial
    changed = load_spec(dump(tmp_path, edited((("seeds",), [0, 2])), "d.yaml"))
    assert len(set(trial_hashes(changed)) - set(hashes.values())) == len(hashes) // 2


@pytest.mark.parametrize(
    "changes",
    [
        {"resources": {"cpu": 8, "gpu": 0.25}},
        {"max_concurrent": 7},
        {"max_concurrent": None},
        {"description": "the same study, described again"},
        {"max_retries": 3},
    ],
    ids=["resources", "max_concurrent", "max_concurrent null", "description", "max_retries"],
)
def test_plan_hash_ignores_how_the_sweep_runs(tmp_path, changes):
    base = load_spec(dump(tmp_path, STUDY, "a.yaml"))
    other = load_spec(dump(tmp_path, {**STUDY, **changes}, "b.yaml"))
    assert other.plan_hash == base.plan_hash


@pytest.mark.parametrize(
    "path, value",
    [
        (("grid", 1, "preprocessor.lambda"), [1, 5]),
        (("grid", 1, "preprocessor.lambda"), [1, 10, 100]),
        (("grid", 0, "preprocessor.kind"), ["identity"]),
        (("grid",), STUDY["grid"][1:]),
        (("seeds",), [0, 1, 2]),
        (("trial", "preprocessor", "epochs"), 4),
        (("objectives",), {"val_acc_pgd20": "max"}),
    ],
    ids=[
        "grid value",
        "grid value added",
        "grid value removed",
        "union member removed",
        "seeds",
        "trial",
        "objectives",
    ],
)
def test_plan_hash_changes_with_what_the_sweep_computes(tmp_path, path, value):
    base = load_spec(dump(tmp_path, STUDY, "a.yaml"))
    other = load_spec(dump(tmp_path, edited((path, value)), "b.yaml"))
    assert other.plan_hash != base.plan_hash


def test_plan_hash_changes_with_the_search_budget(tmp_path):
    search = {
        "trials": 4,
        "sampler": "tpe",
        "seed": 0,
        "parameters": {"preprocessor.temperature": {"distribution": "loguniform", "low": 0.05, "high": 1.0}},
    }
    study = {key: value for key, value in STUDY.items() if key not in ("grid", "seeds")}
    base = load_spec(dump(tmp_path, {**study, "search": search}, "a.yaml"))
    assert base.num_trials == 4 and base.grid_points == []
    for change in (
        {"trials": 5},
        {"seed": 1},
        {"sampler": "random"},
        {"parameters": {"preprocessor.temperature": {"distribution": "uniform", "low": 0.05, "high": 1.0}}},
    ):
        other = load_spec(dump(tmp_path, {**study, "search": {**search, **change}}, "b.yaml"))
        assert other.plan_hash != base.plan_hash, change
    assert (
        load_spec(dump(tmp_path, {**study, "search": search, "resources": {"gpu": 1}}, "c.yaml")).plan_hash
        == base.plan_hash
    )


def test_cifar2_table1_runs_table1_on_the_real_pixels_on_one_set_of_points():
    configs = [c for by_seed in _table1_runs("cifar2_table1").values() for c in by_seed.values()]
    for c in configs:
        assert c["data"]["dataset"] == "cifar2" and c["foundation"]["embedded"]["dataset"] == "cifar2"
        assert c["evaluation"].get("eps") in (None, pytest.approx(8 / 255))  # null: cifar2's own, 8/255
        assert c["preprocessor"]["eps"] == pytest.approx(8 / 255)
    # Every row on the same test points and validation split, so the report can pair any two.
    assert len({(c["evaluation"]["n_examples"], c["data"]["validation_images"]) for c in configs}) == 1
    assert {c["head"]["epochs"] for c in configs if c["head"]["mode"] == "robust"} == {2}
