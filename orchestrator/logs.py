"""Log levels of the command line's `-q` / `-v`, here and in the processes that run the trials.

`-q` (quiet): warnings only, from our loggers (`orchestrator`, `trainables`), Ray, Ray Tune,
Optuna, transformers and AutoAttack (its progress is dropped even where a trial sets
`evaluation.verbose`). `-v` (verbose): debug from our loggers and AutoAttack's progress (the
'auto-attack' logger, on stderr), info from Ray, Ray Tune, Optuna and transformers. Neither: every
logger is left as it is (the current behaviour; nothing here runs), unless $CROPD_LOG_LEVEL is
`quiet` or `verbose` already (the same as the option, for a whole shell session).

The level travels in $CROPD_LOG_LEVEL: Ray workers and Slurm jobs inherit the driver's environment,
and the process that runs a trial (orchestrator.engine.trial) applies it again there. transformers
and Ray read their own variables (TRANSFORMERS_VERBOSITY, RAY_LOGGER_LEVEL) when they are imported,
so they are set too; nothing here imports a heavy package. A Ray worker's output goes to Ray's log
folder (workers do not log to the driver), a Slurm job's to its log file.
"""

from __future__ import annotations

import logging
import os
import sys

ENV = "CROPD_LOG_LEVEL"
QUIET, DEFAULT, VERBOSE = "quiet", "default", "verbose"
LEVELS = (QUIET, DEFAULT, VERBOSE)
OURS = ("orchestrator", "trainables")
AUTOATTACK = "auto-attack"  # pyautoattack's logger: its progress at debug level
THIRD_PARTY_LEVEL = {QUIET: logging.WARNING, VERBOSE: logging.INFO}
_MARK = "_cropd_verbosity"  # on the handlers and filters added here, so applying twice adds nothing


def set_level(level: str) -> None:
    """Record `level` for child processes (in the environment) and apply it in this process;
    'default' changes nothing."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if level == DEFAULT:
        return
    os.environ[ENV] = level
    # Read by transformers and Ray when imported (here, in Ray workers and in Slurm jobs).
    os.environ["TRANSFORMERS_VERBOSITY"] = "warning" if level == QUIET else "info"
    os.environ["RAY_LOGGER_LEVEL"] = "warning" if level == QUIET else "info"
    if level == QUIET:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    apply(level)


def current() -> str:
    """The level this process runs under: $CROPD_LOG_LEVEL, or 'default' when unset or unknown."""
    level = os.environ.get(ENV, DEFAULT)
    return level if level in LEVELS else DEFAULT


def apply_from_environment() -> None:
    """In a process that runs trials (a Ray worker, a Slurm job): apply the driver's level."""
    apply(current())


def third_party_level(default: int) -> int:
    """The level for Ray Tune's and Optuna's loggers: the option's, else `default` (the sweep's own
    choice: warnings only, as our display replaces their progress lines)."""
    return THIRD_PARTY_LEVEL.get(current(), default)


def ray_logging_level() -> int | None:
    """The logging_level for ray.init (which resets Ray's logger), None to leave Ray's default."""
    return THIRD_PARTY_LEVEL.get(current())


def apply(level: str) -> None:
    """Set the loggers for `level` in this process; 'default' changes nothing."""
    if level == DEFAULT:
        return
    quiet = level == QUIET
    for name in OURS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING if quiet else logging.DEBUG)
        if not quiet:
            _add_stderr_handler(logger)
            logger.propagate = False  # the handler above prints it; the root's would print it again
    third_party = THIRD_PARTY_LEVEL[level]
    for name in ("ray", "ray.tune", "optuna", "transformers"):
        logging.getLogger(name).setLevel(third_party)
    if "transformers" in sys.modules:  # already imported: its variable was read before we set it
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity(third_party)
    autoattack = logging.getLogger(AUTOATTACK)
    for kept in [f for f in autoattack.filters if getattr(f, _MARK, False)]:
        autoattack.removeFilter(kept)
    if quiet:
        # A filter, not a level: trainables.evaluation sets this logger's level and propagation
        # around each AutoAttack run (evaluation.verbose); a logger's filter applies whatever they are.
        autoattack.addFilter(_warnings_only)
    else:
        # trainables.evaluation stops the progress from propagating unless evaluation.verbose: a
        # handler on the logger itself prints it either way.
        autoattack.setLevel(logging.DEBUG)
        _add_stderr_handler(autoattack)


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


setattr(_warnings_only, _MARK, True)


def _add_stderr_handler(logger: logging.Logger) -> None:
    if any(getattr(handler, _MARK, False) for handler in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    setattr(handler, _MARK, True)
    logger.addHandler(handler)
