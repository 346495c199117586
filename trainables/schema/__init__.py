"""Every config section a trial may have, declared once and free of torch.

fields.py is the checker (Field, resolve, Resolved); one module per section (data, foundation
with pretraining, preprocessor with its registry of kinds and architecture.py, head, evaluation;
contrastive holds AdvCL's settings shared by two sections); trial.py validates a whole trial once,
at the edge. results.py is the results-row contract: statuses, stages, attacks, column names.
Importing this package imports no torch, transformers, torchvision or scikit-learn (an
import-linter contract in pyproject.toml keeps it so): the command line parses specs with it.
"""

from .fields import Resolved
from .trial import SECTIONS, validate_trial_config

__all__ = ["SECTIONS", "Resolved", "validate_trial_config"]
