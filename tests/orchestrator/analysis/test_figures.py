"""Figures a paper can use: one colour and marker per configuration everywhere, accuracy in % from 0,
clean and robust heads apart, the intervals explained, PDF, and the epochs of running trials.

Hand-built results as real trials write them (Parquet rows, per-epoch logs, a running trial's
config.json): Identity, Vanilla and CRoPD at lambda 1 and 10, clean and robust heads, two seeds.
"""

from __future__ import annotations

import json

import pytest
from matplotlib.colors import to_hex
from store_helpers import add_trial

from orchestrator.analysis import plots
from orchestrator.analysis.figure_style import INTERVALS_NOTE, configuration_style
from orchestrator.analysis.frames import finished_trials, load
from orchestrator.analysis.summary_figure import summary_figure
from orchestrator.cli.app import main
from orchestrator.store.parquet import EpochLog
from orchestrator.store.paths import SweepPaths

CONFIGURATIONS = (("identity", None), ("vanilla", None), ("cropd", 1), ("cropd", 10))


def _store(tmp_path):
    sweep_dir = tmp_path / "figures"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text("{}")
    minute = 0
    for head in ("clean", "robust"):
        for kind, lam in CONFIGURATIONS:
            for seed in (0, 1):
                natural = 0.9 - (0.1 if head == "robust" else 0)
                pgd20 = 0.0 if (head, kind) == ("clean", "identity") else 0.2 + 0.1 * (lam or 0) / 10 + 0.01 * seed
                key = add_trial(
                    sweep_dir, kind=kind, lam=lam, seed=seed, head=head, natural=natural, pgd20=pgd20, minute=minute
                )
                log = EpochLog(sweep_dir, key, {"sweep": "hand", "trial_id": f"t-{key[:6]}", "config_hash": key})
                for epoch in range(3):
                    log.add(
                        {"stage": "head", "epoch": epoch, "loss": 1.0 / (epoch + 1), "train_acc": 0.5 + 0.1 * epoch}
                    )
                minute += 1
    return sweep_dir


def _colours(ax):
    """Hex colour of each labelled line and errorbar of a panel."""
    return {
        label: to_hex((handle.lines[0] if hasattr(handle, "lines") else handle).get_color())
        for handle, label in zip(*ax.get_legend_handles_labels())
    }


def test_each_configuration_has_its_colour_in_every_figure_and_accuracy_is_in_percent_from_0(tmp_path):
    trials = finished_trials(_store(tmp_path))
    vanilla, cropd = configuration_style("vanilla", None)[0], configuration_style("cropd", 10)[0]

    figure = plots.tradeoff_figure(trials, "preprocessor.lambda", ["acc_natural", "acc_pgd20"], title="t")
    axes = figure.axes
    # Clean and robust heads apart: a row of panels each; every accuracy axis in %, from 0 to 100.
    assert [ax.get_title() for ax in axes] == [
        "Natural, clean head",
        "PGD-20, clean head",
        "Natural, robust head",
        "PGD-20, robust head",
    ]
    assert all(ax.get_ylim() == (0, 100) and ax.get_ylabel().endswith("accuracy (%)") for ax in axes)
    assert _colours(axes[0])["vanilla (no λ)"] == vanilla and _colours(axes[0])["cropd"] == cropd
    curve = axes[1].lines[0]  # CRoPD's PGD-20, clean heads: the seed means, in %
    assert list(curve.get_ydata()) == pytest.approx([100 * (0.21 + 0.005), 100 * (0.30 + 0.005)])
    assert INTERVALS_NOTE in figure.legends[0].get_title().get_text().replace("\n", " ")

    pareto = plots.pareto_figure(trials, "acc_natural", "acc_pgd20", param="preprocessor.lambda", title="p")
    scatter = {
        c.get_label(): to_hex(c.get_facecolor()[0]) for c in pareto.axes[0].collections if len(c.get_facecolor())
    }
    assert scatter["vanilla"] == vanilla and scatter["cropd"] == cropd
    assert pareto.axes[0].get_xlim() == pareto.axes[0].get_ylim() == (0, 100)

    summary, caption = summary_figure(trials, title="s")
    assert [ax.get_title() for ax in summary.axes] == ["clean head", "robust head"]
    assert all(ax.get_ylim() == (0, 100) for ax in summary.axes)
    # The first configuration of the clean panel is Identity: its markers in Identity's colour.
    identity = configuration_style("identity", None)[0]
    assert to_hex(summary.axes[0].lines[0].get_color()) == identity
    assert "95% interval" in caption and "Wilson" in caption


def test_a_figure_is_written_as_pdf_and_a_wrong_suffix_is_one_line(tmp_path, capsys):
    store = _store(tmp_path)
    out = tmp_path / "summary.pdf"
    assert main(["plot", str(store), "--kind", "summary", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF-")
    assert main(["plot", str(store), "--kind", "summary", "-o", str(tmp_path / "x.jpg")]) == 2
    assert "expected a .png, .svg or .pdf file name" in capsys.readouterr().err


def test_the_epochs_of_a_trial_still_training_are_drawn_dotted_and_named_by_its_settings(tmp_path):
    store = _store(tmp_path)
    key = "f" * 16  # a CRoPD trial with epochs logged but no row yet
    config = {"preprocessor": {"kind": "cropd", "lambda": 100}, "head": {"mode": "clean"}, "data": {"seed": 0}}
    overrides = ["preprocessor.kind", "preprocessor.lambda", "head.mode", "seed"]
    paths = SweepPaths(store)
    paths.workdir(key).mkdir(parents=True)
    paths.trial_config(key).write_text(json.dumps({"config": config, "overrides": overrides, "trial_id": "r"}))
    log = EpochLog(store, key, {"sweep": "hand", "trial_id": "r", "config_hash": key})
    log.add({"stage": "head", "epoch": 0, "loss": 0.0, "train_acc": 0.4})

    labels = plots.running_labels(store, [key])
    assert labels == {key: "cropd, λ=100, clean head (running)"}
    trials = finished_trials(store)
    assert key not in set(load(store, finished_only=False)["config_hash"])
    from orchestrator.analysis.frames import relation

    epochs = relation(store, "SELECT * FROM epochs").to_arrow_table().to_pandas()
    figure = plots.epochs_figure(trials, epochs, title="e", running=labels)
    loss, accuracy = figure.axes[:2]
    dotted = [line for line in loss.lines if line.get_linestyle() == ":"]
    assert len(dotted) == 1 and list(dotted[0].get_ydata()) == [0.0]
    assert accuracy.get_ylim() == (0, 100) and max(accuracy.lines[0].get_ydata()) == pytest.approx(70)
    assert loss.get_ylim()[0] == 0 and loss.get_ylim()[1] > 0.5  # from 0, never a degenerate range
    assert figure.get_suptitle() == "e (1 still training, dotted)"
    # The command finds it by itself in a sweep folder.
    assert main(["plot", str(store), "--kind", "epochs", "-o", str(tmp_path / "epochs.png")]) == 0
