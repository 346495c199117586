"""A sweep as YAML: parse, validate every planned trial, and expand into a SweepSpec.

No Ray and no torch work here: a spec is checked completely (unknown keys, types, ranges, each
planned trial config) before anything runs or is written, and every problem is one line. The
sections that stand alone (name, seeds, grid, objectives, resources) are parsed in sections.py.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.spec.backends import backend_names, parse_backend_settings, settings_sections
from orchestrator.spec.overrides import apply_cli_overrides
from orchestrator.spec.schedulers import (
    SchedulerSpec,
    check_pruner_fits,
    check_trials_report,
    max_preprocessor_epochs,
    parse_scheduler,
)
from orchestrator.spec.sections import (
    SEED_KEY,
    check_key,
    grid_points,
    is_scalar,
    parse_grid,
    parse_name,
    parse_objectives,
    parse_resources,
    parse_seeds,
    validate_point,
)
from orchestrator.spec.trackers import parse_trackers
from trainables.artifacts import canonical_json, config_hash
from trainables.errors import ConfigError, UserError
from trainables.schema import SECTIONS, validate_trial_config
from trainables.schema.evaluation import check_evaluation_config, validation_attacks
from trainables.schema.fields import did_you_mean, is_int, is_number
from trainables.schema.results import (
    ACCURACY_NAMES,
    ATTACKS,
    SEED_FIELDS,
    accuracy_column,
    validation_column,
)

# The spec's own keys; each backend with settings adds its section (`slurm:`), see top_level_keys().
OWN_KEYS = (
    "name",
    "description",
    "trial",
    "grid",
    "search",
    "seeds",
    "objectives",
    "select_on_test",
    "resources",
    "max_concurrent",
    "max_retries",
    "backend",
    "scheduler",
    "trackers",
)
SEARCH_KEYS = ("trials", "sampler", "seed", "parameters")
DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
SAMPLERS = ("tpe", "nsga2", "random")
# Without `objectives:`, trials are compared (and a search steered) by PGD-20 accuracy, as in the papers.
DEFAULT_OBJECTIVES = {validation_column("pgd20"): "max"}
# Settings that may change between runs of the same sweep: how it runs, not what it computes.
OWN_OPERATIONAL_KEYS = ("description", "resources", "max_concurrent", "max_retries", "backend", "trackers")


def top_level_keys() -> tuple[str, ...]:
    return (*OWN_KEYS, *settings_sections())


def operational_keys() -> tuple[str, ...]:
    """How a sweep runs, not what it computes; every backend's section (`slurm:`) is one of them."""
    return (*OWN_OPERATIONAL_KEYS, *settings_sections())


@dataclass(frozen=True)
class SearchParameter:
    """One Optuna-searched setting: a distribution over a dotted trial-config key."""

    key: str
    distribution: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    values: tuple = ()


@dataclass
class SweepSpec:
    """A validated study: the base trial config, the grid points, Optuna's space and budget."""

    path: Path
    name: str
    description: str
    trial: dict
    grid_points: list[dict[str, Any]]
    search: list[SearchParameter]
    search_trials: int
    sampler: str
    sampler_seed: int
    objectives: dict[str, str]
    resources: dict[str, float]
    max_concurrent: int | None
    max_retries: int
    # Objectives may name test metrics (`select_on_test: true`): the report says the selection saw the test set.
    select_on_test: bool = False
    backend: str = "local"
    # Each backend's own section, parsed by its parser (spec/backends.py): {"slurm": SlurmSettings}.
    backend_settings: dict[str, Any] = field(default_factory=dict)
    scheduler: SchedulerSpec | None = None  # stops trials early (schedulers.py)
    trackers: tuple[str, ...] = ()  # experiment trackers the sweep logs to (trackers.py)
    # The longest pre-processor training among the planned trials (the scheduler's default max_t).
    max_preprocessor_epochs: int = 1
    raw: dict = field(repr=False, default_factory=dict)
    # The command line's key=value overrides, already applied to `raw` (kept to be recorded and shown).
    overrides: tuple[str, ...] = ()

    @property
    def num_trials(self) -> int:
        return len(self.grid_points) + self.search_trials

    @property
    def plan(self) -> dict:
        """Everything that decides which trials run and what they compute."""
        return {key: value for key, value in self.raw.items() if key not in operational_keys()}

    @property
    def plan_hash(self) -> str:
        return config_hash(self.plan)

    def __setstate__(self, state: dict) -> None:
        # A SweepSpec pickled before backends parsed their own sections (a Slurm job submitted
        # then and started or requeued now) holds `slurm`: it becomes backend_settings["slurm"].
        if "slurm" in state:
            state = {**state, "backend_settings": {"slurm": state["slurm"]}}
            del state["slurm"]
        self.__dict__.update(state)

    def trial_config(self, overrides: dict[str, Any]) -> dict:
        """The nested trial config for one point: the base trial with dotted overrides applied."""
        return apply_overrides(self.trial, overrides)


def apply_overrides(base: dict, overrides: dict[str, Any]) -> dict:
    """`base` with each dotted key set; `seed` sets every training seed. None means 'leave as is'."""
    config = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            continue
        for target in SEED_FIELDS if key == SEED_KEY else (key,):
            *parents, leaf = target.split(".")
            node = config
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SweepSpec:
    """Read and validate the YAML at `path` with command-line `overrides` (orchestrator/spec/overrides.py)
    applied first; raises UserError naming the file and field."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise UserError(f"{source}: no such spec file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:  # a binary file passed by mistake
        raise UserError(f"{source}: not a UTF-8 text file (byte {err.start}: {err.reason})") from None
    except OSError as err:
        raise UserError(f"{source}: cannot read the spec ({err.strerror})") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = str(getattr(err, "problem", None) or err).splitlines()[0]
        raise UserError(f"{source}: not valid YAML{where}: {problem}") from None
    raw = apply_cli_overrides(raw, overrides, source=source)
    spec = parse_spec(raw, source=source, default_name=path.stem, path=path)
    spec.overrides = tuple(overrides)
    return spec


def parse_spec(raw: Any, *, source: str, default_name: str, path: Path | None = None) -> SweepSpec:
    def fail(field_name: str, expected: str, got: Any = None) -> ConfigError:
        return ConfigError(field_name, expected, got, source=source)

    if not isinstance(raw, dict):
        raise fail("(top level)", "a mapping with keys " + ", ".join(top_level_keys()), type(raw).__name__)
    for key in raw:
        if key not in top_level_keys():
            raise fail(
                str(key),
                f"a known key: one of {list(top_level_keys())}{did_you_mean(key, list(top_level_keys()))}",
                "unknown key",
            )

    name = parse_name(raw, default_name, fail)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "text", description)

    trial = raw.get("trial", {})
    trial = {} if trial is None else trial
    if not isinstance(trial, dict):
        raise fail("trial", "a mapping with sections " + ", ".join(SECTIONS), trial)

    seeds = parse_seeds(raw, fail)

    grid = parse_grid(raw.get("grid"), fail)
    search, search_trials, sampler, sampler_seed = _parse_search(raw.get("search"), fail)
    grid_keys = {key for sub in grid for key in sub}
    for parameter in search:
        if parameter.key in grid_keys:
            raise fail(
                f"search.parameters.{parameter.key}",
                "a key that is not also a grid axis (list grid values under search.parameters.<key>.values instead)",
                "also in grid",
            )
    if "seeds" in raw:
        for key in sorted(grid_keys | {p.key for p in search}):
            if key in SEED_FIELDS or key == SEED_KEY:
                raise fail("seeds", f"no seeds list when the grid or search sets {key} itself", seeds)
        if not grid and search:
            raise fail(
                "seeds",
                "a grid to repeat: seeds repeat grid points, and a search-only spec samples each trial (set "
                "trial.<section>.seed instead)",
                seeds,
            )
    if not grid and not search:
        grid = [{}]
    if not search and search_trials:
        raise fail("search.trials", "0 when search.parameters is empty", search_trials)
    if search and search_trials == 0 and not grid_keys:
        raise fail("search.trials", "an integer >= 1 (how many trials Optuna samples)", search_trials)

    # Seeds outermost: every configuration runs with the first seed before any repeat. Without a
    # `seeds` key the trial section's own seeds stand.
    if "seeds" in raw:
        points = [{**point, SEED_KEY: seed} for seed in seeds for point in grid_points(grid)]
    else:
        points = grid_points(grid)
    if len({canonical_json(p) for p in points}) != len(points):
        raise fail("grid", "grid entries that do not repeat the same point", "a point listed twice")

    select_on_test = raw.get("select_on_test", False)
    if not isinstance(select_on_test, bool):
        raise fail(
            "select_on_test", "true or false (allow test metrics as objectives; the report says so)", select_on_test
        )
    objectives = parse_objectives(raw.get("objectives", DEFAULT_OBJECTIVES), fail, select_on_test=select_on_test)
    resources = parse_resources(raw.get("resources", {}), fail)
    max_concurrent = raw.get("max_concurrent")
    if max_concurrent is not None and not (is_int(max_concurrent) and max_concurrent >= 1):
        raise fail("max_concurrent", "an integer >= 1, or null to fill the machine", max_concurrent)
    max_retries = raw.get("max_retries", 1)
    if not (is_int(max_retries) and max_retries >= 0):
        raise fail("max_retries", "an integer >= 0 (retries of a failed trial)", max_retries)
    backend = raw.get("backend", "local")
    if backend not in backend_names():
        names = list(backend_names())
        raise fail("backend", f"one of {names}{did_you_mean(backend, names)}", backend)
    backend_settings = parse_backend_settings(raw, source=source)
    scheduler = parse_scheduler(raw.get("scheduler"), fail, objectives)
    trackers = parse_trackers(raw.get("trackers"), source)

    spec = SweepSpec(
        path=path or Path(source),
        name=name,
        description=description,
        trial=trial,
        grid_points=points,
        search=search,
        search_trials=search_trials,
        sampler=sampler,
        sampler_seed=sampler_seed,
        objectives=objectives,
        select_on_test=select_on_test,
        resources=resources,
        max_concurrent=max_concurrent,
        max_retries=max_retries,
        backend=backend,
        backend_settings=backend_settings,
        scheduler=scheduler,
        trackers=trackers,
        raw={**raw, "name": name},
    )
    configs = _check_trial_configs(spec, grid_keys, source)
    spec.max_preprocessor_epochs = max_preprocessor_epochs(configs)
    if scheduler is not None:
        check_trials_report(scheduler, configs, fail)
        if search:
            check_pruner_fits(scheduler, objectives, fail)
    return spec


def _parse_search(search: Any, fail) -> tuple[list[SearchParameter], int, str, int]:
    if search is None:
        return [], 0, "tpe", 0
    if not isinstance(search, dict):
        raise fail("search", "a mapping with keys " + ", ".join(SEARCH_KEYS), search)
    for key in search:
        if key not in SEARCH_KEYS:
            raise fail(
                f"search.{key}", f"one of {list(SEARCH_KEYS)}{did_you_mean(key, list(SEARCH_KEYS))}", "unknown key"
            )
    trials = search.get("trials", 0)
    if not (is_int(trials) and trials >= 0):
        raise fail("search.trials", "an integer >= 0 (trials Optuna samples after the grid points)", trials)
    sampler = search.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise fail("search.sampler", f"one of {list(SAMPLERS)}{did_you_mean(sampler, list(SAMPLERS))}", sampler)
    seed = search.get("seed", 0)
    if not is_int(seed):
        raise fail("search.seed", "an integer", seed)
    parameters = search.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise fail("search.parameters", "a mapping of dotted keys to distributions", parameters)
    return [_parse_parameter(key, value, fail) for key, value in parameters.items()], trials, sampler, seed


def _parse_parameter(key: str, given: Any, fail) -> SearchParameter:
    where = f"search.parameters.{key}"
    check_key(key, where, fail)
    if not isinstance(given, dict):
        raise fail(where, "a mapping such as {distribution: loguniform, low: 0.01, high: 100}", given)
    kind = given.get("distribution")
    if kind not in DISTRIBUTIONS:
        raise fail(
            f"{where}.distribution", f"one of {list(DISTRIBUTIONS)}{did_you_mean(kind, list(DISTRIBUTIONS))}", kind
        )
    allowed = (
        {"distribution", "values"}
        if kind == "choice"
        else {"distribution", "low", "high"} | ({"step"} if kind == "int" else set())
    )
    for extra in given:
        if extra not in allowed:
            raise fail(f"{where}.{extra}", f"one of {sorted(allowed)} for a {kind} distribution", "unknown key")
    if kind == "choice":
        values = given.get("values")
        if not isinstance(values, list) or not values or not all(is_scalar(v) for v in values):
            raise fail(f"{where}.values", "a non-empty list of numbers, strings, booleans or null", values)
        return SearchParameter(key, kind, values=tuple(values))
    low, high = given.get("low"), given.get("high")
    number_check = is_int if kind == "int" else is_number
    for bound, value in (("low", low), ("high", high)):
        if not number_check(value):
            raise fail(f"{where}.{bound}", "an integer" if kind == "int" else "a finite number", value)
    if kind == "loguniform" and low <= 0:
        raise fail(f"{where}.low", "a number > 0 (log-uniform needs a positive range)", low)
    if not low < high:
        raise fail(f"{where}.high", f"a number > low ({low})", high)
    step = given.get("step")
    if step is not None and not (is_int(step) and step >= 1):
        raise fail(f"{where}.step", "an integer >= 1", step)
    return SearchParameter(key, kind, low=low, high=high, step=step)


def _check_trial_configs(spec: SweepSpec, grid_keys: set[str], source: str) -> list[dict]:
    """Validate every planned trial, and the search space at its ends, before anything runs;
    returns the validated configs (the grid's points, then the search space's ends)."""
    configs = [validate_point(spec.trial_config(point), point, "grid", source) for point in spec.grid_points]
    base_point = spec.grid_points[0] if spec.grid_points else {}
    for parameter in spec.search:
        ends = parameter.values if parameter.distribution == "choice" else (parameter.low, parameter.high)
        for value in ends:
            configs.append(
                validate_point(
                    spec.trial_config({**base_point, parameter.key: value}),
                    {parameter.key: value},
                    "search.parameters",
                    source,
                )
            )
    evaluation = check_evaluation_config(validate_trial_config(spec.trial_config(base_point))["evaluation"])
    measured = {
        **{accuracy_column(name): ("trial.evaluation.attacks", evaluation["attacks"], name) for name in ACCURACY_NAMES},
        **{
            validation_column(name): ("trial.evaluation.validation_attacks", validation_attacks(evaluation), name)
            for name in ACCURACY_NAMES
        },
    }
    for metric in spec.objectives:  # a validation metric, or a test one with select_on_test (parse_objectives)
        where, attacks, name = measured[metric]
        if name in ATTACKS and name not in attacks:
            raise ConfigError(
                f"objectives.{metric}", f"a metric the trials compute: add {name!r} to {where}", metric, source=source
            )
    return configs
