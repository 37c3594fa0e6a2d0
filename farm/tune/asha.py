"""ASHA early stopping whose rungs survive `farm tune resume` (Tune does not save schedulers)."""

from __future__ import annotations

import json

from ray.tune.schedulers import ASHAScheduler

from farm import store


class ResumableASHA(ASHAScheduler):
    """Ray's ASHAScheduler whose rung records survive `farm tune resume`.

    Tune saves trials and the searcher with the experiment but not the scheduler: a restored
    search gets the scheduler as it was created, with empty rungs, so the first trials after a
    resume could never be stopped. This one writes its rungs ({trial id: value} per milestone)
    to `state_url` (JSON) after every decision and reads them back before its first trial.
    """

    def __init__(self, state_url: str, **kwargs):
        """ASHAScheduler(**kwargs) keeping its rungs at `state_url`."""
        super().__init__(**kwargs)
        self.state_url = state_url
        self.loaded = False

    def _recorded(self) -> list[list[dict]]:
        return [[recorded for _, recorded in bracket._rungs] for bracket in self._brackets]

    def on_trial_add(self, tune_controller, trial) -> None:
        """Restore the saved rungs before the first trial, then ASHA's own bookkeeping."""
        if not self.loaded:
            self.loaded = True
            saved = self._saved()
            for now, then in zip(self._recorded(), saved, strict=False):
                for recorded, values in zip(now, then, strict=False):
                    recorded.update(values)
        super().on_trial_add(tune_controller, trial)

    def _saved(self) -> list:
        if not store.exists(self.state_url):
            return []
        return json.loads(store.read_text(self.state_url)).get("rungs", [])

    def _save(self) -> None:
        store.write_text(self.state_url, json.dumps({"rungs": self._recorded()}))

    def on_trial_result(self, tune_controller, trial, result) -> str:
        """ASHA's decision, then the rungs saved."""
        action = super().on_trial_result(tune_controller, trial, result)
        self._save()
        return action

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        """ASHA's bookkeeping, then the rungs saved."""
        super().on_trial_complete(tune_controller, trial, result)
        self._save()
