"""Contract tests of the registries static navigation cannot follow, and of the results-row contract.

The pre-processor kinds and robust pre-training methods name their torch side as "module:function"
strings (imported only when used, so trainables.schema stays torch-free): every such string must
resolve to a callable. Every attack must have a runner for its family. The column names, statuses
and stages of trainables/schema/results.py are what results rows already hold.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

from trainables.errors import ConfigError
from trainables.schema import results
from trainables.schema.evaluation import ATTACKS as ATTACK_NAMES
from trainables.schema.evaluation import resolve_evaluation_config
from trainables.schema.fields import Field, resolve
from trainables.schema.preprocessor import (
    OUTPUTS,
    PREPROCESSOR_KINDS,
    PREPROCESSOR_SCHEMA,
    REFERENCE_KINDS,
    TARGETS,
    resolve_preprocessor_config,
)
from trainables.schema.pretraining import PRETRAINING_METHODS
from trainables.schema.references import imported

REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _references(entry) -> list[tuple[str, str]]:
    """(field, "module:function") of every string field of a registry entry that is a reference."""
    return [
        (spec.name, value)
        for spec in dataclasses.fields(entry)
        if isinstance(value := getattr(entry, spec.name), str) and REFERENCE.match(value)
    ]


REGISTRY_REFERENCES = [
    pytest.param(reference, id=f"{registry}.{entry.name}.{field}")
    for registry, entries in (("kind", PREPROCESSOR_KINDS), ("pretraining", PRETRAINING_METHODS))
    for entry in entries.values()
    for field, reference in _references(entry)
]


def test_the_registries_have_references_to_check():
    # builder for every kind, step for every trained kind and every method but `none`
    expected = len(PREPROCESSOR_KINDS) + sum(k.trained for k in PREPROCESSOR_KINDS.values())
    expected += sum(m.step is not None for m in PRETRAINING_METHODS.values())
    assert len(REGISTRY_REFERENCES) == expected


@pytest.mark.parametrize("reference", REGISTRY_REFERENCES)
def test_every_registry_reference_resolves_to_a_callable(reference):
    assert callable(imported(reference)), reference


def test_every_kind_and_method_reaches_its_torch_side_through_its_own_methods():
    for kind in PREPROCESSOR_KINDS.values():
        assert callable(imported(kind.builder))
        assert kind.trained == (kind.step is not None)
        if kind.trained:
            assert callable(kind.training_step())
    for method in PRETRAINING_METHODS.values():
        if method.step is not None:
            assert callable(method.training_step())


def test_kind_facts_are_consistent_with_the_schema():
    for kind in PREPROCESSOR_KINDS.values():
        assert kind.output in OUTPUTS and kind.targets in TARGETS, kind.name
        assert kind.has_head == (kind.output == "images")
        for setting in (*kind.relevant, *kind.needs, *kind.label_settings, *kind.own_settings, *kind.defaults):
            assert setting in PREPROCESSOR_SCHEMA, (kind.name, setting)
        assert set(kind.needs) <= set(kind.relevant) and set(kind.label_settings) <= set(kind.relevant)
        if kind.targets == "pseudo_labels":
            assert "pseudo_clusters" in kind.relevant
    assert REFERENCE_KINDS == ("vanilla", "identity")
    assert [k.name for k in PREPROCESSOR_KINDS.values() if not k.has_head] == ["encoder_only"]
    assert [k.name for k in PREPROCESSOR_KINDS.values() if not k.trained] == ["identity", "vae"]
    assert [k.name for k in PREPROCESSOR_KINDS.values() if k.needs] == ["vae"]


def test_a_kinds_label_names_its_label_settings():
    cropd = resolve_preprocessor_config({"kind": "cropd", "lambda": 0.5})
    assert PREPROCESSOR_KINDS["cropd"].label(cropd) == "cropd lambda 0.5"
    assert PREPROCESSOR_KINDS["vanilla"].label(resolve_preprocessor_config({"kind": "vanilla"})) == "vanilla"


def test_a_needed_file_setting_is_required():
    with pytest.raises(ConfigError) as err:
        resolve_preprocessor_config({"kind": "vae"})
    assert err.value.field == "preprocessor.path"


@pytest.mark.parametrize("name", [name for name, kind in PREPROCESSOR_KINDS.items() if not kind.needs])
def test_a_kinds_output_is_what_its_module_gives(name):
    import torch

    cfg = resolve_preprocessor_config({"kind": name, "arch": "tiny"}, image_size=32)
    module = PREPROCESSOR_KINDS[name].build(cfg, 32, 3).eval()
    with torch.no_grad():
        out = module(torch.rand(2, 3, 32, 32))
    assert getattr(module, "produces", "images") == PREPROCESSOR_KINDS[name].output
    assert tuple(out.shape) == ((2, 3) if PREPROCESSOR_KINDS[name].output == "logits" else (2, 3, 32, 32))


# --- attacks ---------------------------------------------------------------------------------------


def test_every_attack_has_a_runner_and_a_complete_entry():
    from trainables.evaluation import FAMILY_RUNNERS, PGD_SETTINGS
    from trainables.survival import ATTACK_LOSSES

    assert ATTACK_NAMES == tuple(results.ATTACKS) == ("pgd10", "pgd20", "pgd10_margin", "pgd20_margin", "autoattack")
    orders = [attack.order for attack in results.ATTACKS.values()]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    assert len({attack.label for attack in results.ATTACKS.values()}) == len(results.ATTACKS)
    for attack in results.ATTACKS.values():
        assert callable(FAMILY_RUNNERS[attack.family]), attack.name
        if attack.family == "pgd":
            assert attack.loss in results.PGD_LOSSES and attack.steps >= 1 and 0 < attack.step_fraction <= 1
    assert set(results.PGD_LOSSES) == set(ATTACK_LOSSES)  # every loss the registry names is implemented
    assert PGD_SETTINGS == {
        "pgd10": (10, 1 / 5),
        "pgd20": (20, 1 / 10),
        "pgd10_margin": (10, 1 / 5),
        "pgd20_margin": (20, 1 / 10),
    }
    assert [results.ATTACKS[name].step_rule for name in results.PGD_ATTACKS] == ["eps/5", "eps/10"] * 2
    assert [results.ATTACKS[name].loss for name in results.PGD_ATTACKS] == ["ce", "ce", "margin", "margin"]
    assert results.REFERENCE_ATTACK == "pgd10"
    # the worst case is an accuracy, not an attack: no runner, no step size, no time column, not nameable
    assert results.WORST not in results.ATTACKS and results.ACCURACY_NAMES[-1] == results.WORST
    assert results.WORST not in results.EVALUATION_PARTS


@pytest.mark.parametrize("attack", results.PGD_ATTACKS)
def test_a_step_size_is_accepted_for_each_pgd_attack_and_refused_for_others(attack):
    config = resolve_evaluation_config({"pgd_step_size": {attack: 0.01}}, num_test=10, default_eps=8 / 255)
    assert config["pgd_step_size"] == {attack: 0.01}
    with pytest.raises(ConfigError):
        resolve_evaluation_config({"pgd_step_size": {"autoattack": 0.01}}, num_test=10, default_eps=8 / 255)


# --- column names, statuses, stages ----------------------------------------------------------------


def test_column_names_are_the_ones_rows_hold():
    assert results.HEADLINE_METRICS == (
        "acc_natural",
        "acc_pgd10",
        "acc_pgd20",
        "acc_pgd10_margin",
        "acc_pgd20_margin",
        "acc_autoattack",
        "acc_worst",
    )
    assert results.ACCURACY_NAMES == (
        "natural",
        "pgd10",
        "pgd20",
        "pgd10_margin",
        "pgd20_margin",
        "autoattack",
        "worst",
    )
    assert results.accuracy_column("natural") == "acc_natural"
    assert results.interval_columns("pgd20") == ("acc_pgd20_lo", "acc_pgd20_hi")
    assert results.count_column("autoattack") == "n_autoattack"
    assert results.metric_columns("pgd10") == ("acc_pgd10", "acc_pgd10_lo", "acc_pgd10_hi", "n_pgd10")
    assert results.step_size_column("pgd20") == "pgd20_step_size"
    assert results.time_column("foundation_pretraining") == "time_foundation_pretraining_s"
    assert results.time_column("integrity") == "time_integrity_s"
    assert [results.accuracy_label(n) for n in results.ACCURACY_NAMES] == [
        "Natural",
        "PGD-10",
        "PGD-20",
        "PGD-10 (margin)",
        "PGD-20 (margin)",
        "AutoAttack",
        "Worst case",
    ]
    assert results.metric_columns("worst") == ("acc_worst", "acc_worst_lo", "acc_worst_hi", "n_worst")
    assert results.SEED_FIELDS == ("data.seed", "preprocessor.seed", "head.seed")
    assert results.CONFIDENCE == 0.95 and results.SWEEP_POINTS == 64


@pytest.mark.parametrize(
    "call",
    [
        lambda: results.accuracy_column("pgd30"),
        lambda: results.count_column("acc_natural"),
        lambda: results.time_column("training"),
        lambda: results.step_size_column("autoattack"),
        lambda: results.step_size_column("worst"),
        lambda: results.time_column("worst"),
        lambda: results.stage("pretraining"),
    ],
)
def test_an_unknown_name_is_refused(call):
    with pytest.raises(ValueError):
        call()


def test_the_evaluation_writes_the_columns_the_contract_names():
    import torch

    from trainables.evaluation import evaluate

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    images, labels = torch.rand(12, 3, 4, 4), torch.arange(12) % 3
    config = {"eps": 0.03, "attacks": ["pgd10"], "integrity": False, "bootstrap_resamples": 10}
    result = evaluate(model, images, labels, config, num_classes=3, default_eps=0.03)
    for name in results.ACCURACY_NAMES:
        assert set(results.metric_columns(name)) <= set(result)
    assert math.isnan(result["acc_pgd20"]) and result[results.count_column("pgd20")] == 0
    assert {results.step_size_column(name) for name in results.PGD_ATTACKS} <= set(result)
    times = {key for key in result if key.startswith("time_")}
    assert times == {results.time_column(name) for name in ("natural", "pgd10", "integrity", "evaluation")}


def test_trial_statuses_are_the_strings_rows_hold():
    # Written by orchestrator's row writers (finished, failed, stopped by a scheduler) and shown live.
    assert [status.value for status in results.TrialStatus] == ["TERMINATED", "ERROR", "STOPPED", "RUNNING"]
    assert results.ROW_STATUSES == ("TERMINATED", "ERROR", "STOPPED")
    assert results.TrialStatus.ERROR == "ERROR" and "STOPPED" == results.TrialStatus.STOPPED
    assert results.TrialStatus("TERMINATED") is results.TrialStatus.TERMINATED
    assert str(results.TrialStatus.STOPPED) == f"{results.TrialStatus.STOPPED}" == "STOPPED"
    assert json.dumps({"status": results.TrialStatus.ERROR}) == '{"status": "ERROR"}'


def test_a_status_is_written_to_parquet_as_its_plain_string(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist([{"status": results.TrialStatus.TERMINATED}]), tmp_path / "row.parquet")
    table = pq.read_table(tmp_path / "row.parquet")
    assert table.schema.field("status").type == pa.string()
    assert table.column("status").to_pylist() == ["TERMINATED"]


def test_the_stage_vocabulary():
    assert results.STAGE_NAMES == ("data", "foundation", "foundation_pretraining", "preprocessor", "head", "evaluation")
    # The stages that add up to a trial's own time (status), the cost table's (paper Table 11),
    # and those with per-epoch rows (plots), as the orchestrator spelt them out.
    assert results.WALL_STAGES == ("data", "foundation", "preprocessor", "head", "evaluation")
    assert results.COST_STAGES == ("foundation_pretraining", "preprocessor", "head", "evaluation")
    assert results.EPOCH_STAGES == ("foundation", "preprocessor", "head")
    labels = {results.stage(name).label: results.stage(name).column for name in results.COST_STAGES}
    assert labels == {
        "foundation pre-training": "time_foundation_pretraining_s",
        "pre-processor": "time_preprocessor_s",
        "head": "time_head_s",
        "evaluation": "time_evaluation_s",
    }
    titles = [f"{results.stage(name).title} (s)" for name in results.COST_STAGES]
    assert titles == ["Pre-training (s)", "Pre-processor (s)", "Head (s)", "Evaluation (s)"]


# --- the hash-stability rule --------------------------------------------------------------------------


def test_a_field_left_out_at_its_default_is_kept_otherwise():
    schema = {
        "optimizer": Field(
            None, "", lambda v: v in (None, "adamw", "sgd"), omit_when_default=True, same_as_default=("adamw",)
        ),
        "flag": Field(None, "", lambda v: v in (None, False, True), omit_when_default=True),
        "lr": Field(0.1, "", lambda v: isinstance(v, float)),
    }
    assert resolve("s", {}, schema) == {"lr": 0.1}
    assert resolve("s", {"optimizer": "adamw"}, schema) == {"lr": 0.1}
    assert resolve("s", {"optimizer": "sgd", "flag": False}, schema) == {"optimizer": "sgd", "flag": False, "lr": 0.1}


def test_settings_added_later_leave_configs_at_their_defaults_unchanged():
    from trainables.schema.head import resolve_head_config
    from trainables.schema.pretraining import resolve_pretraining_config

    assert "optimizer" not in resolve_head_config({"optimizer": "adamw"}, foundation_mode="frozen")
    assert resolve_head_config({"optimizer": "sgd"}, foundation_mode="frozen")["optimizer"] == "sgd"
    pretraining = resolve_pretraining_config({"method": "rocl", "optimizer": None}, untrained=True)
    assert "optimizer" not in pretraining and "dataset" not in pretraining
    cfg = resolve_preprocessor_config({"kind": "cropd", "batch_size_schedule": {}, "validation": None})
    assert "batch_size_schedule" not in cfg and "validation" not in cfg
    cfg = resolve_preprocessor_config({"kind": "cropd", "batch_size_schedule": {"20": 128}, "validation": {"every": 2}})
    assert cfg["batch_size_schedule"] == {20: 128} and cfg["validation"]["every"] == 2
