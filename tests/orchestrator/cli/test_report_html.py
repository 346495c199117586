"""`orchestrator report … --html FILE`: one self-contained page, looked at in headless Chromium.

A sweep built as real trials write it: Vanilla and CRoPD (lambda 10), clean heads, two seeds, one
CRoPD seed flagged by an integrity check, 6 trials planned and 4 finished (so the report is
partial). The page is checked as text (nothing fetched, every part present) and as pixels:
Debian's chromium renders it headless to a PNG, and the test looks for the banner's, the flagged
row's and the figure's colours where they belong. Where chromium is absent that test skips and
says so; CI installs it (.ci/run).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from store_helpers import add_trial

from orchestrator.analysis.summary_figure import configuration_style
from orchestrator.cli.app import main
from orchestrator.store.parquet import write_examples
from trainables.artifacts import atomic_write_json

POINTS = 100
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The colours the page draws with (html_page.STYLE); the figure's come from configuration_style.
BANNER, FLAGGED = (255, 243, 205), (253, 226, 225)


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "shared"
    atomic_write_json(
        sweep / "sweep.json",
        {"name": "shared", "plan_hash": "0" * 16, "plan": {"mode": "grid", "points": 6}, "num_trials": 6},
    )
    (sweep / "spec.yaml").write_text("name: shared\n# the spec as the sweep was run from it\n")
    right = {"vanilla": (90, 30), "cropd": (88, 60)}
    for minute, (kind, seed) in enumerate((k, s) for k in right for s in (0, 1)):
        natural, pgd20 = right[kind]
        key = add_trial(
            sweep,
            kind=kind,
            lam=10 if kind == "cropd" else None,
            seed=seed,
            natural=natural / POINTS,
            pgd20=pgd20 / POINTS,
            minute=minute,
            flags=("accuracy_rises_with_eps",) if (kind, seed) == ("cropd", 1) else (),
            extra_metrics={"n_natural": POINTS, "n_pgd20": POINTS},
            sweep="shared",
        )
        correct = {"natural": [i < natural for i in range(POINTS)], "pgd20": [i < pgd20 for i in range(POINTS)]}
        write_examples(
            sweep,
            key,
            {"index": list(range(POINTS)), "label": [0] * POINTS, "correct": correct},
            {"sweep": "shared", "trial_id": f"t-{key[:6]}", "config_hash": key},
        )
    return sweep


def test_the_html_report_is_one_file_with_every_part_and_nothing_fetched(tmp_path, capsys):
    sweep, page = _sweep(tmp_path), tmp_path / "report.html"
    assert main(["report", str(sweep), "--html", str(page)]) == 0
    assert "Partial: 4 of 6 planned trials finished" in capsys.readouterr().err
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    # Self-contained: no script, no stylesheet or image from elsewhere; the figure is inline SVG.
    assert "<script" not in html and "src=" not in html and "<svg" in html
    assert 'href="http' not in html and 'href="file' not in html and "@import" not in html
    assert '<div class="banner">Partial: 4 of 6 planned trials finished' in html
    assert html.count('<tr class="flagged">') == 2  # the CRoPD row, in the table and in its comparison
    assert "Paired differences against vanilla" in html and "Whiskers: 95% interval" in html
    assert "<h2>Provenance</h2>" in html and "the spec as the sweep was run from it" in html
    # -o with the .html suffix writes the same page; the two options together are refused.
    assert main(["report", str(sweep), "-o", str(tmp_path / "same.html")]) == 0
    assert (tmp_path / "same.html").read_text().count("<svg") == 1
    assert main(["report", str(sweep), "--html", str(page), "-o", str(tmp_path / "x.md")]) == 2
    assert "give either --html FILE or -o FILE" in capsys.readouterr().err


def _where(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 6) -> np.ndarray:
    """Rows (y) of the pixels within `tolerance` of `colour`."""
    close = (np.abs(image[:, :, :3].astype(int) - np.array(colour)) <= tolerance).all(axis=2)
    return np.nonzero(close)[0]


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium); CI installs it")
def test_the_html_report_renders_in_headless_chromium_with_banner_flagged_row_and_figure(tmp_path):
    from matplotlib.image import imread

    sweep, page, shot = _sweep(tmp_path), tmp_path / "report.html", tmp_path / "report.png"
    assert main(["report", str(sweep), "--html", str(page)]) == 0
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,2200",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = (imread(shot) * 255).round().astype(np.uint8)
    height = image.shape[0]
    banner, flagged = _where(image, BANNER), _where(image, FLAGGED)
    vanilla, cropd = (_rgb(configuration_style(kind, lam)[0]) for kind, lam in (("vanilla", None), ("cropd", 10)))
    blue, purple = _where(image, vanilla, 10), _where(image, cropd, 10)
    # What a reader sees first: the banner, near the top, before any table row.
    assert len(banner) > 1000 and banner.min() < height * 0.15
    # The flagged CRoPD rows are shaded, below the banner.
    assert len(flagged) > 1000 and flagged.min() > banner.max()
    # The figure drew Vanilla's and CRoPD's markers in their colours, below the tables.
    assert len(blue) > 30 and len(purple) > 30 and blue.min() > flagged.min() and purple.min() > flagged.min()
