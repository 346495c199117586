"""Ray Tune's OptunaSearch that hands out every grid point exactly once, also after a driver was killed.

OptunaSearch queues the grid points as Optuna's enqueued (WAITING) trials and each `ask()` takes
the oldest. The Optuna journal records that at once, but Tune saves the searcher (with which Tune
trial holds which Optuna trial) only now and then with its experiment state. A driver killed in
between has taken a point that the restored searcher never handed out: the next `ask()` then
finds the queue short and *samples* the space instead (the chaos test caught a Vanilla trial
with lambda 1, outside the grid, while the real Vanilla point never ran). So before a new trial
is asked for, every grid point that no trial of the searcher holds and that is not waiting is
queued again, once per restore (a sweep that was never restored lost nothing, and checking at
every suggestion would cost a pass over all trials each time). Points are matched on the grid
axes alone, so searched parameters do not matter.

The Optuna trial the killed driver took stays RUNNING in the journal (the dashboard shows it);
no Tune trial ever reports to it.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from .private_apis import optuna_search_internals


class GridFirstOptunaSearch(OptunaSearch):
    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._restored = True

    def suggest(self, trial_id: str) -> dict | None:
        if getattr(self, "_restored", False):
            self._restored = False
            self.requeue_lost_points()
        return super().suggest(trial_id)

    def requeue_lost_points(self) -> list[dict[str, Any]]:
        """Queue again the grid points neither held by a trial nor waiting; returns them."""
        ot_trials, study, points = optuna_search_internals(self)
        axes = sorted({key for point in points for key in point})

        def identity(params: dict) -> str:
            return json.dumps([params.get(key) for key in axes])

        held = Counter(identity(trial.params) for trial in ot_trials.values())
        waiting = Counter(
            identity(trial.system_attrs.get("fixed_params", trial.params))
            for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        )
        lost = []
        for point in points:
            key = identity(point)
            for accounted in (held, waiting):
                if accounted[key] > 0:
                    accounted[key] -= 1
                    break
            else:
                lost.append(point)
        for point in lost:
            study.enqueue_trial(point)
        return lost
