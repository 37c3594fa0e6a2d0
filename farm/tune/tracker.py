"""The search driver's Tune callback: the trial table in the store, child runs, parent progress."""

from __future__ import annotations

import math
import os
import signal
from dataclasses import dataclass
from typing import Any

from ray import tune

from farm.tune.records import SHOWN_METRICS, TrialRow, read_trials, write_trials
from farm.tune.trial import PG_KEY, child_run_id, release

INTERRUPT_ENV = "FARM_FAULT_TUNE_INTERRUPT_AFTER_TRIALS"
"""Fault injection for tests and drills: the search is interrupted (as by Ctrl-C) after N trials."""


@dataclass(frozen=True)
class TrackerSettings:
    """What the tracker needs to know of its search."""

    search_id: str
    metric: str
    mode: str
    epochs: int
    experiment_id: str
    parent_run_id: str


def _status(trial, previous: TrialRow | None, given: str | None, finished: bool) -> str:
    """A trial's table status from Tune's status, what the tracker was told and what it had."""
    if given == "completed" and not finished:
        return "unfinished"  # ended with the experiment (an interrupt): resumed later
    if given is None and previous is not None and previous.done:
        return "error" if previous.status == "error" else "completed"
    status = given or {"ERROR": "error", "RUNNING": "running"}.get(trial.status)
    return status or ("completed" if trial.status == "TERMINATED" and finished else "unfinished")


def trial_row(
    trial, planned_epochs: int, metric: str, previous: TrialRow | None, given: str | None = None
) -> TrialRow:
    """One row of the trial table from a Tune Trial (status, params, metrics, epochs, checkpoint)."""
    last = trial.last_result or {}
    epochs = int(last.get("epoch", previous.epochs if previous else 0) or 0)
    planned = int(trial.config.get("optim.epochs", planned_epochs))
    finished = bool(last.get("done"))  # set on a trial's last result (done, or stopped by ASHA)
    status = _status(trial, previous, given, finished)
    stopped = status == "completed" and epochs < planned
    metrics = dict(previous.metrics) if previous else {}
    for key in (metric, *SHOWN_METRICS):
        if last.get(key) is not None:
            metrics[key] = float(last[key])
    metrics.setdefault(metric, None)
    error = None
    if trial.status == "ERROR":
        error = (trial.error_msg or "")[:300] if hasattr(trial, "error_msg") else "error"
    return TrialRow(
        trial_id=trial.trial_id,
        params=dict(trial.config),
        metrics=metrics,
        status="stopped early" if stopped else status,
        epochs=epochs,
        planned_epochs=planned,
        stopped_early=stopped,
        checkpoint_path=last.get("checkpoint_path") or (previous and previous.checkpoint_path),
        placement_group=last.get(PG_KEY) or (previous and previous.placement_group),
        error=error or (previous and previous.error),
    )


def best_trial(rows: list[TrialRow], metric: str, mode: str) -> TrialRow | None:
    """The best finished trial by its last reported metric (errored trials never win)."""
    ok = [
        r
        for r in rows
        if r.status in ("completed", "stopped early")
        and r.metrics.get(metric) is not None
        and math.isfinite(r.metrics[metric])
        and r.checkpoint_path
    ]
    if not ok:
        return None
    pick = min if mode == "min" else max
    return pick(ok, key=lambda r: r.metrics[metric])


class SearchTracker(tune.Callback):
    """Tune callback on the driver: trial table in the store, child-run status, parent progress."""

    def __init__(self, home: str, tracking_uri: str, settings: TrackerSettings):
        """Track one search; `home` is the store (trial actors do not see FARM_HOME)."""
        self.home = home
        self.tracking_uri = tracking_uri
        self.settings = settings
        self._rows: dict[str, TrialRow] | None = None
        self._client = None
        self._done_here = 0

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the experiment without its client and caches."""
        return {**self.__dict__, "_client": None, "_rows": None, "_done_here": 0}

    @property
    def client(self):
        """An MlflowClient on the search's tracking server."""
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def rows(self) -> dict[str, TrialRow]:
        """The table by trial id (read once from the store)."""
        if self._rows is None:
            saved = read_trials(self.settings.search_id, self.home)
            self._rows = {r.trial_id: r for r in saved}
        return self._rows

    def _update(self, trials: list, status: dict[str, str] | None = None) -> list[TrialRow]:
        s, rows, status = self.settings, self.rows(), status or {}
        for trial in trials:
            previous = rows.get(trial.trial_id)
            rows[trial.trial_id] = trial_row(
                trial, s.epochs, s.metric, previous, status.get(trial.trial_id)
            )
        table = list(rows.values())
        write_trials(s.search_id, table, self.home)
        return table

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        """Every reported epoch updates the table."""
        self._update([trial])

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        """A trial ended (finished, stopped by ASHA or by an interrupt)."""
        self._finish(trials, trial, "completed", "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        """A trial failed."""
        self._finish(trials, trial, "error", "FAILED")

    def on_experiment_end(self, trials, **info) -> None:
        """Write the final table and release every trial's placement group."""
        for row in self._update(trials):
            release(row.placement_group)

    def _finish(self, trials: list, trial, status: str, mlflow_status: str) -> None:
        """Close the trial's child run, log the search's progress, maybe inject an interrupt."""
        s, c = self.settings, self.client
        table = self._update([trial], {trial.trial_id: status})
        row = self.rows()[trial.trial_id]
        release(row.placement_group)
        run_id = child_run_id(c, s.experiment_id, s.parent_run_id, trial.trial_id)
        if run_id:
            c.set_tag(run_id, "farm.tune.status", row.status)
            c.set_terminated(run_id, "KILLED" if row.status == "unfinished" else mlflow_status)
        if row.status == "unfinished":
            return  # stopped by an interrupt: not done, and no further interrupt
        done = sum(r.done for r in table)
        c.log_metric(s.parent_run_id, "trials_done", done, step=done)
        best = best_trial(table, s.metric, s.mode)
        if best is not None:
            c.log_metric(s.parent_run_id, f"best_{s.metric}", best.metrics[s.metric], step=done)
            c.set_tag(s.parent_run_id, "farm.tune.best_trial", best.trial_id)
        self._done_here += 1
        limit = os.environ.get(INTERRUPT_ENV)
        if limit and self._done_here >= int(limit):
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's own interrupt: state saved, resumable
