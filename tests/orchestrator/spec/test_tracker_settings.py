"""The `trackers:` setting (orchestrator/spec/trackers.py) and the Ray Tune callbacks it makes
(orchestrator/engine/trackers.py): where each tracker writes, by default and when its environment
says otherwise; bad values and missing packages in one line. The trackers on a real Ray Tune run,
read back with their own readers, are tests/integration/test_trackers.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.engine.trackers import tracker_callbacks
from orchestrator.spec.trackers import TRACKERS, parse_trackers
from trainables.errors import UserError

REPO = Path(__file__).resolve().parents[3]


# --- where each tracker writes, by default and when told ---------------------------------------


def test_each_tracker_writes_under_the_sweep_unless_its_environment_says_otherwise(tmp_path, monkeypatch):
    names = (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_ALLOW_FILE_STORE",
        "WANDB_DIR",
        "WANDB_PROJECT",
        "WANDB_RUN_GROUP",
        "WANDB_MODE",
    )
    for name in names:
        monkeypatch.setenv(name, "")  # so that monkeypatch unsets, after the test, what tracker_callbacks set
        monkeypatch.delenv(name)
    tensorboard, mlflow, wandb = tracker_callbacks(TRACKERS, tmp_path, "study")
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"  # MLflow 3 opens a file store only so
    assert type(tensorboard).__name__ == "TBXLoggerCallback"
    assert mlflow.tracking_uri == (tmp_path / "mlruns").as_uri() and mlflow.experiment_name == "study"
    assert not mlflow.should_save_artifact
    assert wandb.project == "study" and wandb.group == "study"
    assert wandb.kwargs["dir"] == str(tmp_path) and "mode" not in wandb.kwargs

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("WANDB_PROJECT", "lab")
    monkeypatch.setenv("WANDB_RUN_GROUP", "lambda-study")
    monkeypatch.setenv("WANDB_MODE", "offline")
    mlflow, wandb = tracker_callbacks(("mlflow", "wandb"), tmp_path, "study")
    assert mlflow.tracking_uri == "http://mlflow.example:5000"
    # Passed to wandb.init explicitly: Ray's logging actor does not see the driver's environment.
    assert wandb.project == "lab" and wandb.group == "lambda-study"
    assert wandb.kwargs["dir"] == str(tmp_path / "elsewhere")
    assert wandb.kwargs["mode"] == "offline" and wandb.kwargs["resume"] == "allow"
    assert tracker_callbacks((), tmp_path, "study") == []


# --- parse_trackers ------------------------------------------------------------------------------


def test_no_trackers_is_an_empty_tuple_and_names_keep_their_order():
    assert parse_trackers(None, "spec.yaml") == () and parse_trackers([], "spec.yaml") == ()
    assert parse_trackers(["wandb", "tensorboard"], "spec.yaml") == ("wandb", "tensorboard")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tensorboard", "spec.yaml: trackers: expected a list of tracker names such as [tensorboard, mlflow, wandb]"),
        ({"mlflow": True}, "spec.yaml: trackers: expected a list of tracker names"),
        (
            ["tensorbord"],
            "spec.yaml: trackers: expected one of tensorboard, mlflow, wandb (did you mean 'tensorboard'?)",
        ),
        (["comet"], "spec.yaml: trackers: expected one of tensorboard, mlflow, wandb, got 'comet'"),
        ([3], "spec.yaml: trackers: expected one of tensorboard, mlflow, wandb, got 3"),
        (["mlflow", "wandb", "mlflow"], "spec.yaml: trackers: expected each tracker once ('mlflow' is listed twice)"),
    ],
)
def test_a_wrong_trackers_value_is_one_line_naming_the_file_and_field(value, expected):
    with pytest.raises(UserError) as refused:
        parse_trackers(value, "spec.yaml")
    assert str(refused.value).startswith(expected) and "\n" not in str(refused.value)


def test_a_tracker_whose_package_is_missing_names_the_extra_to_install():
    # A real environment without the trackers: this interpreter without its site-packages (-S).
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from orchestrator.spec.trackers import TRACKERS, parse_trackers\n"
        "for name in TRACKERS:\n"
        "    try: parse_trackers([name], 'spec.yaml')\n"
        "    except Exception as err: print(type(err).__name__, err)\n"
    )
    done = subprocess.run([sys.executable, "-S", "-c", script, str(REPO)], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == [
        f"UserError spec.yaml: trackers: {name} needs the Python package {module}, which is not installed "
        f"(pip install 'cropd-orchestrator[{name}]')"
        for name, module in (("tensorboard", "tensorboardX"), ("mlflow", "mlflow"), ("wandb", "wandb"))
    ], done.stderr
