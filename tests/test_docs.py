"""The docs cannot drift: the generated reference matches the schema, every relative link lands, and
mkdocs.yml's nav lists every page.

Runs in seconds and imports no torch of its own: the generator runs as a user runs it
(`python docs/generate_reference.py --check`, a fresh process) and Python's import log shows what
it imported. Each check is also run on a broken copy, so a check that passes vacuously fails here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
GENERATOR = DOCS / "generate_reference.py"
PAGE = DOCS / "trial-settings.md"
BEGIN_PREFIX = "<!-- BEGIN GENERATED"
HEAVY = ("torch", "transformers", "torchvision", "sklearn", "scipy", "ray", "orchestrator")

# [text](target) and ![alt](target), with an optional "title"; reference definitions [label]: target.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def run_generator(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-X", "importtime", str(GENERATOR), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def prose(text: str) -> str:
    """The text without code blocks and code spans, where a link is only an example."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs' toc both make it for plain headings."""
    text = CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return re.sub(r"[\s]+", "-", text.strip())


def anchors(path: Path) -> set[str]:
    return {slug(heading) for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))}


def broken_links(files: list[Path], root: Path = REPO) -> list[str]:
    """`file: target` for every relative link whose file (or heading anchor) does not exist; a
    link to a folder lands when the folder exists (GitHub shows it with its README)."""
    broken = []
    for path in files:
        text = prose(path.read_text(encoding="utf-8"))
        for target in INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("//"):
                continue  # http:, https:, mailto: ...: not a file of this repository
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{path.relative_to(root)}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{path.relative_to(root)}: {target} (no such heading)")
    return broken


def nav_pages(config: dict) -> list[str]:
    """Every page path named in an mkdocs nav (nested sections included)."""
    found: list[str] = []

    def walk(entry):
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, list):
            for item in entry:
                walk(item)
        elif isinstance(entry, dict):
            for value in entry.values():
                walk(value)

    walk(config.get("nav", []))
    return [page for page in found if not re.match(r"^[a-z]+://", page)]


def nav_problems(config: dict, docs: Path) -> list[str]:
    pages = {path.relative_to(docs).as_posix() for path in docs.rglob("*.md")}
    listed = nav_pages(config)
    problems = [f"not in mkdocs.yml's nav: {page}" for page in sorted(pages - set(listed))]
    problems += [f"in the nav, no such page: {page}" for page in listed if page not in pages]
    return problems


# --- (a) the generated reference ---------------------------------------------------------------------


def test_the_generated_reference_is_what_the_schema_says_now_and_needs_no_torch():
    result = run_generator("--check")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    assert {name.split(".")[0] for name in imported} & set(HEAVY) == set()


def test_the_check_fails_on_a_stale_page_with_one_line_naming_it(tmp_path):
    stale = tmp_path / "trial-settings.md"
    text = PAGE.read_text(encoding="utf-8")
    assert "| `preprocessor.lambda` | `1.0` |" in text
    stale.write_text(text.replace("| `preprocessor.lambda` | `1.0` |", "| `preprocessor.lambda` | `2.0` |"))
    result = run_generator("--check", "--page", str(stale))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"{stale}: stale, run `python docs/generate_reference.py`"]


def test_the_generator_rewrites_only_the_part_between_the_markers(tmp_path):
    text = PAGE.read_text(encoding="utf-8")
    head, generated = text.split(BEGIN_PREFIX, 1)
    marker_line, _ = generated.split("\n", 1)
    emptied = f"{head}A hand-written line.\n\n{BEGIN_PREFIX}{marker_line}\n<!-- END GENERATED -->\n"
    page = tmp_path / "trial-settings.md"
    page.write_text(emptied, encoding="utf-8")
    assert run_generator("--page", str(page)).returncode == 0
    rewritten = page.read_text(encoding="utf-8")
    assert rewritten.startswith(f"{head}A hand-written line.\n\n{BEGIN_PREFIX}{marker_line}\n\n## Sections\n")
    assert rewritten.endswith("\n<!-- END GENERATED -->\n")
    assert run_generator("--check", "--page", str(page)).returncode == 0


# --- (b) relative links ----------------------------------------------------------------------------


def test_every_relative_link_in_the_readme_and_the_docs_lands():
    files = markdown_files()
    assert len(files) > 5
    assert broken_links(files) == []


def test_the_link_check_finds_a_broken_link_and_a_missing_heading(tmp_path):
    shutil.copytree(DOCS, tmp_path / "docs", ignore=shutil.ignore_patterns("*.py"))
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text(encoding="utf-8").replace("(studies.md)", "(studys.md)", 1))
    start = tmp_path / "docs" / "getting-started.md"
    start.write_text(start.read_text(encoding="utf-8") + "\nSee [Studies](studies.md#no-such-heading).\n")
    assert broken_links([start, index], root=tmp_path) == [
        "docs/getting-started.md: studies.md#no-such-heading (no such heading)",
        "docs/index.md: studys.md",
    ]


# --- (c) the nav ------------------------------------------------------------------------------------


def test_mkdocs_nav_lists_every_docs_page():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    assert nav_problems(config, DOCS) == []


def test_the_nav_check_finds_a_page_left_out(tmp_path):
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    (tmp_path / "docs").mkdir()
    for page in nav_pages(config):
        (tmp_path / "docs" / page).write_text("# page\n")
    (tmp_path / "docs" / "new-page.md").write_text("# new\n")
    assert nav_problems(config, tmp_path / "docs") == ["not in mkdocs.yml's nav: new-page.md"]
