"""Where a command's `-o FILE` may go: checked before any work, so a typo costs nothing.

A file in a folder that does not exist is refused (it is usually a typo, and creating the folder
silently hides it), and a report's file name must say the format written into it: `-o report.tex`
writes LaTeX without `--format latex`, and `-o report.html --format markdown` is refused rather
than written as Markdown under a misleading name.
"""

from __future__ import annotations

from pathlib import Path

from trainables.errors import UserError

# A report file's suffix -> the format written into it.
REPORT_SUFFIXES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "markdown",
    ".tex": "latex",
    ".csv": "csv",
    ".json": "json",
    ".html": "html",
    ".htm": "html",
}


def check_folder(path: Path) -> None:
    """Refuse `path` when its folder does not exist (or is not a folder)."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise UserError(f"-o {path}: no folder {folder}; create it first (nothing was written)")


def report_format(path: Path | None, asked: str | None, default: str = "markdown") -> str:
    """The format of a report written to `path` (None: printed) when `--format` gave `asked`
    (None: not given): the suffix's, which must agree with `asked` when both are given."""
    if path is None:
        return asked or default
    check_folder(path)
    suffix = Path(path).suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        expected = ", ".join(sorted(REPORT_SUFFIXES))
        raise UserError(f"-o {path}: expected a file name ending in one of {expected} (nothing was written)")
    implied = REPORT_SUFFIXES[suffix]
    if asked is not None and asked != implied:
        raise UserError(f"-o {path}: a {suffix} file holds {implied}, but --format is {asked}; give one that agrees")
    return implied
