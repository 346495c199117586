"""The command line people know: `--format json` on status and report, the test points behind
each report column, `-q` / `-v`, and tab completion, on real sweep folders written by the same
writers a sweep uses (results rows, per-example outcomes, sweep.json, started trial folders)."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from store_helpers import add_trial

from orchestrator import logs
from orchestrator.cli.app import main
from orchestrator.store.parquet import write_examples
from trainables.artifacts import atomic_write_json

REPO = Path(__file__).resolve().parents[3]
POINTS, AA_POINTS = 200, 50  # natural and PGD-20 on 200 test points; AutoAttack on the first 50
RIGHT = {"identity": (180, 20, 5), "cropd": (170, 90, 20)}  # points right: natural, PGD-20, AutoAttack


def _sweep(tmp_path: Path) -> Path:
    """Identity and CRoPD (lambda 10), seeds 0 and 1, AutoAttack on seed 0 only (as
    embedded_table1 runs it); one failed CRoPD (lambda 1); one trial started without a row yet;
    one planned trial not started: 7 planned."""
    sweep = tmp_path / "demo"
    atomic_write_json(
        sweep / "sweep.json",
        {"name": "demo", "plan_hash": "0" * 16, "plan": {"mode": "grid", "points": 7}, "num_trials": 7},
    )
    minute = 0
    for kind, lam in (("identity", None), ("cropd", 10)):
        natural, pgd20, autoattack = RIGHT[kind]
        for seed in (0, 1):
            attacked = seed == 0
            metrics = {
                "n_natural": POINTS,
                "n_pgd20": POINTS,
                "acc_autoattack": autoattack / AA_POINTS if attacked else math.nan,
                "acc_autoattack_lo": autoattack / AA_POINTS - 0.05 if attacked else math.nan,
                "acc_autoattack_hi": autoattack / AA_POINTS + 0.05 if attacked else math.nan,
                "n_autoattack": AA_POINTS if attacked else 0,  # what evaluation records when not run
                "time_evaluation_s": 2.0,
            }
            key = add_trial(
                sweep,
                kind=kind,
                lam=lam,
                seed=seed,
                natural=natural / POINTS,
                pgd20=pgd20 / POINTS,
                minute=minute,
                extra_metrics=metrics,
            )
            minute += 1
            correct = {
                "natural": [i < natural for i in range(POINTS)],
                "pgd20": [i < pgd20 for i in range(POINTS)],
            }
            if attacked:
                correct["autoattack"] = [i < autoattack for i in range(AA_POINTS)]
            write_examples(
                sweep,
                key,
                {"index": list(range(POINTS)), "label": [0] * POINTS, "correct": correct},
                {"sweep": "hand", "trial_id": f"t-{key[:6]}", "config_hash": key},
            )
    add_trial(sweep, kind="cropd", lam=1, natural=0, pgd20=0, status="ERROR", minute=minute)
    atomic_write_json(sweep / "trials" / "feedfacefeedface" / "config.json", {"config": {}, "overrides": {}})
    return sweep


def _only_json(capsys):
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err  # json.loads fails on anything else on stdout


# --- status --------------------------------------------------------------------------------------


def test_status_json_has_the_counts_jobs_and_every_trial(tmp_path, capsys):
    sweep = _sweep(tmp_path)
    assert main(["status", str(sweep), "--format", "json"]) == 0
    status, _ = _only_json(capsys)
    assert status["sweep"] == str(sweep) and status["jobs"] == []
    assert status["counts"] == {"planned": 7, "finished": 4, "failed": 1, "stopped": 0, "started": 1, "not_started": 1}
    trials = status["trials"]
    assert [t["status"] for t in trials] == ["TERMINATED"] * 4 + ["ERROR"]
    assert [t["settings"]["preprocessor.kind"] for t in trials] == ["identity"] * 2 + ["cropd"] * 3
    assert [t["settings"]["seed"] for t in trials] == [0, 1, 0, 1, 0]
    first = trials[0]
    assert len(first["config_hash"]) == 16 and first["trial_id"] == f"t-{first['config_hash'][:6]}"
    assert first["acc_natural"] == {"value": 0.9, "lo": pytest.approx(0.88), "hi": pytest.approx(0.93), "points": 200}
    assert first["acc_autoattack"]["points"] == AA_POINTS and first["acc_autoattack"]["value"] == 0.1
    assert trials[1]["acc_autoattack"] == {"value": None, "lo": None, "hi": None, "points": 0}  # not run: null
    assert first["acc_pgd10"]["value"] is None  # never measured: null, never NaN (invalid JSON)
    assert first["time_s"] == pytest.approx(3.5) and first["error"] is None
    assert trials[4]["error"] == "RuntimeError: boom" and trials[4]["acc_natural"]["value"] is None


def test_status_table_is_unchanged_by_the_json_option(tmp_path, capsys):
    sweep = _sweep(tmp_path)
    assert main(["status", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert f"sweep {sweep}: 7 planned, 4 finished, 1 failed, 0 stopped, 1 started, 1 not started" in out
    assert "failed: RuntimeError: boom" in out
    assert "driver: none running" in out
    # The per-trial lines use the counts' words, not Ray's state names (once: TERMINATED beside "finished").
    assert "TERMINATED" not in out and "ERROR" not in out and out.count(" finished ") >= 4
    # `text` is the human format's name everywhere; `table`, its old name here, is still accepted.
    assert main(["status", str(sweep), "--format", "text"]) == 0
    assert capsys.readouterr().out == out
    assert main(["status", str(sweep), "--format", "table"]) == 0
    assert capsys.readouterr().out == out


def test_status_json_of_something_not_a_sweep_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["status", str(tmp_path), "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"orchestrator: error: {tmp_path}: not a sweep directory (no sweep.json)"


# --- report --------------------------------------------------------------------------------------


def test_report_json_has_the_rows_points_and_paired_differences(tmp_path, capsys):
    sweep = _sweep(tmp_path)
    assert main(["report", str(sweep), "--format", "json"]) == 0
    report, _ = _only_json(capsys)
    assert report["sweeps"] == ["hand"]
    assert report["metrics"] == ["acc_natural", "acc_pgd20", "acc_autoattack"]
    assert report["keys"][:3] == ["preprocessor.kind", "preprocessor.lambda", "head.mode"]
    identity, cropd = report["rows"]
    assert (
        identity["settings"]["preprocessor.kind"] == "identity" and identity["settings"]["preprocessor.lambda"] is None
    )
    assert cropd["settings"]["preprocessor.lambda"] == 10 and cropd["n_seeds"] == 2
    natural, autoattack = cropd["metrics"]["acc_natural"], cropd["metrics"]["acc_autoattack"]
    assert natural["mean"] == pytest.approx(170 / POINTS) and natural["seeds"] == 2 and natural["points"] == POINTS
    assert autoattack["mean"] == pytest.approx(20 / AA_POINTS) and autoattack["seeds"] == 1  # seed 0 only
    assert autoattack["points"] == AA_POINTS and list(autoattack["points_by_trial"].values()) == [AA_POINTS]
    # No validation metrics in these rows: nothing is "best" (best is chosen on the validation split).
    assert not autoattack["best"] and not identity["metrics"]["acc_autoattack"]["best"]
    assert len(cropd["config_hashes"]) == 2 and cropd["integrity_flags"] == []

    (comparison,) = report["comparisons"]
    assert comparison["reference"] == "identity"
    reference_row, compared = comparison["rows"]
    assert reference_row["reference"] == "self" and reference_row["metrics"]["acc_pgd20"] is None
    assert compared["reference"] == identity["config_hashes"]
    pgd20, aa = compared["metrics"]["acc_pgd20"], compared["metrics"]["acc_autoattack"]
    assert pgd20["diff"] == pytest.approx((90 - 20) / POINTS) and pgd20["points"] == POINTS and pgd20["seeds"] == 2
    assert pgd20["excludes_zero"] and pgd20["p"] < 1e-9 and pgd20["lo"] <= pgd20["diff"] <= pgd20["hi"]
    assert aa["diff"] == pytest.approx((20 - 5) / AA_POINTS) and (aa["points"], aa["seeds"]) == (AA_POINTS, 1)


def test_report_says_how_many_points_are_behind_each_column(tmp_path, capsys):
    sweep = _sweep(tmp_path)
    assert main(["report", str(sweep)]) == 0
    captured = capsys.readouterr()
    # 4 of 7 planned trials finished: said first (once a partial report read as final), then the table.
    partial = "Partial: 4 of 7 planned trials finished"
    banner, blank, *lines = captured.out.splitlines()
    assert banner.startswith(f"**{partial}") and blank == "" and partial in captured.err
    assert lines[0] == "| Pre-processor | λ | Head | n | Natural | PGD-20 | AutoAttack |"
    # cropd: AutoAttack on one seed of two; 20 of 50 points: Wilson's (27.6%, 53.8%), half-width 13.1
    assert lines[3].endswith("| 40.0 ± 13.1 (1 seed) |")
    assert "on 200 test points per trial (Natural, PGD-20) and 50 (AutoAttack);" in lines[5]

    assert main(["report", str(sweep), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table["acc_natural_points"].tolist() == [POINTS, POINTS]
    assert table["acc_autoattack_points"].tolist() == [AA_POINTS, AA_POINTS]
    assert table["vs_identity_autoattack_points"].tolist()[1] == AA_POINTS


def test_a_row_measured_on_other_points_says_so_in_its_cell(tmp_path, capsys):
    sweep = _sweep(tmp_path)
    add_trial(
        sweep,
        kind="vanilla",
        natural=0.5,
        pgd20=0.2,
        minute=30,
        extra_metrics={"n_natural": POINTS, "n_pgd20": 64},  # a smaller PGD-20 subset on this row
    )
    assert main(["report", str(sweep), "--compare-to", "none"]) == 0
    out = capsys.readouterr().out
    vanilla = next(line for line in out.splitlines() if line.startswith("| vanilla"))
    assert "20.0 ± 2.5 (64 points)" in vanilla
    assert "'(k points)' where a row's trials measured another number" in out
    assert main(["report", str(sweep), "--format", "json", "--compare-to", "none"]) == 0
    report, _ = _only_json(capsys)
    assert report["comparisons"] == []
    row = next(r for r in report["rows"] if r["settings"]["preprocessor.kind"] == "vanilla")
    assert row["metrics"]["acc_pgd20"]["points"] == 64 and row["metrics"]["acc_autoattack"]["points"] is None


def test_report_costs_json_and_json_to_a_file(tmp_path, capsys):
    sweep = _sweep(tmp_path)
    assert main(["report", str(sweep), "--costs", "--format", "json"]) == 0
    costs, _ = _only_json(capsys)
    assert [row["settings"]["preprocessor.kind"] for row in costs["rows"]] == ["identity", "cropd"]
    assert costs["columns"] == ["time_head_s", "time_evaluation_s"]
    assert costs["rows"][1]["costs"] == {"time_head_s": 1.5, "time_evaluation_s": 2.0}

    out = tmp_path / "report.json"
    assert main(["report", str(sweep), "--format", "json", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip().splitlines()[-1] == f"wrote {out}"
    written = json.loads(out.read_text())
    assert [row["n_seeds"] for row in written["rows"]] == [2, 2]
    assert written["progress"] == {"finished": 4, "planned": 7}


def test_report_json_of_a_sweep_without_finished_trials_is_one_line_and_exit_2(tmp_path, capsys):
    sweep = tmp_path / "empty"
    add_trial(sweep, kind="cropd", lam=1, natural=0, pgd20=0, status="ERROR")
    assert main(["report", str(sweep), "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no finished trials yet" in captured.err and "\n" not in captured.err.strip()


# --- -q / -v -------------------------------------------------------------------------------------

TOUCHED = ("", *logs.OURS, logs.AUTOATTACK, "ray", "ray.tune", "optuna", "transformers")
ENVIRONMENT = (logs.ENV, "TRANSFORMERS_VERBOSITY", "RAY_LOGGER_LEVEL", "HF_HUB_DISABLE_PROGRESS_BARS")


@pytest.fixture
def restored_logging():
    """Every logger and variable -q / -v touch, put back as they were after the test."""
    saved = {
        name: (logger.level, logger.propagate, list(logger.handlers), list(logger.filters))
        for name, logger in ((name, logging.getLogger(name)) for name in TOUCHED)
    }
    environment = {name: os.environ.get(name) for name in ENVIRONMENT}
    yield
    for name, (level, propagate, handlers, filters) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers
        logger.filters[:] = filters
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _autoattack_progress(verbose: bool) -> None:
    """What pyautoattack logs while it runs, inside the trial's own logging context."""
    from trainables.evaluation import autoattack_logging

    with autoattack_logging(verbose):
        logging.getLogger("auto-attack").debug("running apgd-ce")
        logging.getLogger("auto-attack").warning("possible gradient masking")


@pytest.mark.parametrize("position", ["before", "after"])
def test_quiet_keeps_warnings_only_here_and_for_the_trial_processes(tmp_path, capsys, restored_logging, position):
    sweep = _sweep(tmp_path)
    args = ["-q", "status", str(sweep)] if position == "before" else ["status", str(sweep), "-q"]
    assert main(args) == 0
    assert "4 finished" in capsys.readouterr().out  # the command's own output stays
    assert os.environ[logs.ENV] == "quiet" and os.environ["TRANSFORMERS_VERBOSITY"] == "warning"
    assert logging.getLogger("orchestrator").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("optuna.study.study").getEffectiveLevel() == logging.WARNING
    assert logs.ray_logging_level() == logging.WARNING  # what RayCluster passes to ray.init
    # Even a trial asking for AutoAttack's progress (evaluation.verbose) shows warnings only.
    root = logging.getLogger()
    handler = logging.StreamHandler(stream := io.StringIO())
    root.addHandler(handler)
    try:
        _autoattack_progress(verbose=True)
    finally:
        root.removeHandler(handler)
    assert stream.getvalue() == "possible gradient masking\n"


def test_verbose_shows_autoattack_progress_in_a_trial_process(restored_logging, capsys):
    # The driver's choice reaches a Ray worker or Slurm task through the environment, and
    # run_recorded_trial applies it there (logs.apply_from_environment).
    os.environ[logs.ENV] = "verbose"
    logs.apply_from_environment()
    _autoattack_progress(verbose=False)  # the default evaluation: progress hidden without -v
    err = capsys.readouterr().err
    assert "DEBUG auto-attack: running apgd-ce" in err and err.count("running apgd-ce") == 1
    assert logging.getLogger("optuna.study._tell").getEffectiveLevel() == logging.INFO
    # A sweep's start sets Tune's logger again: to warnings without -v, to info with it.
    from orchestrator.engine.runner import quiet_ray_tune

    quiet_ray_tune()
    assert logging.getLogger("ray.tune.execution.tune_controller").getEffectiveLevel() == logging.INFO
    logging.getLogger("orchestrator.some_module").debug("a debug line of ours")
    assert "DEBUG orchestrator.some_module: a debug line of ours" in capsys.readouterr().err


def test_without_an_option_nothing_changes(tmp_path, capsys, restored_logging):
    os.environ.pop(logs.ENV, None)
    before = {name: logging.getLogger(name).level for name in TOUCHED}
    assert main(["status", str(_sweep(tmp_path))]) == 0
    assert {name: logging.getLogger(name).level for name in TOUCHED} == before
    assert logs.ENV not in os.environ and logs.ray_logging_level() is None
    _autoattack_progress(verbose=False)
    assert "apgd" not in capsys.readouterr().err


def test_quiet_and_verbose_together_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["-q", "-v", "status", "runs/x"])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith("argument -v/--verbose: not allowed with argument -q/--quiet")
    )


# --- completion ----------------------------------------------------------------------------------


def _complete(line: str, tmp_path: Path) -> list[str]:
    """Ask the real command for completions the way the shell code does (argcomplete's protocol)."""
    answer = tmp_path / "completions.txt"
    environment = dict(
        os.environ,
        _ARGCOMPLETE="1",
        _ARGCOMPLETE_IFS="\n",
        _ARGCOMPLETE_STDOUT_FILENAME=str(answer),
        COMP_LINE=line,
        COMP_POINT=str(len(line)),
        PYTHONPATH=str(REPO),
    )
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator"], env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return sorted(answer.read_text().split("\n"))


def test_completion_of_commands_and_spec_paths(tmp_path):
    (tmp_path / "specs").mkdir()
    for name in ("lambda_ablation.yaml", "notes.txt", "quickstart.yml"):
        (tmp_path / name).write_text("")
    assert _complete("orchestrator st", tmp_path) == ["status "]
    assert _complete(f"orchestrator sweep {tmp_path}/", tmp_path) == [
        f"{tmp_path}/lambda_ablation.yaml",
        f"{tmp_path}/quickstart.yml",
        f"{tmp_path}/specs/",
    ]  # not notes.txt (nor the answer file of this test)
    assert _complete(f"orchestrator status {tmp_path}/la", tmp_path) == [f"{tmp_path}/lambda_ablation.yaml "]
    assert _complete("orchestrator report runs/x --f", tmp_path) == ["--format "]


@pytest.mark.parametrize("shell, marker", [("bash", "complete "), ("zsh", "#compdef orchestrator")])
def test_completion_prints_the_shell_code(capsys, shell, marker):
    assert main(["completion", shell]) == 0
    code = capsys.readouterr().out
    assert marker in code and "orchestrator" in code and "_ARGCOMPLETE" in code


def test_completion_for_another_shell_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["completion", "fish"])
    assert exit_info.value.code == 2 and "invalid choice: 'fish'" in capsys.readouterr().err
