"""The embedded foundations that ship with the project as fixed files, identified by digest.

The paper uses one published ViT-MAE; a foundation pre-trained on the spot is another model on
every CPU (PyTorch's kernels differ by instruction set), so the same config gave different
numbers on two machines. The digits foundation at its default settings is therefore built once
and shipped (trainables/foundations/embedded-digits: about 0.6 MB; scikit-learn's digits are
public): every machine loads the same weights. Its folder carries published.json (every file's
sha256) and SHIPPED holds the digest of its weights as trainables/provenance.py computes it, which
every trial row on it records.

Rebuild (only when its settings change; the new digest must then be written below):

    python -m trainables.build_shipped_foundation digits
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError
from .published import damage

FOLDER = Path(__file__).parent / "foundations"
# data set -> (folder under FOLDER, weights digest of the loaded foundation: provenance.weights_digest)
SHIPPED: dict[str, tuple[str, str]] = {
    "digits": ("embedded-digits", "6a2706228ee89a4d"),
}


def shipped_folder(cfg: dict) -> Path | None:
    """The shipped folder whose pre-training settings are exactly `cfg` (resolved), else None.

    A shipped folder that does not match its manifest is refused in one line: it came with the
    project, so it is never rebuilt silently into something else.
    """
    entry = SHIPPED.get(cfg.get("dataset", ""))
    if entry is None:
        return None
    folder = FOLDER / entry[0]
    record = folder / "pretraining.json"
    if not record.is_file() or json.loads(record.read_text())["config"] != dict(cfg):
        return None
    problem = damage(folder)
    if problem is not None:
        raise ConfigError("foundation.embedded", "the shipped foundation as published (reinstall the project)", problem)
    return folder


def shipped_digest(folder: Path) -> str | None:
    """The expected weights digest of `folder` when it is a shipped foundation, else None."""
    for name, digest in SHIPPED.values():
        if Path(folder) == FOLDER / name:
            return digest
    return None
