"""`orchestrator report S1 S2`: one table across sweeps, and each row against its twin in the first.

Two hand-built sweeps as real trials write them (Parquet rows and per-example outcomes): `average`
(Identity, Vanilla and CRoPD lambda 10 with DIR's `combine: average`) and `masked` (Vanilla and
CRoPD with `combine: masked`), two seeds, outcomes built so that masked beats average under
PGD-20 by exactly 12 points (Vanilla) and 24 (CRoPD) on every seed, and ties on natural accuracy.
"""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from store_helpers import add_trial

from orchestrator.cli.app import main
from orchestrator.store.parquet import write_examples

POINTS = 100
# (sweep, kind) -> test points right under PGD-20, out of POINTS
PGD20_RIGHT = {
    ("average", "identity"): 10,
    ("average", "vanilla"): 30,
    ("average", "cropd"): 50,
    ("masked", "vanilla"): 42,
    ("masked", "cropd"): 74,
}
ARCH = {"preset": "tiny", "hidden_size": 64, "encoder_layers": 2, "decoder_layers": 1, "num_heads": 2}


def _sweep(tmp_path, name: str, *, label: int = 0, digest: str = "aaaa"):
    sweep_dir = tmp_path / name
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text("{}")
    minute = 0
    for (sweep, kind), right in PGD20_RIGHT.items():
        if sweep != name:
            continue
        for seed in (0, 1):
            key = add_trial(
                sweep_dir,
                kind=kind,
                lam=10 if kind == "cropd" else None,
                seed=seed,
                natural=0.9,
                pgd20=right / POINTS,
                minute=minute,
                sweep=name,
                arch=None if kind == "identity" else {**ARCH, "combine": name},
                extra_metrics={"foundation_digest": digest, "device_name": "cpu", "cpu_capability": "AVX512"},
            )
            minute += 1
            write_examples(
                sweep_dir,
                key,
                {
                    "index": list(range(POINTS)),
                    "label": [label] * POINTS,
                    "correct": {
                        "natural": [True] * 90 + [False] * 10,
                        "pgd20": [True] * right + [False] * (POINTS - right),
                    },
                },
                {"sweep": name, "trial_id": f"t-{key[:6]}", "config_hash": key},
            )
    return sweep_dir


def test_two_sweeps_make_one_table_with_a_sweep_column_and_pair_each_row_with_its_twin(tmp_path, capsys):
    average, masked = _sweep(tmp_path, "average"), _sweep(tmp_path, "masked")
    assert main(["report", str(average), str(masked)]) == 0
    out = capsys.readouterr().out
    table, within, across = out.split("\n\n| ")[0], out.split("Paired differences against vanilla")[0], out
    header = table.splitlines()[0]
    # The sweep and the one architecture key that varies are columns; the JSON blob is not.
    assert header.startswith("| Sweep | Pre-processor | λ | Head |") and "| Combine |" in header
    assert '{"' not in out and "hidden_size" not in header
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    assert [row.split("|")[1].strip() for row in rows] == ["average"] * 3 + ["masked"] * 2
    assert "average, masked:" in within  # the caption names both sweeps
    # Within each sweep against its own Vanilla (the default), and across: each row against its
    # twin in the first sweep, the settings that tell the sweeps apart named in the caption.
    assert "Paired differences against vanilla" in out
    assert "Paired differences against sweep=average" in across
    assert "preprocessor.arch.combine: average (average), masked (masked)" in across

    assert main(["report", str(average), str(masked), "--format", "csv"]) == 0
    csv = pd.read_csv(io.StringIO(capsys.readouterr().out))
    by_row = csv.set_index(["sweep", "preprocessor.kind"])
    assert by_row.loc[("masked", "cropd"), "vs_sweep_average_pgd20_diff"] == pytest.approx(0.24)
    assert by_row.loc[("masked", "vanilla"), "vs_sweep_average_pgd20_diff"] == pytest.approx(0.12)
    assert by_row.loc[("masked", "cropd"), "vs_sweep_average_natural_diff"] == 0
    # Within the masked sweep, CRoPD against masked Vanilla: 74 - 42 points.
    assert by_row.loc[("masked", "cropd"), "vs_vanilla_pgd20_diff"] == pytest.approx(0.32)
    assert by_row.loc[("average", "cropd"), "vs_vanilla_pgd20_diff"] == pytest.approx(0.20)
    # Identity ran in the first sweep only: a reference row there, with no difference of its own.
    assert by_row[["vs_sweep_average_pgd20_diff"]].loc[("average", "identity")].isna().all()


def test_the_python_api_reports_across_sweeps_as_the_command_does(tmp_path):
    import orchestrator

    average, masked = _sweep(tmp_path, "average"), _sweep(tmp_path, "masked")
    document = json.loads(orchestrator.render_report([average, masked], "json", compare_to=["sweep=average"]))
    (comparison,) = document["comparisons"]
    cells = {
        (row["settings"]["sweep"], row["settings"]["preprocessor.kind"]): row["metrics"]["acc_pgd20"]
        for row in comparison["rows"]
    }
    assert cells[("masked", "cropd")]["diff"] == pytest.approx(0.24)
    assert comparison["settings_set_aside"] == ["preprocessor.arch.combine: average (average), masked (masked)"]
    assert cells[("masked", "cropd")]["a_only"] == 24 and cells[("masked", "cropd")]["significant"]


def test_a_sweep_given_twice_is_refused_in_one_line(tmp_path, capsys):
    average = _sweep(tmp_path, "average")
    assert main(["report", str(average), str(average)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds sweep 'average'" in err and "give each sweep once" in err and "\n" not in err


@pytest.mark.parametrize(
    ("masked_kwargs", "message"),
    [
        ({"label": 1}, "were evaluated on different data"),
        ({"digest": "bbbb"}, "would measure the foundations"),
    ],
)
def test_pairing_across_sweeps_on_other_points_or_another_foundation_is_refused(
    tmp_path, capsys, masked_kwargs, message
):
    average, masked = _sweep(tmp_path, "average"), _sweep(tmp_path, "masked", **masked_kwargs)
    assert main(["report", str(average), str(masked), "--compare-to", "sweep=average"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    # The table alone, without pairing across the sweeps, is still there to read.
    assert main(["report", str(average), str(masked), "--compare-to", "none"]) == 0


def test_a_figure_across_sweeps_names_them_short_and_epochs_stay_one_sweep(tmp_path, capsys):
    from orchestrator.analysis.several_sweeps import finished_trials_of
    from orchestrator.analysis.summary_figure import summary_figure

    average, masked = _sweep(tmp_path, "average"), _sweep(tmp_path, "masked")
    figure, caption = summary_figure(finished_trials_of([average, masked]), title="t")
    ticks = [tick.get_text().splitlines()[0] for tick in figure.axes[0].get_xticklabels()]
    assert ticks == ["S1", "S1", "S1", "S2", "S2"] and "S1: average; S2: masked" in caption
    assert main(["plot", str(average), str(masked), "--kind", "summary", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    assert main(["plot", str(average), str(masked), "--kind", "epochs", "-o", str(tmp_path / "e.png")]) == 2
    assert "one sweep at a time" in capsys.readouterr().err and not (tmp_path / "e.png").exists()
