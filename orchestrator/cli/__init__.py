"""The command line: one module per subcommand, each parses its arguments, calls one layer, prints.

`app.py` builds the parser from every subcommand's `add_parser` and dispatches; nothing below
`cli/` imports it. The layers it calls: backends (run or submit a sweep), analysis (read-only
tables and figures), spec (check a study), store (the sweep folder's record).
"""


def __getattr__(name: str):
    # The old module orchestrator.cli's names, for pickles and old imports (compat.py).
    from orchestrator.compat import former_attribute

    return former_attribute(__name__, name)
