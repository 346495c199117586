"""The old name of trial_runner.py, kept only so that sweep folders written before the rename resume.

Ray Tune pickles a trial's error (ray/<trial>/error.pkl) with its exception class by module path,
and reads it back when a sweep resumes (Tuner.restore, then get_results): an errored trial of an
older sweep names orchestrator.trainable.RecordedFailure or OutOfStorage. Import nothing from here.
"""

from .trial_runner import OutOfStorage, RecordedFailure

__all__ = ["OutOfStorage", "RecordedFailure"]
