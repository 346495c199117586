"""The one-file HTML report: what a researcher sends a co-author.

One self-contained page, no script, no network, no file beside it: a "k of N finished" banner
when trials are still to run, the paper-style table and its paired differences (report.render's
HTML, rows with an integrity flag marked), the standard figure inline as SVG (summary_figure.py;
the trade-off against lambda too when a sweep varies it), the spec each sweep ran, and the
provenance of the rows (code revision, library versions, foundation digest, compute). Opened in
any browser; printed to PDF from there it keeps the vector figures.
"""

from __future__ import annotations

import io
from html import escape

import pandas as pd

# What the provenance section lists, per column, with its distinct values and their row counts.
PROVENANCE_COLUMNS = {
    "git_revision": "code revision",
    "foundation_digest": "foundation weights digest",
    "device_name": "device",
    "cpu_capability": "CPU instruction set",
    "torch_threads": "torch threads per trial",
}
STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1.5em; color: #1d1d1f; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #555; }
.banner { background: #fff3cd; border: 2px solid #e0a800; padding: 0.8em 1em; font-weight: 600; margin: 1em 0; }
table { border-collapse: collapse; margin: 1em 0 2em 0; font-size: 0.85em; }
caption { caption-side: bottom; text-align: left; color: #444; padding-top: 0.5em; max-width: 1300px; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.flagged td { background: #fde2e1; }
td strong { color: #000; }
figure { margin: 1em 0 2em 0; } figcaption { color: #444; max-width: 1100px; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 0.85em; }
"""


def svg_of(figure) -> str:
    """A matplotlib figure as inline SVG markup (no XML prologue, so it sits inside HTML)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def provenance_rows(trials: pd.DataFrame) -> list[tuple[str, str]]:
    """(what, its values with row counts) for the provenance section: revisions, versions, foundations, compute."""
    columns = dict(PROVENANCE_COLUMNS)
    columns.update({c: c.removeprefix("version.") for c in sorted(trials.columns) if c.startswith("version.")})
    found = []
    for column, title in columns.items():
        if column not in trials:
            continue
        counts = trials[column].astype("string").fillna("not recorded").value_counts(sort=False)
        found.append((title, "; ".join(f"{value} ({n} rows)" for value, n in counts.items())))
    return found


def page(
    *,
    title: str,
    tables_html: str,
    banner: str | None,
    figures: list[tuple[str, str]],
    specs: list[tuple[str, str]],
    trials: pd.DataFrame,
    generated: str,
) -> str:
    """The whole document. `figures`: (SVG markup, caption); `specs`: (sweep, its spec as YAML)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(generated)}</p>',
    ]
    if banner:
        parts.append(f'<div class="banner">{escape(banner)}</div>')
    flagged = (
        "integrity_flags" in trials and trials["integrity_flags"].astype("string").fillna("").str.len().gt(0).any()
    )
    parts.append("<h2>Results</h2>")
    if flagged:
        parts.append("<p>Rows shaded red raised an integrity flag (see its column): read their numbers with care.</p>")
    parts.append(tables_html)
    if figures:
        parts.append("<h2>Figures</h2>")
        for svg, caption in figures:
            parts.append(f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>")
    parts.append("<h2>Provenance</h2><table><thead><tr><th>what</th><th>values</th></tr></thead><tbody>")
    parts += [f"<tr><td>{escape(what)}</td><td>{escape(values)}</td></tr>" for what, values in provenance_rows(trials)]
    parts.append("</tbody></table>")
    if specs:
        parts.append("<h2>Spec</h2>")
        for name, text in specs:
            parts.append(f"<h3>{escape(name)}</h3><pre>{escape(text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
