"""A study as YAML turned into a `SweepSpec`, and everything that follows from the spec alone.

Torch- and Ray-free: a spec is checked whole (unknown keys, types, ranges, every planned trial)
before anything runs or is written. `sweep_spec.py` parses (the sections that stand alone in
`sections.py`); `overrides.py` is the command line's `key=value` grammar; `schedulers.py` and
`trackers.py` check those sections; `estimate.py` is `orchestrator plan`'s cost estimate; `needs.py`
what a study needs on disk and `fetch.py` how to get it; `target.py` turns a spec or a sweep folder
given on the command line into a folder.
"""


def __getattr__(name: str):
    # The old module orchestrator.spec's names, for pickles and old imports (compat.py).
    from orchestrator.compat import former_attribute

    return former_attribute(__name__, name)
