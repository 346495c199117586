"""The sweep side's exception classes that are pickled by module path: their home never moves.

Ray Tune pickles a failed trial's exception into ray/<trial>/error.pkl and reads it back when the
sweep resumes, naming the class by module path. These two have lived in orchestrator.trainable and
orchestrator.trial_runner before; here they stay, and compat.py maps the old paths to this one.
(User errors are trainables.errors.UserError and its kin: the science side owns those.)
"""


class OutOfStorage(Exception):
    """The disk or quota under the sweep is full: no trial can make progress until space is freed."""


class RecordedFailure(Exception):
    """A trial whose earlier failure would repeat: not run again (its ERROR row stays as it was)."""
