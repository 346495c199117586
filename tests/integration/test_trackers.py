"""Experiment trackers (orchestrator/spec/trackers.py) on a real Ray Tune run, each read back with its own reader.

A trivial trainable reports like a sweep's trials do: per epoch the epoch, the stage (a string),
a loss and the objective still NaN, then a final report with the objective and the integrity
flags (a list of strings). TensorBoard's event files are read with tensorboard's
EventAccumulator, MLflow's file store with MlflowClient, and W&B's offline run with its
transaction log (the .wandb file: wandb 0.31 has no Python reader for it, so the few lines of
LevelDB log format it is written in are read here).
"""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import sys
import tempfile
import time
from pathlib import Path

import pytest
from ray import tune
from sweep_helpers import local_ray_session

from orchestrator.engine import private_apis
from orchestrator.engine.trackers import tracker_callbacks
from orchestrator.spec.trackers import TRACKERS

pytestmark = pytest.mark.integration

CONFIGS = [{"preprocessor.lambda": 1.0, "seed": 0}, {"preprocessor.lambda": 10.0, "seed": 0}]
EPOCHS = 3


def loss(config: dict, epoch: int) -> float:
    return config["preprocessor.lambda"] / epoch


def accuracy(config: dict) -> float:
    return 0.5 + config["preprocessor.lambda"] / 100


def report_like_a_trial(config):
    for epoch in range(1, EPOCHS + 1):
        tune.report({"epoch": epoch, "stage": "preprocessor", "loss": loss(config, epoch), "acc_natural": math.nan})
    tune.report({"epoch": EPOCHS, "stage": "evaluation", "acc_natural": accuracy(config), "integrity_flags": ["x"]})


@pytest.fixture(scope="module")
def tracker_env(tmp_path_factory):
    """Offline W&B with its files under tmp, no tracker variable from outside; set before Ray starts,
    so Ray's workers (W&B's logging actors) inherit it. The whole environment comes back after."""
    saved = dict(os.environ)
    home = tmp_path_factory.mktemp("tracker-env")
    for name in (
        *("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"),
        *("WANDB_DIR", "WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_API_KEY"),
    ):
        os.environ.pop(name, None)
    os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)  # tracker_callbacks sets it for its file store
    os.environ.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_CACHE_DIR=str(home / "wandb-cache"),
        WANDB_CONFIG_DIR=str(home / "wandb-config"),
        # Ray kills each W&B logging actor once its run has finished, before wandb removes its
        # temporary folders: Ray's workers keep theirs here, not in /tmp.
        TMPDIR=str(home / "tmp"),
        # As the driver sets it (orchestrator/engine/runner.py): no CSV, JSON or TensorBoard files per
        # trial unless a tracker asks for them.
        TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1",
    )
    (home / "tmp").mkdir()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def local_ray(tracker_env):
    from ray import cloudpickle

    # Ray's workers cannot import this test module: its trainables go to them by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with local_ray_session():
            yield
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def run_tuner(trainable, sweep_dir: Path, params: dict, extra_callbacks=()):
    tuner = tune.Tuner(
        trainable,
        param_space={key: tune.grid_search(values) for key, values in params.items()},
        run_config=tune.RunConfig(
            name="ray",
            storage_path=str(sweep_dir),  # Tune's experiment folder is <sweep_dir>/ray, as in the runner
            verbose=0,
            callbacks=[*tracker_callbacks(TRACKERS, sweep_dir, "study"), *extra_callbacks],
        ),
    )
    return tuner.fit()


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory, local_ray):
    sweep_dir = tmp_path_factory.mktemp("sweep")
    params = {"preprocessor.lambda": [c["preprocessor.lambda"] for c in CONFIGS], "seed": [0]}
    results = run_tuner(report_like_a_trial, sweep_dir, params)
    assert not results.errors
    return sweep_dir


def trial_folders(sweep_dir: Path) -> list[Path]:
    """The trials' folders in Tune's experiment folder that hold TensorBoard event files."""
    return sorted({path.parent for path in (sweep_dir / "ray").glob("*/events.out.tfevents.*")})


# --- TensorBoard ---------------------------------------------------------------------------------


def same_series(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """Equal steps, values equal to float32 precision (TensorBoard keeps float32)."""
    return [step for step, _ in got] == [step for step, _ in expected] and [v for _, v in got] == pytest.approx(
        [v for _, v in expected], rel=1e-6
    )


def tensorboard_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in tensorboard_events(folder).Scalars(tag)]


def hparams(folder: Path) -> dict[str, float]:
    """The trial's config as TensorBoard hparams (written when the trial ends)."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    content = tensorboard_events(folder).PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {name: value.number_value for name, value in values.items()}


def test_tensorboard_event_files_in_each_trial_folder_hold_every_reported_number_and_the_config(sweep_dir):
    folders = {hparams(folder)["preprocessor.lambda"]: folder for folder in trial_folders(sweep_dir)}
    assert sorted(folders) == [1.0, 10.0]
    for config in CONFIGS:
        folder = folders[config["preprocessor.lambda"]]
        assert hparams(folder) == config
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1
        # Tune's step is its training iteration: the three epochs, then the final report.
        assert same_series(scalars(folder, "ray/tune/loss"), [(e, loss(config, e)) for e in (1, 2, 3)])
        assert scalars(folder, "ray/tune/epoch") == [(1, 1), (2, 2), (3, 3), (4, 3)]
        assert same_series(scalars(folder, "ray/tune/acc_natural"), [(4, accuracy(config))])  # NaN skipped
        tags = tensorboard_events(folder).Tags()["scalars"]
        assert not [tag for tag in tags if "stage" in tag or "integrity_flags" in tag]


# --- MLflow --------------------------------------------------------------------------------------


def test_mlflow_file_store_under_the_sweep_holds_one_run_per_trial_with_params_and_metric_history(sweep_dir):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(sweep_dir / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("study")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and {run.info.status for run in runs} == {"FINISHED"}
    by_lambda = {float(run.data.params["preprocessor.lambda"]): run for run in runs}
    for config in CONFIGS:
        run = by_lambda[config["preprocessor.lambda"]]
        assert run.data.params == {key: str(value) for key, value in config.items()}

        def history(metric: str) -> list[tuple[int, float]]:
            return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, metric))

        assert same_series(history("loss"), [(e, loss(config, e)) for e in (1, 2, 3)])
        assert history("epoch") == [(1, 1), (2, 2), (3, 3), (4, 3)]
        objective = history("acc_natural")  # MLflow keeps the NaN of the epochs before the evaluation
        assert [step for step, _ in objective] == [1, 2, 3, 4] and all(math.isnan(v) for _, v in objective[:3])
        assert objective[3][1] == pytest.approx(accuracy(config))
        assert "stage" not in run.data.metrics and "integrity_flags" not in run.data.metrics
    assert not list((sweep_dir / "mlruns").rglob("artifacts/*"))  # nothing uploaded
    # mlflow.set_tracking_uri writes the variable; left set, it would send the next sweep here.
    assert "MLFLOW_TRACKING_URI" not in os.environ


# --- W&B -----------------------------------------------------------------------------------------


def wandb_records(path: Path):
    """The records of a W&B transaction log: a 7-byte W&B header, then LevelDB's log format
    (32 KiB blocks of chunks, each a 7-byte header: CRC, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, pending = 32768, 7, b""
    while position + 7 <= len(data):
        left = block - position % block
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if left < 7 or kind == 0:  # a block's zero-filled tail
            position += left
            continue
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def wandb_run(folder: Path) -> dict:
    """The run's id, project, config, history (per step) and summary, and whether it finished."""

    def values(items) -> dict:  # wandb-core writes a key as `nested_key` (its path), the SDK as `key`
        return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}

    run = {"config": {}, "history": {}, "summary": {}, "finished": False}
    for record in wandb_records(next(folder.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(id=record.run.run_id, project=record.run.project, group=record.run.run_group)
            run["config"].update(values(record.run.config.update))
        elif kind == "config":
            run["config"].update(values(record.config.update))
        elif kind == "history":
            run["history"][record.history.step.num] = values(record.history.item)
        elif kind == "summary":
            run["summary"].update(values(record.summary.update))
        elif kind == "exit":
            run["finished"] = True
    return run


def test_wandb_offline_writes_one_finished_run_per_trial_under_the_sweep(sweep_dir):
    folders = sorted((sweep_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 2
    runs = {wandb_run(folder)["config"]["preprocessor.lambda"]: wandb_run(folder) for folder in folders}
    for config in CONFIGS:
        run = runs[config["preprocessor.lambda"]]
        assert run["project"] == "study" and run["group"] == "study" and run["finished"]
        assert {key: run["config"][key] for key in config} == config
        history = run["history"]
        assert sorted(history) == [1, 2, 3, 4]
        assert [history[e]["loss"] for e in (1, 2, 3)] == pytest.approx([loss(config, e) for e in (1, 2, 3)])
        assert [history[step]["epoch"] for step in (1, 2, 3, 4)] == [1, 2, 3, 3]
        assert run["summary"]["acc_natural"] == pytest.approx(accuracy(config))
        assert not any("stage" in values or "integrity_flags" in values for values in history.values())


# --- an interrupted sweep, then resumed ----------------------------------------------------------


class StopAtEpoch2(tune.Callback):
    """Stops the sweep the way the driver does on a full disk (orchestrator/engine/trial_failures.py)."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["epoch"] == 2 and result["stage"] == "preprocessor":
            os.kill(os.getpid(), signal.SIGINT)


def resumable_trial(config):

    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            start = json.loads(Path(folder, "state.json").read_text())["epoch"]
    for epoch in range(start + 1, EPOCHS + 1):
        time.sleep(0.5)  # the driver sees epoch 2 (and stops) before epoch 3 is reported
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "state.json").write_text(json.dumps({"epoch": epoch}))
            tune.report(
                {"epoch": epoch, "stage": "preprocessor", "loss": loss(config, epoch)},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )
    tune.report({"epoch": EPOCHS, "stage": "evaluation", "acc_natural": accuracy(config)})


def test_an_interrupted_sweep_ends_at_once_and_a_resume_logs_the_rest(tmp_path, local_ray):
    config = CONFIGS[0]
    started = time.monotonic()
    results = run_tuner(resumable_trial, tmp_path, {k: [v] for k, v in config.items()}, [StopAtEpoch2()])
    # Ray's W&B callback waited up to 30 minutes here for the cut trial's logging actor.
    assert time.monotonic() - started < 60
    assert results[0].metrics["epoch"] == 2
    (cut,) = [wandb_run(folder) for folder in (tmp_path / "wandb").glob("offline-run-*")]
    assert cut["finished"] and sorted(cut["history"]) == [1, 2]

    restored = tune.Tuner.restore(str(tmp_path / "ray"), resumable_trial, resume_unfinished=True)
    private_apis.set_restored_callbacks(restored, tracker_callbacks(TRACKERS, tmp_path, "study"))
    assert not restored.fit().errors

    # TensorBoard: a second event file in the same trial folder; read together, every epoch's value
    # at its step. As for W&B below, the cut epoch (2) comes again when Tune had not registered its
    # checkpoint yet when the sweep was cut (seen in CI under load): then it is there twice.
    (folder,) = trial_folders(tmp_path)
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    once = [(e, loss(config, e)) for e in (1, 2, 3)]
    series = scalars(folder, "ray/tune/loss")
    assert same_series(series, once) or same_series(series, [once[0], once[1], once[1], once[2]]), series
    # W&B: a second offline run with the trial's id (resume="allow" continues it when online).
    runs = [wandb_run(folder) for folder in (tmp_path / "wandb").glob("offline-run-*")]
    assert len(runs) == 2 and len({run["id"] for run in runs}) == 1
    resumed = next(run for run in runs if run is not cut and 4 in run["history"])
    # It goes on from the trial's last checkpoint Tune registered: the cut epoch may come again.
    assert {*cut["history"], *resumed["history"]} == {1, 2, 3, 4} and min(resumed["history"]) >= 2
    assert resumed["summary"]["acc_natural"] == pytest.approx(accuracy(config))
    # MLflow: Ray's callback starts a new run for the resumed trial; the cut one stays RUNNING.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("study").experiment_id])
    assert sorted(run.info.status for run in runs) == ["FINISHED", "RUNNING"]
