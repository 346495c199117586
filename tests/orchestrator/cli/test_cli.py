"""`orchestrator preprocessors`: a real end-to-end run, and one clear line for each bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from tiny_settings import TINY_MAE  # tests/helpers/
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from orchestrator.cli.app import main


@pytest.fixture(scope="module")
def local_foundation(tmp_path_factory):
    folder = tmp_path_factory.mktemp("foundation")
    config = ViTMAEConfig(**TINY_MAE)
    ViTMAEForPreTraining(config).save_pretrained(folder)
    return folder


def _error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_trains_preprocessors_end_to_end_and_resumes(tmp_path, local_foundation, tiny_arch, capsys):
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"arch": tiny_arch, "batch_size": 32, "lr": 1e-3}))
    argv = [
        "preprocessors",
        "--kinds",
        "identity,vanilla,cropd",
        "--lambdas",
        "1",
        "--epochs",
        "1",
        "--foundation",
        str(local_foundation),
        "--config",
        str(settings),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "cropd" in out and "vanilla" in out and "identity" in out
    # Published folders only: each has a lock file beside it, kept (removing lock files is racy).
    published = sorted(
        path.name.split("-")[0] for path in (tmp_path / "out" / "preprocessors").iterdir() if path.is_dir()
    )
    assert published == ["cropd", "vanilla"]
    assert main(argv) == 0  # second run reuses the artifacts: no epoch lines
    assert "epoch 1/1" not in capsys.readouterr().out


def test_bad_yaml_value_names_file_and_field(tmp_path, capsys):
    settings = tmp_path / "settings.yaml"
    settings.write_text("temperature: 0\n")
    assert main(["preprocessors", "--config", str(settings), "--out", str(tmp_path / "out")]) == 2
    err = _error_line(capsys)
    assert str(settings) in err and "preprocessor.temperature" in err and "expected a number > 0" in err
    assert not (tmp_path / "out").exists()


def test_unparseable_yaml_and_unknown_kind(tmp_path, capsys):
    settings = tmp_path / "settings.yaml"
    settings.write_text("lambda: [1\n")
    assert main(["preprocessors", "--config", str(settings), "--out", str(tmp_path / "out")]) == 2
    assert "not valid YAML" in _error_line(capsys)
    assert main(["preprocessors", "--kinds", "cropd,robust", "--out", str(tmp_path / "out")]) == 2
    assert "robust" in _error_line(capsys)


def test_missing_dataset_and_foundation_from_the_console_script(tmp_path):
    missing_data = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "preprocessors",
            "--dataset",
            "cifar10",
            "--data-root",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing_data.returncode == 2
    line = missing_data.stderr.strip()
    assert "cifar10" in line and str(tmp_path) in line and "\n" not in line
    missing_model = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "preprocessors",
            "--foundation",
            str(tmp_path / "no-model"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing_model.returncode == 2
    assert "foundation.name" in missing_model.stderr and "\n" not in missing_model.stderr.strip()
    assert not (tmp_path / "out" / "preprocessors").exists()


def test_progress_lines_name_a_setting_whole_when_two_settings_end_alike():
    from orchestrator.engine.progress import describe

    assert (
        describe({"preprocessor.kind": "cropd", "preprocessor.lambda": 1.0, "seed": 0}) == "kind=cropd lambda=1 seed=0"
    )
    assert (
        describe(
            {"foundation.pretraining.method": "rocl", "foundation.mode": "adversarial_finetune", "head.mode": "robust"}
        )
        == "method=rocl foundation.mode=adversarial_finetune head.mode=robust"
    )


def test_a_sweep_that_would_select_on_test_metrics_is_refused_in_one_line_and_writes_nothing(tmp_path):
    """Selection belongs to the validation split: a test-metric objective stops the sweep before
    anything exists, and the line names the file, the field and the validation twin to use."""
    spec = tmp_path / "study.yaml"
    spec.write_text("name: study\ngrid: {preprocessor.kind: [identity]}\nobjectives: {acc_pgd20: max}\n")
    out = tmp_path / "runs" / "study"
    refused = subprocess.run(
        [sys.executable, "-m", "orchestrator", "sweep", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert refused.returncode == 2
    line = refused.stderr.strip()
    assert "\n" not in line
    assert f"{spec}: objectives.acc_pgd20: expected a validation metric such as val_acc_pgd20" in line
    assert not out.exists() and not (tmp_path / "runs").exists()
    # The explicit opt-in is accepted by the same check (planned, not run).
    spec.write_text(spec.read_text() + "select_on_test: true\n")
    assert main(["plan", str(spec)]) == 0
