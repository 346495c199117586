"""Report and figures from the Parquet store of a real small sweep (Ray Tune, Optuna, real trials).

The sweep is the run's shared finished one (tests/integration/conftest.py: Identity and CRoPD at two
lambdas, two seeds), only read here; the images are read back and checked for format, size and the
things that make them readable.
"""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from itertools import combinations

import pytest
from matplotlib.image import imread

from orchestrator.analysis import frames, plots
from orchestrator.cli.app import main

pytestmark = pytest.mark.integration


@pytest.fixture
def sweep_dir(finished_sweep):
    return finished_sweep.sweep_dir


def test_report_of_a_real_sweep_has_one_row_per_configuration(sweep_dir, capsys):
    assert main(["report", str(sweep_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # (An "Integrity flags" column may follow: these 2-epoch CRoPD trials can answer one class.)
    # The headline robust column, the worst case over the attacks, right after natural accuracy.
    assert lines[0].startswith("| Pre-processor | λ | Head | n | Natural | Worst case | PGD-10 | PGD-20 |")
    assert [line.split(" | ")[:4] for line in lines[2:5]] == [
        ["| identity", "-", "clean", "2"],
        ["| cropd", "1", "clean", "2"],
        ["| cropd", "10", "clean", "2"],
    ]
    assert "40 test points" in lines[6]
    # Then the paired differences against Identity (no Vanilla here), from the trials' per-example outcomes.
    start = next(i for i, line in enumerate(lines) if i > 6 and line.startswith("| Pre-processor"))
    rows = [line.split(" | ") for line in lines[start + 2 : start + 5]]
    assert [row[0] for row in rows] == ["| identity", "| cropd", "| cropd"]
    assert rows[0][4] == "reference"
    # Every cropd cell: the difference, its interval, the points only either got right, p and its
    # Holm-adjusted value, and a * only under the one rule (paired.py).
    cell_pattern = r"[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\] \d+:\d+ p[<=]\d\.\d+ \(Holm <?\d\.\d+\)( \*)?"
    for row in rows[1:]:
        assert all(re.fullmatch(cell_pattern, cell.strip(" |")) for cell in row[4:7]), lines[start:]
    assert lines[start + 6].startswith("Paired differences against identity")


def test_a_copy_of_results_alone_gives_the_same_report(sweep_dir, tmp_path, capsys):
    assert main(["report", str(sweep_dir), "--format", "csv"]) == 0
    original = capsys.readouterr().out
    shutil.copytree(sweep_dir / "results", tmp_path / "copied")  # no sweep.json, no Ray, no Optuna state
    assert main(["report", str(tmp_path / "copied"), "--format", "csv"]) == 0
    assert capsys.readouterr().out == original


@pytest.mark.parametrize(
    "kind, suffix",
    [
        ("summary", "png"),
        ("summary", "pdf"),
        ("tradeoff", "png"),
        ("pareto", "svg"),
        ("epochs", "png"),
        ("strength", "png"),
    ],
)
def test_each_plot_kind_writes_a_readable_image(sweep_dir, tmp_path, kind, suffix):
    out = tmp_path / f"{kind}.{suffix}"
    assert main(["plot", str(sweep_dir), "--kind", kind, "-o", str(out)]) == 0
    if suffix == "pdf":
        assert out.read_bytes().startswith(b"%PDF-") and out.stat().st_size > 5000
    elif suffix == "png":
        image = imread(out)
        assert image.ndim == 3 and image.shape[2] == 4 and min(image.shape[:2]) >= 500
        assert image[..., :3].std() > 0.05  # something is drawn, not a blank canvas
    else:
        root = ET.parse(out).getroot()
        assert root.tag.endswith("svg") and float(root.get("width").rstrip("pt")) == pytest.approx(6.4 * 72)
        assert "Pareto front" in out.read_text()


def test_tradeoff_figure_is_labelled_on_a_log_lambda_axis_with_identity_as_a_baseline(sweep_dir):
    trials = frames.finished_trials(sweep_dir)
    figure = plots.tradeoff_figure(trials, "preprocessor.lambda", ["acc_natural", "acc_pgd20"], title="t")
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["Natural", "PGD-20"]
    assert all(ax.get_xscale() == "log" and ax.get_xlabel() == "λ (log scale)" for ax in axes)
    # Accuracy in %, as in the tables, on an axis from 0 to 100.
    assert [ax.get_ylabel() for ax in axes] == ["Natural accuracy (%)", "PGD-20 accuracy (%)"]
    assert all(ax.get_ylim() == (0, 100) for ax in axes)
    assert sorted(t.get_text() for t in figure.legends[0].get_texts()) == ["cropd", "identity (no λ)"]
    assert figure.get_suptitle() == "t"
    # The CRoPD curve passes through the seed means of each lambda.
    line = axes[0].lines[0]
    means = trials[trials["preprocessor.kind"] == "cropd"].groupby("preprocessor.lambda")["acc_natural"].mean()
    assert list(line.get_xdata()) == [1.0, 10.0] and list(line.get_ydata()) == pytest.approx(list(100 * means))


def test_pareto_labels_never_overlap_and_front_points_are_labelled_first(sweep_dir):
    trials = frames.finished_trials(sweep_dir)
    # Crowd the plot: the same trials three times, nudged, so labels must compete for space.
    crowded = frames.pd.concat(
        [trials.assign(acc_natural=trials["acc_natural"] + d) for d in (0, 0.002, 0.004)], ignore_index=True
    )
    figure = plots.pareto_figure(crowded, "acc_natural", "acc_pgd20", param="preprocessor.lambda", title="p")
    ax = figure.axes[0]
    renderer = figure.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in ax.texts]
    assert boxes and not any(a.overlaps(b) for a, b in combinations(boxes, 2))
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    assert all(text.get_text().startswith("λ=") for text in ax.texts)
    assert ax.get_xlabel() == "Natural accuracy (%)" and ax.get_ylabel() == "PGD-20 accuracy (%)"
    assert ax.get_title() == "p" and ax.get_xlim() == ax.get_ylim() == (0, 100)
