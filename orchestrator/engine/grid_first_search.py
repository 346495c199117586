"""Ray Tune's OptunaSearch that hands out every grid point exactly once, also after a driver was killed.

OptunaSearch would queue every grid point in Optuna at once (an enqueued, WAITING trial each,
written to the journal with an fsync): 10,000 points cost seconds before the first trial and tens
of MB of journal up front. Here the grid points wait in the searcher and each suggestion queues
the next one just before Optuna's `ask()` takes the oldest waiting trial, so the grid is handed
out in order, one journal entry at a time, and sampling starts once the grid is used up.

The Optuna journal records each suggestion at once, but Tune saves the searcher (its queue, and
which Tune trial holds which Optuna trial) only now and then with its experiment state. A driver
killed in between has taken points the restored searcher still counts as handed out to nobody:
those would be lost, or the queue would repeat points already run. So on restore the queue is
rebuilt from the journal's and the searcher's own record: every grid point neither held by a
trial of the searcher nor already waiting in Optuna, in grid order (a point the dead driver took
is handed out again). Points are matched on the grid axes alone, so searched parameters do not
matter. (The chaos test once caught a Vanilla trial with lambda 1, outside the grid, while the real
Vanilla point never ran: the searcher then sampled in place of a lost point.)

The Optuna trial the killed driver took stays RUNNING in the journal (the dashboard shows it);
no Tune trial ever reports to it. A trial a scheduler stopped is PRUNED in the study.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter, deque
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from orchestrator.engine.private_apis import optuna_search_internals
from orchestrator.engine.trial import ended_early


class GridFirstOptunaSearch(OptunaSearch):
    def __init__(self, *args, grid_points: list[dict[str, Any]] | None = None, pruner=None, **kwargs):
        """`pruner`: Optuna's pruner for the study (optuna_pruning.py reports to it); Ray's
        OptunaSearch creates its study with none."""
        super().__init__(*args, **kwargs)
        self._grid_points = list(grid_points or [])
        self._grid_queue = deque(self._grid_points)  # not yet handed to Optuna
        self._pruning = pruner is not None
        _, study = optuna_search_internals(self)
        if pruner is not None:
            study.pruner = pruner
        # The objectives by name, so optuna-dashboard shows val_acc_natural, not "Objective 0".
        metrics = kwargs.get("metric")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(metrics) if isinstance(metrics, (list, tuple)) else [metrics])

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._tag(trial_id, result)
        # OptunaSearch reports the objective (a NaN placeholder until the trial ends) at every
        # result; with a pruner the measurements are the intermediate values (optuna_pruning.py).
        if not getattr(self, "_pruning", False):  # (a searcher saved before pruners existed has none)
            super().on_trial_result(trial_id, result)

    def _tag(self, trial_id: str, result: dict | None) -> None:
        """Link the Optuna trial to this project's trial, once: its config hash (the row's key in
        results/) and its folder (trials/<hash>/config.json holds the whole config)."""
        key = (result or {}).get("config_hash")
        tagged = self.__dict__.setdefault("_tagged", set())  # (a searcher saved before tags has none)
        ot_trials, _ = optuna_search_internals(self)
        if not isinstance(key, str) or trial_id in tagged or trial_id not in ot_trials:
            return
        ot_trials[trial_id].set_user_attr("config_hash", key)
        ot_trials[trial_id].set_user_attr("trial_folder", f"trials/{key}")
        tagged.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._restored = True  # the queue is rebuilt at the next suggestion, once per restore

    def suggest(self, trial_id: str) -> dict | None:
        if getattr(self, "_restored", False):
            self._restored = False
            self.requeue_lost_points()
        if self._grid_queue:
            _, study = optuna_search_internals(self)
            study.enqueue_trial(self._grid_queue.popleft())
        return super().suggest(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # A trial a scheduler stopped (schedulers.py) ends without its final report: its last
        # result holds the NaN placeholders of the objectives, which Optuna would record as a
        # failure. Without a result OptunaSearch tells Optuna the trial was pruned, which it was.
        self._tag(trial_id, result)
        if not error and ended_early(result):
            result = None
        super().on_trial_complete(trial_id, result=result, error=error)

    def requeue_lost_points(self) -> list[dict[str, Any]]:
        """Rebuild the queue: the grid points neither held by a trial nor waiting in Optuna, in
        grid order. Returns those a killed driver had taken (they were no longer queued)."""
        ot_trials, study = optuna_search_internals(self)
        axes = sorted({key for point in self._grid_points for key in point})

        def identity(params: dict) -> str:
            return json.dumps([params.get(key) for key in axes])

        held = Counter(identity(trial.params) for trial in ot_trials.values())
        waiting = Counter(
            identity(trial.system_attrs.get("fixed_params", trial.params))
            for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        )
        queued = Counter(identity(point) for point in self._grid_queue)
        remaining = []
        for point in self._grid_points:
            key = identity(point)
            for accounted in (held, waiting):
                if accounted[key] > 0:
                    accounted[key] -= 1
                    break
            else:
                remaining.append(point)
        lost = []
        for point in remaining:
            key = identity(point)
            if queued[key] > 0:
                queued[key] -= 1
            else:
                lost.append(point)
        self._grid_queue = deque(remaining)
        return lost
