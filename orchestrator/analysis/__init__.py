"""Read-only analysis of a sweep's Parquet rows: frames, paired statistics, tables, figures.

`frames.py` loads rows (pandas, DuckDB); `paired.py` compares two configurations on the same test
points; `report.py` renders the paper-style table, `costs.py` the cost table, both as Markdown and
LaTeX through `render.py`; `plots.py` draws the figures;
`trained_models.py` rebuilds a finished trial's model; `plain_json.py` is every `--format json`.
Nothing here writes to a sweep folder.
"""


def __getattr__(name: str):
    # The old module orchestrator.analysis's names, for pickles and old imports (compat.py).
    from orchestrator.compat import former_attribute

    return former_attribute(__name__, name)
