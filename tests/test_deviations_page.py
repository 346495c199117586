"""docs/deviations.md cannot point at nothing: every file, setting and name its "where" column gives exists.

In a row's "where" cell, each code span is a repository path (`trainables/losses.py`), a trial
setting (`preprocessor.arae_attack`, checked against the generated docs/trial-settings.md, which
tests/test_docs.py keeps equal to the schema), or a name that must occur in the path before it (a
function, a constant, a key of a study file). Reads text only: no torch, seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "deviations.md"
REFERENCE = REPO / "docs" / "trial-settings.md"
SECTIONS = ("data", "foundation", "preprocessor", "head", "evaluation", "compute")
CODE_SPAN = re.compile(r"`([^`]+)`")
PATH = re.compile(r"^[\w.-]+(/[\w.-]+)+\.(py|yaml|md)$")
NAME = re.compile(r"^\w+$")
WHERE_COLUMN = 4  # | # | topic | paper | ours | where | why |


def rows(text: str) -> list[list[str]]:
    """The body rows of the page's tables, as lists of cells."""
    found = []
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| # ") or set(line) <= set("|-: "):
            continue
        found.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return found


def trial_settings(reference: str) -> set[str]:
    """Every dotted setting the generated reference lists in its first column."""
    return set(re.findall(r"^\| `((?:" + "|".join(SECTIONS) + r")\.[\w.]+)` \|", reference, re.MULTILINE))


def problems(text: str, root: Path, settings: set[str]) -> list[str]:
    """`row N: what` for every path, setting or name of a "where" cell that does not exist."""
    found = []
    for number, cells in enumerate(rows(text), start=1):
        if len(cells) != 6:
            found.append(f"row {number}: {len(cells)} cells, expected 6 (a '|' inside a cell?)")
            continue
        spans = CODE_SPAN.findall(cells[WHERE_COLUMN])
        if not any(PATH.match(span) for span in spans):
            found.append(f"row {number}: names no file")
        current: Path | None = None
        for span in spans:
            if PATH.match(span):
                current = root / span
                if not current.is_file():
                    found.append(f"row {number}: no file {span}")
                    current = None
            elif span.split(".")[0] in SECTIONS:
                if span not in settings:
                    found.append(f"row {number}: no setting {span}")
            elif NAME.match(span):
                if current is None:
                    found.append(f"row {number}: {span} follows no file")
                elif not re.search(rf"\b{re.escape(span)}\b", current.read_text(encoding="utf-8")):
                    found.append(f"row {number}: {span} is not in {current.relative_to(root)}")
            else:
                found.append(f"row {number}: {span!r} is neither a file, a setting nor a name")
    return found


def test_every_file_setting_and_name_the_page_points_at_exists():
    text = PAGE.read_text(encoding="utf-8")
    assert len(rows(text)) >= 31  # the CRoPD table and the AdvCL one
    assert problems(text, REPO, trial_settings(REFERENCE.read_text(encoding="utf-8"))) == []


def test_the_issue_32_rows_are_there():
    # The deviations issue 32 names, each a row of its own.
    topics = " ".join(cells[1] for cells in rows(PAGE.read_text(encoding="utf-8"))).lower()
    for topic in (
        "masking at test time",
        "temperature",
        "projector pooling",
        "paper224",
        "contrastive loss form",
        "vae",
        "fine-tuned",
        "lars",
        "arae's training attack",
    ):
        assert topic in topics, topic


def test_the_check_finds_a_missing_file_setting_and_name(tmp_path):
    # On a broken copy, so the check above cannot pass vacuously.
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("def real_function():\n    pass\n")
    good = "| 1 | t | p | o | `pkg/mod.py` (`real_function`), `head.lr` | w |"
    settings = {"head.lr"}
    assert problems(good, tmp_path, settings) == []
    broken = [
        ("| 1 | t | p | o | `pkg/gone.py` | w |", "row 1: no file pkg/gone.py"),
        ("| 1 | t | p | o | `pkg/mod.py`, `head.lrr` | w |", "row 1: no setting head.lrr"),
        ("| 1 | t | p | o | `pkg/mod.py` (`other_function`) | w |", "row 1: other_function is not in pkg/mod.py"),
        ("| 1 | t | p | o | `head.lr` | w |", "row 1: names no file"),
        ("| 1 | t | p | o | `pkg/mod.py` | w | extra |", "row 1: 7 cells, expected 6 (a '|' inside a cell?)"),
    ]
    for row, expected in broken:
        assert problems(row, tmp_path, settings) == [expected], row
