"""Command-line overrides (orchestrator/spec/overrides.py): Hydra's key=value grammar on a spec, checked
like the spec itself, recorded in the sweep's plan, and a resume with other overrides refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweep_helpers import write_spec

from orchestrator.cli.app import main
from orchestrator.engine.folder import prepare_sweep_dir, write_state
from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.paths import STATE_FILE
from trainables.errors import ConfigError, UserError

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "search_spaces" / "quickstart.yaml"


def test_the_smoke_overrides_of_the_quickstart_land_where_their_keys_say():
    plain = load_spec(QUICKSTART)
    smoke = load_spec(QUICKSTART, ["preprocessor.epochs=1", "seeds=[0]", "name=smoke"])
    assert smoke.name == "smoke" and smoke.overrides == ("preprocessor.epochs=1", "seeds=[0]", "name=smoke")
    assert smoke.num_trials == plain.num_trials // len(plain.raw["seeds"])  # one seed of each point
    for point in smoke.grid_points:
        assert point["seed"] == 0
        assert smoke.trial_config(point)["preprocessor"]["epochs"] == 1
    assert plain.trial["preprocessor"]["epochs"] != 1 and plain.plan_hash != smoke.plan_hash
    # the `trial.` prefix may be written; Hydra's `+` for a new key is accepted
    assert load_spec(QUICKSTART, ["trial.preprocessor.epochs=1", "+seeds=[0]", "name=smoke"]).plan == smoke.plan


def test_grid_axes_and_the_search_budget_are_overridden(tmp_path, tiny_foundation_config, tiny_arch):
    path = write_spec(tmp_path, tiny_foundation_config, tiny_arch)  # grid: identity | cropd x lambda [1, 10]
    spec = load_spec(path, ["grid.1.preprocessor.lambda=[1]", "grid.0.head.epochs=[1, 2]"])
    points = sorted(spec.grid_points, key=str)
    assert {(p.get("preprocessor.kind"), p.get("preprocessor.lambda"), p.get("head.epochs")) for p in points} == {
        ("identity", None, 1),
        ("identity", None, 2),
        ("cropd", 1, None),
    }
    searched = load_spec(REPO / "search_spaces" / "temperature.yaml", ["search.trials=4"])
    assert searched.search_trials == 4 and searched.num_trials == len(searched.grid_points) + 4


@pytest.mark.parametrize(
    "override, field_or_text",
    [
        ("preprocessor.epochs=zero", "preprocessor.epochs"),  # the schema's own check
        ("preprocessor.epoch=1", "did you mean 'epochs'"),
        ("seeds=[0, 0]", "seeds"),
        ("grid.7.preprocessor.lambda=[1]", "grid has 2 entries"),
        ("grid.x.preprocessor.lambda=[1]", "grid.N.AXIS"),
        ("preprocessor.epochs", "KEY=VALUE"),
        ("preprocessor=1", "a setting inside a trial section"),
        ("name.first=x", "name is"),
        ("+preprocessor.epochs=", "expected a value after '='"),  # once set the epochs to null, silently
        ("head.epochs=", "head.epochs=null"),
        (["head.epochs=2", "head.epochs=3"], "already set by 'head.epochs=2'"),  # once: the last won, silently
        (["+head.epochs=2", "head.epochs=2"], "give it once"),
    ],
)
def test_a_bad_override_is_one_line_naming_what_was_expected(
    tmp_path, tiny_foundation_config, tiny_arch, override, field_or_text
):
    path = write_spec(tmp_path, tiny_foundation_config, tiny_arch)
    with pytest.raises((ConfigError, UserError)) as caught:
        load_spec(path, override if isinstance(override, list) else [override])
    message = str(caught.value)
    assert field_or_text in message and "\n" not in message and str(path) in message


def test_the_command_line_refuses_a_bad_override_with_exit_2_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "runs" / "smoke"
    code = main(["sweep", str(QUICKSTART), "preprocessor.epochs=-1", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "preprocessor.epochs" in err[0]
    assert not out.exists()


def test_a_resume_with_other_overrides_is_refused_and_says_which(tmp_path, tiny_foundation_config, tiny_arch):
    path = write_spec(tmp_path, tiny_foundation_config, tiny_arch)
    first = load_spec(path, ["head.epochs=1"])
    sweep_dir = tmp_path / "runs" / "tiny"
    write_state(first, sweep_dir)
    assert json.loads((sweep_dir / STATE_FILE).read_text())["overrides"] == ["head.epochs=1"]
    assert prepare_sweep_dir(load_spec(path, ["head.epochs=1"]), sweep_dir, restart=False) is True
    # an operational override (how it runs, not what it computes) resumes too
    assert prepare_sweep_dir(load_spec(path, ["head.epochs=1", "max_concurrent=1"]), sweep_dir, restart=False)
    with pytest.raises(
        UserError,
        match=r"changed: trial; it was started with the overrides head\.epochs=1, this run has head\.epochs=2",
    ):
        prepare_sweep_dir(load_spec(path, ["head.epochs=2"]), sweep_dir, restart=False)
    with pytest.raises(UserError, match=r"this run has \(none\)"):
        prepare_sweep_dir(load_spec(path), sweep_dir, restart=False)


def test_prepare_takes_the_same_overrides(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CROPD_DATA_ROOT", str(tmp_path / "empty"))
    spec = REPO / "search_spaces" / "lambda_ablation.yaml"
    assert main(["prepare", str(spec), "data.dataset=svhn", "grid.0.preprocessor.kind=[identity]"]) == 1
    lines = capsys.readouterr().out.splitlines()
    (dataset,) = [line for line in lines if " dataset " in line]
    assert "svhn" in dataset and "cifar2" not in "\n".join(lines)
    assert not [line for line in lines if " vae " in line]  # the VAE row was overridden away
