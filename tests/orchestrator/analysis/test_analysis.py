"""Analysis on hand-built Parquet stores with known answers: Pareto fronts, seed means, the report.

Stores are written by the same row writer the trials use; the fronts are checked exactly
against a brute-force definition, and every bad input must exit 2 with nothing written.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from store_helpers import add_trial

from orchestrator.analysis import frames, report
from orchestrator.cli.app import main
from orchestrator.store import rows
from orchestrator.store.parquet import read_folder
from trainables.schema import validate_trial_config


@pytest.fixture
def store(tmp_path):
    """Identity, Vanilla and CRoPD at lambda 1 and 10, two seeds each, one failed trial.

    Validation metrics rank the rows otherwise than the test ones (Vanilla is best on validation
    natural accuracy, Identity on test), and CRoPD lambda 10, best on PGD-20 in both, is flagged."""
    sweep_dir = tmp_path / "hand"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text("{}")
    validation = {  # (val_acc_natural, val_acc_pgd20) per seed
        ("identity", None): [(0.70, 0.0), (0.70, 0.0)],
        ("vanilla", None): [(0.75, 0.20), (0.73, 0.20)],
        ("cropd", 1): [(0.60, 0.30), (0.62, 0.30)],
        ("cropd", 10): [(0.55, 0.40), (0.56, 0.38)],
    }
    values = {
        ("identity", None): [(0.74, 0.0), (0.72, 0.0)],
        ("vanilla", None): [(0.61, 0.30), (0.60, 0.25)],
        ("cropd", 1): [(0.62, 0.32), (0.58, 0.30)],
        ("cropd", 10): [(0.55, 0.36), (0.57, 0.34)],
    }
    minute = 0
    for seed in (0, 1):
        for (kind, lam), per_seed in values.items():
            natural, pgd20 = per_seed[seed]
            add_trial(
                sweep_dir,
                kind=kind,
                lam=lam,
                seed=seed,
                natural=natural,
                pgd20=pgd20,
                minute=minute,
                flags=("zero_input_gradient",) if (kind, lam, seed) == ("cropd", 10, 1) else (),
                extra_metrics=dict(zip(("val_acc_natural", "val_acc_pgd20"), validation[(kind, lam)][seed])),
            )
            minute += 1
    add_trial(sweep_dir, kind="arae", natural=0, pgd20=0, status="ERROR", minute=minute)
    return sweep_dir


def brute_force_front(x, y) -> np.ndarray:
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = []
    for i in range(len(x)):
        if np.isnan(x[i]) or np.isnan(y[i]):
            keep.append(False)
            continue
        dominated = any(x[j] >= x[i] and y[j] >= y[i] and (x[j] > x[i] or y[j] > y[i]) for j in range(len(x)) if j != i)
        keep.append(not dominated)
    return np.array(keep)


def test_pareto_mask_on_a_known_front_with_ties_and_missing_values():
    x = [0.9, 0.8, 0.8, 0.7, 0.7, 0.6, 0.5, math.nan, 0.9]
    y = [0.1, 0.3, 0.2, 0.3, 0.4, 0.4, 0.5, 0.9, 0.1]
    # (0.9, 0.1) twice: equal points are both on it; (0.8, 0.2) loses to (0.8, 0.3) at the same x;
    # (0.7, 0.3) loses to (0.7, 0.4); (0.6, 0.4) loses to (0.7, 0.4) at the same y; NaN never counts.
    assert frames.pareto_mask(x, y).tolist() == [True, True, False, False, True, False, True, False, True]
    # Minimising y instead: only the lowest y at each x that nothing beats.
    assert frames.pareto_mask(x, y, maximize=(True, False)).tolist() == [
        True,
        False,
        False,
        False,
        False,
        False,
        False,
        False,
        True,
    ]


@pytest.mark.parametrize("seed", range(5))
def test_pareto_mask_equals_the_definition_on_random_points(seed):
    rng = np.random.default_rng(seed)
    # Rounded, so ties in x, in y and in both are common.
    x, y = rng.integers(0, 8, 60) / 8, rng.integers(0, 8, 60) / 8
    assert (frames.pareto_mask(x, y) == brute_force_front(x, y)).all()
    assert (frames.pareto_mask(x, y, maximize=(False, True)) == brute_force_front(-x, y)).all()


def test_pareto_command_lists_exactly_the_non_dominated_trials(store, capsys):
    # By default the front is a selection: on the validation metrics, the test ones beside them;
    # the flagged trial (CRoPD lambda 10, seed 1: 0.56 / 0.38) is never on it.
    assert main(["pareto", str(store), "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [(r["preprocessor.kind"], r["val_acc_natural"], r["val_acc_pgd20"], r["acc_pgd20"]) for r in rows] == [
        ("vanilla", 0.75, 0.20, 0.30),
        ("cropd", 0.62, 0.30, 0.30),
        ("cropd", 0.55, 0.40, 0.36),
    ]
    assert "not on the front, integrity flags raised" in captured.err and "zero_input_gradient" in captured.err
    # Test axes, named explicitly (a report, not a selection); still no flagged trial.
    test_axes = ["--x", "acc_natural", "--y", "acc_pgd20"]
    assert main(["pareto", str(store), *test_axes, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["preprocessor.kind"], r["acc_natural"], r["acc_pgd20"]) for r in rows] == [
        ("identity", 0.74, 0.0),
        ("cropd", 0.62, 0.32),
        ("cropd", 0.55, 0.36),
    ]
    # Per configuration (mean over seeds): identity 0.73/0, cropd-1 0.60/0.31, vanilla 0.605/0.275
    # (dominated by nothing); cropd-10 0.56/0.35 would be on it, but one of its seeds is flagged.
    assert main(["pareto", str(store), *test_axes, "--by-config", "--format", "json"]) == 0
    configs = json.loads(capsys.readouterr().out)
    assert [(r["preprocessor.kind"], r["preprocessor.lambda"]) for r in configs] == [
        ("identity", None),
        ("vanilla", None),
        ("cropd", 1.0),
    ]
    assert (
        main(
            [
                "pareto",
                str(store),
                "--where",
                "\"preprocessor.kind\" = 'cropd'",
                "--x",
                "acc_pgd20",
                "--y",
                "time_head_s",
                "--minimize-y",
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert [r["acc_pgd20"] for r in json.loads(capsys.readouterr().out)] == [0.36]


def _wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval written out (Wilson 1927; Newcombe 1998 method 3), independently of scipy."""
    p = successes / n
    centre, half = (
        (p + z * z / (2 * n)) / (1 + z * z / n),
        z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n),
    )
    return centre - half, centre + half


def test_seed_means_hold_test_point_and_seed_variance_and_one_seed_is_its_wilson_interval(store):
    trials = frames.finished_trials(store)
    assert len(trials) == 8  # the ERROR row is not a finished trial
    table = frames.aggregate_seeds(trials, ["acc_natural", "acc_pgd20"]).set_index("config_hashes")
    assert (table["n_seeds"] == 2).all() and set(table["interval"]) == {"Wilson + t over seeds"}
    cropd1 = table[table["preprocessor.lambda"] == 1].iloc[0]
    # Natural: 0.62 and 0.58 on n_natural = 200 points each. Test-point part: the root mean square of
    # each seed's Wilson distances; seed part: Student's t over the two means; added in quadrature.
    t_975_1 = 12.706204736174707  # Student's t, 97.5% quantile, 1 degree of freedom
    seed_half = t_975_1 * np.std([0.62, 0.58], ddof=1) / math.sqrt(2)
    (lo0, hi0), (lo1, hi1) = _wilson(124, 200), _wilson(116, 200)
    d_low = math.sqrt(((0.62 - lo0) ** 2 + (0.58 - lo1) ** 2) / 2)
    d_high = math.sqrt(((hi0 - 0.62) ** 2 + (hi1 - 0.58) ** 2) / 2)
    assert cropd1["acc_natural"] == pytest.approx(0.60)
    assert cropd1["acc_natural_lo"] == pytest.approx(0.60 - math.hypot(d_low, seed_half))
    assert cropd1["acc_natural_hi"] == pytest.approx(0.60 + math.hypot(d_high, seed_half))
    assert cropd1["acc_natural_half"] > seed_half  # wider than the Student-t interval over seeds alone
    # PGD-20 has no count in these rows: each trial's recorded bounds (pgd20 - 0.04, pgd20 + 0.01).
    d_low, d_high = 0.04, 0.01
    seed_half = t_975_1 * np.std([0.32, 0.30], ddof=1) / math.sqrt(2)
    assert cropd1["acc_pgd20_lo"] == pytest.approx(0.31 - math.hypot(d_low, seed_half))
    assert cropd1["acc_pgd20_hi"] == pytest.approx(0.31 + math.hypot(d_high, seed_half))

    one_seed = frames.aggregate_seeds(trials[trials["seed"] == 0], ["acc_natural"])
    assert set(one_seed["interval"]) == {"Wilson"}
    vanilla = one_seed[one_seed["preprocessor.kind"] == "vanilla"].iloc[0]
    # 0.61 of 200: Wilson's interval from the count, not the row's recorded (0.59, 0.64).
    assert (vanilla["acc_natural_lo"], vanilla["acc_natural_hi"]) == pytest.approx(_wilson(122, 200))


def test_seeds_that_agree_keep_the_test_point_width_and_none_of_it_is_zero(tmp_path):
    """Three seeds with the same accuracy (an Identity row): the seed part is 0, the interval is the
    test points' Wilson interval, not the nearly zero width of a Student-t over three equal means;
    and 0 correct of 64 gives [0, 5.7%], not [0, 0]."""
    (tmp_path / "sweep.json").write_text("{}")
    for seed in (0, 1, 2):
        add_trial(
            tmp_path,
            kind="identity",
            seed=seed,
            natural=0.75,
            pgd20=0.0,
            extra_metrics={"n_natural": 64, "n_pgd20": 64},
        )
    row = frames.aggregate_seeds(frames.finished_trials(tmp_path), ["acc_natural", "acc_pgd20"]).iloc[0]
    assert (row["acc_natural_lo"], row["acc_natural_hi"]) == pytest.approx(_wilson(48, 64))
    assert row["acc_natural_half"] > 0.09  # about +-10 points on 64 points
    assert row["acc_pgd20_lo"] == 0 and row["acc_pgd20_hi"] == pytest.approx(_wilson(0, 64)[1])
    assert row["acc_pgd20_hi"] == pytest.approx(0.0566, abs=1e-4)


def test_without_validation_metrics_pareto_asks_for_test_axes_and_the_report_bolds_nothing(tmp_path, capsys):
    """Trials from before validation splits: nothing is selected on their test numbers by default."""
    (tmp_path / "sweep.json").write_text("{}")
    add_trial(tmp_path, kind="identity", natural=0.7, pgd20=0.0)
    add_trial(tmp_path, kind="cropd", lam=10, natural=0.6, pgd20=0.3)
    assert main(["pareto", str(tmp_path)]) == 2
    assert "no val_acc_natural in these results" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "**" not in out and "No row in bold: these trials have no validation metrics" in out


def test_settings_a_kind_ignores_do_not_split_or_label_configurations(tmp_path):
    (tmp_path / "sweep.json").write_text("{}")
    add_trial(tmp_path, kind="identity", natural=0.7, pgd20=0.0)
    add_trial(tmp_path, kind="cropd", lam=10, natural=0.6, pgd20=0.3)
    add_trial(tmp_path, kind="cropd", lam=10, natural=0.5, pgd20=0.2, preprocessor_dataset="digits2")
    trials = frames.finished_trials(tmp_path)
    # lambda is null for identity because identity ignores it: only the kind tells those apart.
    # preprocessor_dataset is null by choice in one CRoPD trial and set in the other: it varies.
    assert set(frames.varying(trials, frames.config_columns(trials))) == {
        "preprocessor_dataset",
        "preprocessor.kind",
    }


def test_report_in_grid_order_with_the_best_marked_and_flags_beside_their_row(store, capsys):
    assert main(["report", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| Pre-processor | λ | Head | n | Natural | PGD-20 | Integrity flags |"
    body = lines[2:6]
    assert [line.split(" | ")[0:2] for line in body] == [
        ["| identity", "-"],
        ["| vanilla", "-"],
        ["| cropd", "1"],
        ["| cropd", "10"],
    ]
    # Bold is chosen on the validation split: natural -> Vanilla (0.74 against Identity's 0.70,
    # although Identity is best on test); PGD-20 -> CRoPD lambda 1, because lambda 10 (best on
    # both splits) is flagged and a flagged row is never best.
    assert "**60.5 ±" in body[1] and "**73.0" not in body[0]
    assert "**31.0 ±" in body[2] and "**" not in body[3] and body[3].endswith("| zero_input_gradient |")
    assert sum(line.count("**") for line in body) == 4
    assert all(line.endswith("|  |") for line in body[:3])
    note = next(line for line in lines if line.startswith("hand:"))
    assert "best on the validation split" in note and "integrity flags are never bold" in note

    assert main(["report", str(store), "--format", "latex"]) == 0
    latex = capsys.readouterr().out
    assert r"Pre-processor & $\lambda$ & Head & n & Natural & PGD-20 & Integrity flags \\" in latex
    assert r"\textbf{60.5 $\pm$" in latex and r"zero\_input\_gradient \\" in latex and r"in \%" in latex

    tex = store / "report.tex"  # the suffix says the format: LaTeX without --format latex
    assert main(["report", str(store), "-o", str(tex)]) == 0
    assert tex.read_text() == latex

    out = store / "report.csv"
    assert main(["report", str(store), "--format", "csv", "-o", str(out)]) == 0
    table = pd.read_csv(out)
    assert table["best_acc_pgd20"].tolist() == [False, False, True, False]
    assert table["best_acc_natural"].tolist() == [False, True, False, False]
    assert table["acc_pgd20"].tolist() == pytest.approx([0.0, 0.275, 0.31, 0.35])


def test_the_cost_view_gives_stage_seconds_over_seeds_and_parameter_counts_per_row(tmp_path, capsys):
    sweep_dir = tmp_path / "costs"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text("{}")
    seconds = {("vanilla", None): (40.0, 44.0), ("cropd", 1): (70.0, 80.0)}
    for seed in (0, 1):
        for minute, ((kind, lam), per_seed) in enumerate(seconds.items()):
            extra = {"time_preprocessor_s": per_seed[seed], "time_evaluation_s": 10.0 + seed, "params_head": 650}
            extra |= {
                "params_preprocessor": 1_234_567,
                "params_foundation": 300_000_000,
                "params_foundation_trained": 0,
            }
            add_trial(
                sweep_dir, kind=kind, lam=lam, seed=seed, natural=0.7, pgd20=0.2, minute=minute, extra_metrics=extra
            )
    assert main(["report", str(sweep_dir), "--costs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "| Pre-processor | λ | Head | n | Pre-processor (s) | Head (s) | Evaluation (s) | Pre-processor params "
        "| Foundation params | Foundation params trained | Head params |"
    )
    assert lines[2] == "| vanilla | - | clean | 2 | 42.0 | 1.5 | 10.5 | 1,234,567 | 300,000,000 | 0 | 650 |"
    assert lines[3] == "| cropd | 1 | clean | 2 | 75.0 | 1.5 | 10.5 | 1,234,567 | 300,000,000 | 0 | 650 |"
    out = sweep_dir / "costs.csv"
    assert main(["report", str(sweep_dir), "--costs", "--format", "csv", "-o", str(out)]) == 0
    table = pd.read_csv(out)
    assert table["time_preprocessor_s"].tolist() == [42.0, 75.0]
    assert "time_foundation_pretraining_s" not in table  # no trial pre-trained: no column


def test_paper_table_and_loaders_for_notebooks(store):
    import orchestrator

    frame = orchestrator.load_results(store)
    assert len(frame) == 8 and set(frame["status"]) == {"TERMINATED"}
    assert len(orchestrator.load_results(store / "results", finished_only=False)) == 9  # a results folder itself
    relation = orchestrator.results_relation(store, where="acc_pgd20 > 0.3")
    assert sorted(relation.to_arrow_table().column("acc_pgd20").to_pylist()) == [0.32, 0.34, 0.36]
    table, keys, metrics = orchestrator.paper_table(frame)
    assert keys == ["preprocessor.kind", "preprocessor.lambda", "head.mode"] and metrics == ["acc_natural", "acc_pgd20"]


def test_reading_while_a_trial_file_is_replaced_never_fails_or_loses_a_row(store):
    """A running sweep rewrites files under the reader; every read sees each trial exactly once."""
    stop = threading.Event()

    def rewrite():
        minute = 100
        while not stop.is_set():  # alternating sizes: an error text appears and disappears
            add_trial(
                store,
                kind="vanilla",
                seed=0,
                natural=0.61,
                pgd20=0.30,
                minute=minute,
                flags=("x" * (minute % 7 * 50),) if minute % 2 else (),
            )
            minute += 1

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        counts = {len(read_folder(store / "results" / "trials")) for _ in range(150)}
    finally:
        stop.set()
        writer.join()
    assert counts == {9}


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["pareto", "{store}", "--x", "acc_nope"],
            "--x: no metric 'acc_nope' in these results; metrics: acc_natural, acc_pgd20, time_head_s",
        ),
        (["report", "{store}", "--where", "status = = 1"], "--where 'status = = 1': Parser Error"),
        (
            ["report", "{store}", "--where", "\"preprocessor.kind\" = 'vae'"],
            "--where: none of the 8 finished trials matches",
        ),
        (["plot", "{store}", "--kind", "fraction", "-o", "{out}.png"], "parameter axis data_fraction: one value (1)"),
        (
            ["plot", "{store}", "--kind", "tradeoff", "--param", "head.mode", "-o", "{out}.png"],
            "parameter axis head.mode: expected numbers",
        ),
        (["plot", "{store}", "--kind", "tradeoff", "-o", "{out}.jpg"], "expected a .png, .svg or .pdf file name"),
        (  # before any lambda trial finished: once "expected numbers, it holds []"
            [
                "plot",
                "{store}",
                "--kind",
                "tradeoff",
                "--where",
                "\"preprocessor.kind\" = 'identity'",
                "-o",
                "{out}.png",
            ],
            "parameter axis preprocessor.lambda: no finished trial has it set yet",
        ),
        (["plot", "{store}", "--kind", "epochs", "-o", "{out}.svg"], "no per-epoch records"),
        (["plot", "{store}", "--kind", "strength", "-o", "{out}.png"], "these trials have no attack-strength sweep"),
        # Once: the folder was created silently, and a .html or .tex file held Markdown.
        (["plot", "{store}", "--kind", "tradeoff", "-o", "{out}/nofolder/x.png"], "no folder"),
        (["report", "{store}", "-o", "{out}/nofolder/report.md"], "no folder"),
        (["report", "{store}", "-o", "{out}.docx"], "expected a file name ending in one of"),
        (["report", "{store}", "--format", "markdown", "-o", "{out}.tex"], "a .tex file holds latex"),
        (["report", "{empty}"], "no finished trials yet (1 results rows, none TERMINATED)"),
        (["report", "{nowhere}"], "not a sweep directory (no sweep.json) nor a results folder"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_file(store, tmp_path, capsys, argv, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "sweep.json").write_text("{}")
    add_trial(empty, kind="identity", natural=0, pgd20=0, status="ERROR")
    (tmp_path / "nowhere").mkdir()
    out = tmp_path / "figure"
    names = {"store": store, "empty": empty, "nowhere": tmp_path / "nowhere", "out": out}
    assert main([arg.format(**names) for arg in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not list(tmp_path.glob("figure*")) and not list(tmp_path.glob(".figure*"))


def test_data_fraction_table_plot_from_a_store_with_three_fractions(tmp_path):
    from matplotlib.image import imread

    (tmp_path / "sweep.json").write_text("{}")
    for i, fraction in enumerate((0.1, 0.5, 1.0)):
        for kind, lam in (("vanilla", None), ("cropd", 10)):
            add_trial(
                tmp_path,
                kind=kind,
                lam=lam,
                natural=0.5 + fraction / 5,
                pgd20=0.2 + fraction / 10,
                data_fraction=fraction,
                minute=i,
            )
    out = tmp_path / "fraction.png"
    assert main(["plot", str(tmp_path), "--kind", "fraction", "-o", str(out)]) == 0
    image = imread(out)
    assert image.shape[2] == 4 and image.shape[1] == round(4.2 * 2 * 150)  # two panels at 150 dpi
    assert (
        report.render(frames.finished_trials(tmp_path), "markdown")
        .splitlines()[0]
        .startswith("| Pre-processor | λ | Head | Data fraction | n |")
    )


def test_a_searched_parameter_with_many_values_gets_tick_labels_that_do_not_collide(tmp_path):
    from itertools import combinations

    from orchestrator.analysis import plots

    (tmp_path / "sweep.json").write_text("{}")
    rng = np.random.default_rng(0)
    for i, tau in enumerate(rng.uniform(0.05, 1.0, 20)):  # what an Optuna tau search leaves behind
        add_trial(tmp_path, kind="cropd", lam=10, tau=float(tau), natural=0.6, pgd20=0.2 + tau / 10, minute=i)
    trials = frames.finished_trials(tmp_path)
    figure = plots.tradeoff_figure(trials, "preprocessor.temperature", ["acc_natural", "acc_pgd20"], title="tau")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw_without_rendering()
    for ax in figure.axes:
        boxes = [
            label.get_window_extent(renderer)
            for label in ax.get_xticklabels()
            if label.get_visible() and label.get_text()
        ]
        assert len(boxes) >= 2 and not any(a.overlaps(b) for a, b in combinations(boxes, 2))


def test_list_settings_read_as_the_spec_writes_them(tmp_path):
    (tmp_path / "sweep.json").write_text("{}")
    for i, views in enumerate((["adversarial", "t1"], ["adversarial", "t1", "t2", "high"])):
        key = add_trial(tmp_path, kind="cropd", lam=1, seed=i, natural=0.5 + i / 10, pgd20=0.2, minute=i)
        # the row as an advcl trial writes it: the list setting as JSON text
        path = tmp_path / "results" / "trials" / f"{key}.parquet"
        frame = pd.read_parquet(path).assign(**{"preprocessor.views": json.dumps(views)})
        frame.to_parquet(path)
    lines = report.render(frames.finished_trials(tmp_path), "markdown").splitlines()
    assert lines[0].startswith("| Pre-processor | λ | Head | Views | n |")
    assert sorted(line.split(" | ")[3] for line in lines[2:4]) == ["adversarial+t1", "adversarial+t1+t2+high"]


def add_swept_trial(sweep_dir: Path, *, eps: float, sweep_eps: list, sweep_steps: list, **trial) -> str:
    """A trial row with its attack-strength sweep as evaluation writes it: [[x, accuracy], ...] as JSON text."""
    key = add_trial(sweep_dir, **trial)
    path = sweep_dir / "results" / "trials" / f"{key}.parquet"
    pd.read_parquet(path).assign(
        eps=eps, sweep_eps=json.dumps(sweep_eps), sweep_steps=json.dumps(sweep_steps)
    ).to_parquet(path)
    return key


def _eps_sweep(eps: float, accuracies: list[float]) -> list:
    return [[factor * eps, accuracy] for factor, accuracy in zip((0.25, 0.5, 1.0, 2.0), accuracies)]


@pytest.fixture
def strength_store(tmp_path):
    """CRoPD lambda 1 (two seeds, eps 8/255, one seed flagged for steps), lambda 10 (eps 16/255, rises
    with eps, flagged), Vanilla with no sweep (integrity off)."""
    sweep_dir = tmp_path / "strength"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text("{}")
    add_swept_trial(
        sweep_dir,
        kind="cropd",
        lam=1,
        seed=0,
        natural=0.6,
        pgd20=0.3,
        minute=0,
        eps=8 / 255,
        sweep_eps=_eps_sweep(8 / 255, [0.6, 0.5, 0.4, 0.2]),
        sweep_steps=[[1, 0.45], [10, 0.4], [50, 0.38]],
    )
    add_swept_trial(
        sweep_dir,
        kind="cropd",
        lam=1,
        seed=1,
        natural=0.6,
        pgd20=0.3,
        minute=1,
        eps=8 / 255,
        flags=("accuracy_rises_with_steps", "robust_above_natural"),
        sweep_eps=_eps_sweep(8 / 255, [0.5, 0.4, 0.3, 0.1]),
        sweep_steps=[[1, 0.35], [10, 0.3], [50, 0.32]],
    )
    add_swept_trial(
        sweep_dir,
        kind="cropd",
        lam=10,
        seed=0,
        natural=0.5,
        pgd20=0.3,
        minute=2,
        eps=16 / 255,
        flags=("accuracy_rises_with_eps",),
        sweep_eps=_eps_sweep(16 / 255, [0.3, 0.35, 0.4, 0.2]),
        sweep_steps=[[1, 0.4], [10, 0.4], [50, 0.4]],
    )
    add_swept_trial(
        sweep_dir, kind="vanilla", seed=0, natural=0.6, pgd20=0.2, minute=3, eps=8 / 255, sweep_eps=[], sweep_steps=[]
    )
    return sweep_dir


def test_strength_figure_draws_seed_means_against_absolute_eps_and_log_steps(strength_store):
    from orchestrator.analysis import plots

    figure = plots.strength_figure(frames.finished_trials(strength_store), title="s")
    assert len(figure.axes) == 2
    eps_ax, steps_ax = figure.axes
    assert steps_ax.get_xscale() == "log" and eps_ax.get_xscale() == "log"  # eps up to the unbounded 255/255
    assert eps_ax.get_xlabel() == "eps (x/255)"
    # One line per configuration with a sweep (Vanilla has none); the eps panel adds a dotted
    # line at each trial's own evaluation eps.
    assert [line.get_label() for line in steps_ax.lines] == [
        "cropd, λ=1 (flag: rises with steps)",
        "cropd, λ=10 (flag: rises with eps)",
    ]
    cropd1, cropd10, *marks = eps_ax.lines
    assert [(m.get_linestyle(), m.get_xdata()[0]) for m in marks] == [(":", pytest.approx(8)), (":", pytest.approx(16))]
    # The two-seed configuration: the mean of the seeds at each point, the band their min-max.
    assert list(cropd1.get_xdata()) == pytest.approx([2, 4, 8, 16])
    assert list(cropd1.get_ydata()) == pytest.approx([55, 45, 35, 15])  # in %
    assert list(steps_ax.lines[0].get_xdata()) == [1, 10, 50]
    assert list(steps_ax.lines[0].get_ydata()) == pytest.approx([40, 35, 35])
    band = eps_ax.collections[0].get_paths()[0].vertices[:, 1]
    assert (band.min(), band.max()) == pytest.approx((10, 60))
    # A different evaluation eps is drawn at its own absolute eps, not at the same factors.
    assert list(cropd10.get_xdata()) == pytest.approx([4, 8, 16, 32])
    assert list(cropd10.get_ydata()) == pytest.approx([30, 35, 40, 20])
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["cropd, λ=1 (flag: rises with steps)", "cropd, λ=10 (flag: rises with eps)", "evaluation eps"]
    assert "first 64 evaluated test points" in figure.get_suptitle()


def test_strength_plot_of_trials_without_sweeps_is_one_line_exit_2_and_no_file(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text("{}")
    for seed in (0, 1):  # integrity checks off: the sweep columns are there, empty
        add_swept_trial(
            tmp_path,
            kind="cropd",
            lam=1,
            seed=seed,
            natural=0.6,
            pgd20=0.3,
            minute=seed,
            eps=8 / 255,
            sweep_eps=[],
            sweep_steps=[],
        )
    out = tmp_path / "strength.png"
    assert main(["plot", str(tmp_path), "--kind", "strength", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "these trials have no attack-strength sweep" in err, err
    assert not list(tmp_path.glob("*strength*"))


def test_robust_pretraining_settings_are_columns_that_split_only_by_what_was_varied():
    configs = [
        {"foundation": {"name": "embedded"}},  # no robust pre-training: every pretraining column null
        {"foundation": {"name": "embedded", "pretraining": {"method": "rocl", "views": "t1+t2"}}},
        {"foundation": {"name": "embedded", "pretraining": {"method": "advcl", "fft_radius": 2}}},
        {"foundation": {"name": "resnet18", "resnet": {"width": 8}, "pretraining": {"method": "rocl"}}},
    ]
    trials = pd.DataFrame([rows.flatten_config(validate_trial_config(config)) for config in configs])
    assert trials["foundation.pretraining.method"].fillna("-").tolist() == ["-", "rocl", "advcl", "rocl"]
    assert trials["foundation.resnet.width"].tolist()[3] == 8 and "foundation.pretraining" not in trials
    # Nulls implied by no pre-training, by rocl (no views) or by a ViT (no resnet width) do not
    # split configurations; the lr really differs (1e-4 from MAE weights, 1e-3 from scratch).
    assert set(frames.varying(trials, frames.config_columns(trials))) == {
        "foundation.name",
        "foundation.pretraining.method",
        "foundation.pretraining.lr",
    }


def test_many_configurations_get_distinct_colours_and_long_labels_one_legend_column():
    from orchestrator.analysis import plots

    few, many = plots.line_colours([f"c{i}" for i in range(4)]), plots.line_colours([f"c{i}" for i in range(15)])
    assert list(few.values()) == ["C0", "C1", "C2", "C3"]
    assert len(set(many.values())) == 15  # the 10-colour cycle would repeat five
    long_labels = ["Foundation=resnet18, Foundation mode=adversarial_finetune, Pre-training=advcl, robust head"] * 3
    assert plots.legend_columns(long_labels, 10) == 1 and plots.legend_columns(["cropd", "vanilla", "arae"], 10) == 3
