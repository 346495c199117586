"""Tables as text: Markdown, LaTeX and HTML from a header and rows of (text, bold) cells.

The paper-style table (report.py) and the cost table (costs.py) are built as cells and written by
these two; their CSV and JSON are numbers, written by each table's own module.
"""

from __future__ import annotations

# Setting titles (report.TITLES) LaTeX writes in math mode.
LATEX_TITLES = {"λ": r"$\lambda$", "τ": r"$\tau$"}


def markdown(header: list[str], rows: list[list[tuple[str, bool]]]) -> str:
    """A Markdown table; bold cells in **...**, a `|` in a cell escaped."""

    def line(cells):
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    body = [line(f"**{text}**" if bold else text for text, bold in row) for row in rows]
    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *body])


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text).replace("±", r"$\pm$")


def latex(header: list[str], rows: list[list[tuple[str, bool]]], caption: str) -> str:
    """A booktabs `table` with its caption; every cell escaped, bold cells in \\textbf."""
    heads = [LATEX_TITLES.get(h, _latex_escape(h)) for h in header]
    body = [
        " & ".join(f"\\textbf{{{_latex_escape(text)}}}" if bold else _latex_escape(text) for text, bold in row) + r" \\"
        for row in rows
    ]
    return (
        "\n".join(
            [
                r"\begin{table}[t]",
                r"\centering",
                f"\\caption{{{_latex_escape(caption)}}}",
                f"\\begin{{tabular}}{{{'l' * len(header)}}}",
                r"\toprule",
                " & ".join(heads) + r" \\",
                r"\midrule",
                *body,
                r"\bottomrule",
                r"\end{tabular}",
                r"\end{table}",
            ]
        )
        + "\n"
    )


def html_table(header: list[str], rows: list[list[tuple[str, bool]]], caption: str, flagged=()) -> str:
    """An HTML <table> with its caption; every cell escaped, bold cells in <strong>, the rows
    marked in `flagged` (True per row: an integrity flag) of class "flagged"."""
    from html import escape

    flagged = list(flagged) + [False] * (len(rows) - len(flagged))

    def cell(text: str, bold: bool) -> str:
        return f"<td><strong>{escape(text)}</strong></td>" if bold else f"<td>{escape(text)}</td>"

    body = "".join(
        ('<tr class="flagged">' if flag else "<tr>") + "".join(cell(text, bold) for text, bold in row) + "</tr>\n"
        for row, flag in zip(rows, flagged)
    )
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return (
        f"<table>\n<caption>{escape(caption)}</caption>\n<thead><tr>{head}</tr></thead>\n"
        f"<tbody>\n{body}</tbody>\n</table>\n"
    )
