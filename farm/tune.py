"""`farm tune`: hyperparameter searches with Ray Tune (Optuna TPE + ASHA), tracked and registered.

Each trial is a Tune function that builds the same TorchTrainer as `farm train` (Ray Train V2 inside
Tune) and forwards its per-epoch metrics to Tune through `TuneReportCallback`, so ASHA can stop bad
trials early. MLflow holds one parent run per search and one child run per trial (keyed by the
trial id, so a restarted or resumed trial continues its run). The best trial's checkpoint becomes a
new model version with the alias `candidate`. An interrupted search continues with
`farm tune resume ID` (Tuner.restore from the experiment folder in the store).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from farm import registry, store
from farm.errors import FarmError
from farm.ray_utils import ensure_ray, storage_for_ray
from farm.specs import (
    FIDELITY_METRICS,
    ParamSpace,
    TrainJob,
    TuneJob,
    apply_params,
    parse_job,
    resolved,
)
from farm.train import (
    _log_spec,
    _log_validation,
    _root_cause,
    build_trainer,
    data_tags,
    prepare_data,
)

INTERRUPT_ENV = "FARM_FAULT_TUNE_INTERRUPT_AFTER_TRIALS"
"""Fault injection for tests and drills: the search is interrupted (as by Ctrl-C) after N trials."""
CANDIDATE = "candidate"
TRIAL_TAG = "farm.tune.trial_id"
SEARCH_TAG = "farm.tune.search"


@dataclass
class SearchContext:
    """Everything a trial needs, passed explicitly (trial actors do not see the driver's env)."""

    search_id: str
    base: dict[str, Any]
    resources: dict[str, Any]
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    trials_storage: str
    provenance: dict[str, Any]
    data_ref: list = field(default_factory=list)
    metric: str = "val_loss"
    fidelity: Any = None  # farm.fidelity.FidelityScorer when the job scores checkpoints


@dataclass
class TuneResult:
    search_id: str
    status: str
    name: str | None
    version: str | None
    best: dict[str, Any] | None
    trials: list[dict[str, Any]]
    parent_run_id: str
    seconds: float
    metric: str = "val_loss"


# --- store layout -------------------------------------------------------------------------------


def new_search_id(job: TuneJob) -> str:
    return (
        f"{job.search_name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"
    )


def search_url(search_id: str, *parts: str) -> str:
    """FARM_HOME/tune/<search id>/..."""
    return store.join(store.home(), "tune", search_id, *parts)


def _read_json(url: str, default: Any = None) -> Any:
    return json.loads(store.read_text(url)) if store.exists(url) else default


def read_search(search_id: str) -> dict[str, Any]:
    """search.json of a search; FarmError naming the known searches if it does not exist."""
    doc = _read_json(search_url(search_id, "search.json"))
    if doc is None:
        known = ", ".join(sorted(store.listdir(store.join(store.home(), "tune")))) or "none yet"
        raise FarmError(f"no tune search {search_id!r} in {store.home()} (known: {known})")
    return doc


def _write_search(doc: dict[str, Any]) -> None:
    store.write_text(search_url(doc["id"], "search.json"), json.dumps(doc, indent=2))


def read_trials(search_id: str) -> list[dict[str, Any]]:
    """The trial rows written by the search (empty before the first trial reports)."""
    return _read_json(search_url(search_id, "trials.json"), [])


# --- search space -------------------------------------------------------------------------------


def _domain(dist: ParamSpace):
    """The Tune search-space domain of one parameter (randint is inclusive of high here)."""
    if dist.type == "choice":
        return tune.choice(list(dist.values))
    if dist.type == "randint":
        return tune.randint(int(dist.low), int(dist.high) + 1)
    sample = tune.loguniform if dist.type == "loguniform" else tune.uniform
    return sample(dist.low, dist.high)


def trial_job(base: TrainJob, params: dict[str, Any], resources: dict[str, Any]) -> TrainJob:
    """The train job one trial runs: sampled parameters and the per-trial resources applied."""
    job = apply_params(base, params)
    job.resources.workers = resources["workers"]
    job.resources.cpus_per_worker = resources["cpus"]
    job.resources.use_gpu = resources["use_gpu"]
    return job


# --- the trial ----------------------------------------------------------------------------------


def _child_run_id(client, experiment_id: str, parent_run_id: str, trial_id: str) -> str | None:
    """The child run of a trial (found by its trial-id tag under the search's parent run)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' "
        f"and tags.`mlflow.parentRunId` = '{parent_run_id}'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _child_run(client, ctx: SearchContext, trial_id: str, job: TrainJob, params: dict) -> str:
    """The trial's MLflow child run, created once (a restarted trial finds and continues it)."""
    existing = _child_run_id(client, ctx.experiment_id, ctx.parent_run_id, trial_id)
    if existing:
        return existing
    run = client.create_run(
        ctx.experiment_id,
        run_name=f"{ctx.search_id}/{trial_id}",
        tags={
            "mlflow.parentRunId": ctx.parent_run_id,
            TRIAL_TAG: trial_id,
            SEARCH_TAG: ctx.search_id,
            "farm.job": job.name,
            "farm.tune.params": json.dumps(params, sort_keys=True),
        },
    )
    _log_spec(client, run.info.run_id, job)
    return run.info.run_id


SHOWN_METRICS = ("val_loss", *FIDELITY_METRICS)
"""Metrics the trial table carries besides the search's own (when the trials report them)."""
PG_KEY = "farm_placement_group"
"""Result key carrying the hex id of a trial's Ray Train placement group (see _release)."""


def _trial_callbacks(metric: str) -> list:
    """TuneReportCallback (per-epoch metrics to Tune) plus the id of the run's placement group.

    Only results holding the search's `metric` reach Tune: with a fidelity objective scored every
    few epochs, ASHA and Optuna see the scored epochs alone (Tune requires the metric in every
    result it gets). Tune stops a trial (ASHA, end of search, interrupt) by ending its actor; the
    TorchTrainer's controller dies with it, but its placement group outlives it unless Train's
    cleaner actor can reach the State API, which needs the dashboard (farm runs Ray without one).
    Reporting the group's id lets the search driver release it as soon as the trial ends.
    """
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback
    from ray.tune.integration.ray_train import TuneReportCallback

    class Recorder(WorkerGroupCallback):
        def __init__(self, shared: dict):
            self.shared = shared

        def after_worker_group_start(self, worker_group) -> None:
            handle = worker_group.get_worker_group_state().placement_group_handle
            self.shared["pg"] = handle.placement_group.id.hex()

    class Report(TuneReportCallback):
        def __init__(self, shared: dict):
            super().__init__()
            self.shared = shared

        def after_report(self, run_context, metrics, checkpoint) -> None:
            if metric not in metrics[0]:
                return
            first = {**metrics[0], PG_KEY: self.shared.get("pg")}
            super().after_report(run_context, [first, *metrics[1:]], checkpoint)

    shared: dict = {}
    return [Report(shared), Recorder(shared)]


def _release(pg_hex: str | None) -> None:
    """Remove a trial's Train placement group (no-op if Train already removed it)."""
    if not pg_hex:
        return
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    with contextlib.suppress(Exception):  # already removed
        remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg_hex))))


def _trial(config: dict[str, Any], ctx: SearchContext) -> None:
    """One Tune trial: the `farm train` TorchTrainer for the sampled job, reporting to Tune."""
    from mlflow import MlflowClient

    trial_id = tune.get_context().get_trial_id()
    job = trial_job(TrainJob.model_validate(ctx.base), config, ctx.resources)
    client = MlflowClient(tracking_uri=ctx.tracking_uri)
    run_id = _child_run(client, ctx, trial_id, job, config)
    card = {
        "name": job.name,
        "data": dict(ctx.provenance),
        "job": resolved(job),
        "mlflow_run_id": run_id,
        "ray_run": trial_id,
        "tune_search": ctx.search_id,
    }
    data = ctx.data_ref[0]
    model_config = job.model.model_copy(deep=True)
    prep = model_config.preprocessing
    if getattr(prep, "kind", None) == "shower" and prep.layer_sizes is None:
        prep.layer_sizes = ctx.provenance["layer_sizes"]
    trainer = build_trainer(
        job,
        run_name=trial_id,
        mlflow_run_id=run_id,
        data_ref=data,
        model_config=model_config,
        card=card,
        storage_url=ctx.trials_storage,
        tracking_uri=ctx.tracking_uri,
        callbacks=_trial_callbacks(ctx.metric),
        extra_config={"fidelity": ctx.fidelity} if ctx.fidelity is not None else None,
    )
    trainer.fit()


# --- driver-side tracking -----------------------------------------------------------------------


def _trial_row(
    trial, planned_epochs: int, metric: str, previous: dict | None, status: str | None = None
) -> dict[str, Any]:
    """One row of the trial table from a Tune Trial (status, params, metric, epochs, checkpoint)."""
    last = trial.last_result or {}
    row = dict(previous or {})
    epochs = int(last.get("epoch", row.get("epochs", 0)) or 0)
    planned = int(trial.config.get("optim.epochs", planned_epochs))
    finished = bool(last.get("done"))  # set on a trial's last result (done, or stopped by ASHA)
    if status == "completed" and not finished:
        status = "unfinished"  # ended with the experiment (an interrupt): resumed later
    elif status is None and row.get("status") not in (None, "unfinished", "running"):
        status = "error" if row["status"] == "error" else "completed"
    status = status or {"ERROR": "error", "RUNNING": "running"}.get(trial.status)
    status = status or ("completed" if trial.status == "TERMINATED" and finished else "unfinished")
    stopped = status == "completed" and epochs < planned
    values = {k: last.get(k, row.get(k)) for k in (metric, *SHOWN_METRICS)}
    row.update(
        trial_id=trial.trial_id,
        params=dict(trial.config),
        **{metric: None if values[metric] is None else float(values[metric])},
        status="stopped early" if stopped else status,
        epochs=epochs,
        planned_epochs=planned,
        stopped_early=stopped,
    )
    row.update({k: float(v) for k, v in values.items() if k != metric and v is not None})
    if last.get("checkpoint_path"):
        row["checkpoint_path"] = last["checkpoint_path"]
    if last.get(PG_KEY):
        row["placement_group"] = last[PG_KEY]
    if trial.status == "ERROR":
        row["error"] = (trial.error_msg or "")[:300] if hasattr(trial, "error_msg") else "error"
    return row


def _best(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    """The best finished trial by its last reported metric (errored trials never win)."""
    import math

    ok = [
        r
        for r in rows
        if r["status"] in ("completed", "stopped early")
        and r.get(metric) is not None
        and math.isfinite(r[metric])
        and r.get("checkpoint_path")
    ]
    if not ok:
        return None
    pick = min if mode == "min" else max
    return pick(ok, key=lambda r: r[metric])


class SearchTracker(tune.Callback):
    """Tune callback on the driver: trial table in the store, child-run status, parent progress."""

    def __init__(self, search_id: str, home: str, tracking_uri: str, settings: dict[str, Any]):
        self.search_id = search_id
        self.home = home
        self.tracking_uri = tracking_uri
        self.settings = settings
        self._rows: dict[str, dict] | None = None
        self._client = None
        self._done_here = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "_rows": None, "_done_here": 0}

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _url(self, name: str) -> str:
        return store.join(self.home, "tune", self.search_id, name)

    def rows(self) -> dict[str, dict]:
        if self._rows is None:
            saved = _read_json(self._url("trials.json"), [])
            self._rows = {r["trial_id"]: r for r in saved}
        return self._rows

    def _update(self, trials: list, status: dict[str, str] | None = None) -> list[dict[str, Any]]:
        s, rows, status = self.settings, self.rows(), status or {}
        for trial in trials:
            rows[trial.trial_id] = _trial_row(
                trial,
                s["epochs"],
                s["metric"],
                rows.get(trial.trial_id),
                status.get(trial.trial_id),
            )
        table = list(rows.values())
        store.write_text(self._url("trials.json"), json.dumps(table, indent=2))
        return table

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._update([trial])

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finish(trials, trial, "completed", "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finish(trials, trial, "error", "FAILED")

    def on_experiment_end(self, trials, **info) -> None:
        for row in self._update(trials):
            _release(row.get("placement_group"))

    def _finish(self, trials: list, trial, status: str, mlflow_status: str) -> None:
        """Close the trial's child run, log the search's progress, maybe inject an interrupt."""
        s, c = self.settings, self.client
        table = self._update([trial], {trial.trial_id: status})
        row = self.rows()[trial.trial_id]
        _release(row.get("placement_group"))
        run_id = _child_run_id(c, s["experiment_id"], s["parent_run_id"], trial.trial_id)
        if run_id:
            c.set_tag(run_id, "farm.tune.status", row["status"])
            c.set_terminated(run_id, "KILLED" if row["status"] == "unfinished" else mlflow_status)
        if row["status"] == "unfinished":
            return  # stopped by an interrupt: not done, and no further interrupt
        done = sum(r["status"] not in ("unfinished", "running") for r in table)
        c.log_metric(s["parent_run_id"], "trials_done", done, step=done)
        best = _best(table, s["metric"], s["mode"])
        if best is not None:
            c.log_metric(s["parent_run_id"], f"best_{s['metric']}", best[s["metric"]], step=done)
            c.set_tag(s["parent_run_id"], "farm.tune.best_trial", best["trial_id"])
        self._done_here += 1
        limit = os.environ.get(INTERRUPT_ENV)
        if limit and self._done_here >= int(limit):
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's own interrupt: state saved, resumable


# --- the search ---------------------------------------------------------------------------------


def _settings(job: TuneJob, search_id: str, experiment_id: str, parent_run_id: str) -> dict:
    return {
        "metric": job.metric,
        "mode": job.mode,
        "epochs": job.base.optim.epochs,
        "experiment_id": experiment_id,
        "parent_run_id": parent_run_id,
        "search_id": search_id,
    }


def _start_parent_run(client, job: TuneJob, search_id: str, experiment_id: str) -> str:
    """The search's MLflow parent run: search space, settings and the resolved job."""
    from mlflow.entities import Param

    run = client.create_run(
        experiment_id,
        run_name=search_id,
        tags={SEARCH_TAG: search_id, "farm.job": job.base.name, "farm.kind": "tune"},
    )
    params = {
        **{f"space.{k}": json.dumps(v.model_dump(exclude_none=True)) for k, v in job.space.items()},
        "metric": job.metric,
        "mode": job.mode,
        "trials": job.trials,
        "concurrency": job.concurrency,
        "time_budget_s": job.time_budget_s,
        "seed": job.seed,
        **{f"resources_per_trial.{k}": v for k, v in job.resources_per_trial.model_dump().items()},
        **{f"asha.{k}": v for k, v in (job.asha.model_dump() if job.asha else {}).items()},
        **{
            f"fidelity.{k}": v
            for k, v in (job.fidelity.model_dump() if job.fidelity else {}).items()
        },
        **(
            {"points_to_evaluate": json.dumps(job.points_to_evaluate)}
            if job.points_to_evaluate
            else {}
        ),
    }
    client.log_batch(run.info.run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
    client.log_text(run.info.run_id, json.dumps(resolved(job), indent=2), "tune_job.json")
    return run.info.run_id


def _context(job: TuneJob, doc: dict[str, Any], data) -> SearchContext:
    import ray

    from farm.fidelity import scorer

    provenance = {**data.dataset.provenance, "kind": data.dataset.kind}
    if data.dataset.kind == "showers":
        provenance["layer_sizes"] = [
            layer.n_voxels for layer in data.dataset.geometry.active_layers
        ]
    return SearchContext(
        search_id=doc["id"],
        base=resolved(job.base),
        resources=job.resources_per_trial.model_dump(),
        tracking_uri=registry.tracking_uri(),
        experiment_id=doc["experiment_id"],
        parent_run_id=doc["parent_run_id"],
        trials_storage=store.join(store.home(), "ray", "tune", f"{doc['id']}-trials"),
        provenance=provenance,
        data_ref=[ray.put(data.arrays)],
        metric=job.metric,
        fidelity=job.fidelity and scorer(job.fidelity, data.dataset.geometry),  # showers only
    )


def _trainable(ctx: SearchContext):
    """The trial function with its context bound.

    The trial driver only waits on its TorchTrainer, whose workers request the trial's CPUs/GPUs
    themselves; so the driver reserves no CPU (a token byte of memory: Tune needs a non-empty
    request), and `concurrency` (ConcurrencyLimiter) bounds the trials running at once.
    """
    return tune.with_resources(tune.with_parameters(_trial, ctx=ctx), {"memory": 1})


def _trial_dirname(trial) -> str:
    return trial.trial_id


class ResumableASHA(ASHAScheduler):
    """Ray's ASHAScheduler whose rung records survive `farm tune resume`.

    Tune saves trials and the searcher with the experiment but not the scheduler: a restored
    search gets the scheduler as it was created, with empty rungs, so the first trials after a
    resume could never be stopped. This one writes its rungs ({trial id: value} per milestone)
    to `state_url` (JSON) after every decision and reads them back before its first trial.
    """

    def __init__(self, state_url: str, **kwargs):
        super().__init__(**kwargs)
        self.state_url = state_url
        self.loaded = False

    def _recorded(self) -> list[list[dict]]:
        return [[recorded for _, recorded in bracket._rungs] for bracket in self._brackets]

    def on_trial_add(self, tune_controller, trial) -> None:
        if not self.loaded:
            self.loaded = True
            saved = _read_json(self.state_url, {}).get("rungs", [])
            for now, then in zip(self._recorded(), saved, strict=False):
                for recorded, values in zip(now, then, strict=False):
                    recorded.update(values)
        super().on_trial_add(tune_controller, trial)

    def _save(self) -> None:
        store.write_text(self.state_url, json.dumps({"rungs": self._recorded()}))

    def on_trial_result(self, tune_controller, trial, result) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        self._save()
        return action

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._save()


def _tuner(job: TuneJob, doc: dict[str, Any], ctx: SearchContext):
    """A fresh Tuner: seeded Optuna TPE behind a ConcurrencyLimiter, ASHA on epochs."""
    import optuna
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    sampler = optuna.samplers.TPESampler(
        seed=job.seed, n_startup_trials=max(1, min(10, job.trials // 2))
    )
    optuna_search = OptunaSearch(sampler=sampler, points_to_evaluate=job.points_to_evaluate or None)
    searcher = ConcurrencyLimiter(optuna_search, max_concurrent=job.concurrency)
    if job.asha is not None:
        scheduler = ResumableASHA(
            search_url(doc["id"], "asha.json"),
            time_attr="epoch",
            max_t=job.asha.max_t or job.max_epochs,
            grace_period=job.asha.grace_period,
            reduction_factor=job.asha.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    storage_path, storage_fs = storage_for_ray(store.join(store.home(), "ray", "tune"))
    tracker = SearchTracker(
        doc["id"],
        store.home(),
        ctx.tracking_uri,
        _settings(job, doc["id"], doc["experiment_id"], doc["parent_run_id"]),
    )
    return tune.Tuner(
        _trainable(ctx),
        param_space={path: _domain(dist) for path, dist in job.space.items()},
        tune_config=tune.TuneConfig(
            metric=job.metric,
            mode=job.mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=job.trials,
            time_budget_s=job.time_budget_s,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=doc["id"],
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=tune.FailureConfig(max_failures=job.base.resources.max_failures),
            callbacks=[tracker],
            verbose=0,
        ),
    )


def run_search(job: TuneJob) -> TuneResult:
    """Run a search: parent run, trials on Ray Tune, trial table, best trial registered."""
    home = store.home()
    store.check_writable(home)
    client = registry.client()
    search_id = new_search_id(job)
    experiment_id = registry.experiment_id(job.base.name)
    doc = {
        "id": search_id,
        "name": job.search_name,
        "job": resolved(job),
        "experiment_id": experiment_id,
        "parent_run_id": _start_parent_run(client, job, search_id, experiment_id),
        "status": "running",
        "created": time.time(),
        "seconds": 0.0,
    }
    _write_search(doc)
    return _execute(job, doc, restore=False)


def resume_search(search_id: str) -> TuneResult:
    """Continue an interrupted search from its Tune experiment state (finished trials are kept)."""
    doc = read_search(search_id)
    if doc["status"] == "finished":
        raise FarmError(
            f"tune search {search_id} already finished (see `farm tune status {search_id}`)"
        )
    path, fs = storage_for_ray(store.join(store.home(), "ray", "tune", search_id))
    if not tune.Tuner.can_restore(path, storage_filesystem=fs):
        raise FarmError(
            f"tune search {search_id} has no saved Tune state at {path}; start it again"
        )
    job = parse_job(doc["job"], f"tune search {search_id}", kind="tune")
    doc["status"] = "running"
    _write_search(doc)
    return _execute(job, doc, restore=True)


def _execute(job: TuneJob, doc: dict[str, Any], *, restore: bool) -> TuneResult:
    """Fit (or restore and fit) the Tuner, then write the table and register the best trial."""
    t0 = time.perf_counter()
    data = prepare_data(job.base)
    ensure_ray()
    ctx = _context(job, doc, data)
    if restore:
        path, fs = storage_for_ray(store.join(store.home(), "ray", "tune", doc["id"]))
        tuner = tune.Tuner.restore(
            path, trainable=_trainable(ctx), resume_unfinished=True, storage_filesystem=fs
        )
    else:
        tuner = _tuner(job, doc, ctx)
    try:
        tuner.fit()
    except Exception as exc:
        doc.update(status="failed", error=_root_cause(exc))
        _write_search(doc)
        raise FarmError(
            f"tune search {doc['id']} failed ({doc['error']}); `farm tune resume {doc['id']}` "
            "continues it"
        ) from None
    rows = read_trials(doc["id"])
    doc["seconds"] = float(doc.get("seconds", 0.0)) + time.perf_counter() - t0
    if _interrupted(job, rows, doc["seconds"]):
        doc["status"] = "interrupted"
        _write_search(doc)
        return _result(doc, rows, None, None)
    return _finalize(job, doc, rows, data)


def _interrupted(job: TuneJob, rows: list[dict], seconds: float) -> bool:
    """True when the search stopped before all its trials ran (and not for its time budget)."""
    done = sum(r["status"] not in ("unfinished", "running") for r in rows)
    over_budget = job.time_budget_s is not None and seconds >= job.time_budget_s
    return done < job.trials and not over_budget


def _finalize(job: TuneJob, doc: dict[str, Any], rows: list[dict], data) -> TuneResult:
    """Save the table (JSON + CSV), register the best trial as `candidate`, close the parent run."""
    client = registry.client()
    parent = doc["parent_run_id"]
    best = _best(rows, job.metric, job.mode)
    store.write_text(search_url(doc["id"], "trials.csv"), trials_csv(rows, job.metric))
    client.log_text(parent, json.dumps(rows, indent=2), "trials.json")
    client.log_text(parent, trials_csv(rows, job.metric), "trials.csv")
    version = None
    if best is not None:
        version = _register_best(job, doc, best, data)
        client.set_tag(parent, "farm.tune.best_trial", best["trial_id"])
        client.set_tag(parent, "farm.tune.version", version)
        client.log_metric(parent, f"best_{job.metric}", best[job.metric])
    client.set_terminated(parent, "FINISHED" if best is not None else "FAILED")
    doc.update(status="finished", best_trial=best and best["trial_id"], version=version)
    _write_search(doc)
    return _result(doc, rows, best, version)


def _register_best(job: TuneJob, doc: dict[str, Any], best: dict, data) -> str:
    """Register the best trial's final checkpoint (a normal farm checkpoint) with alias candidate."""
    from ray.train import Checkpoint

    client = registry.client()
    run_id = _child_run_id(client, doc["experiment_id"], doc["parent_run_id"], best["trial_id"])
    _, fs = storage_for_ray(store.join(store.home(), "ray", "tune"))
    local = tempfile.mkdtemp(prefix="farm-tune-best-")
    Checkpoint(best["checkpoint_path"], filesystem=fs).to_directory(local)
    for name in ("train_state.safetensors", "train_state.json"):
        if os.path.exists(os.path.join(local, name)):
            os.remove(os.path.join(local, name))
    base = job.base
    trained = trial_job(base, best["params"], job.resources_per_trial.model_dump())
    _log_validation(
        client, run_id, local, data.parts["val"], base.validation_events, trained.optim.seed
    )
    tags = {
        "farm.job": base.name,
        "farm.run": best["trial_id"],
        **data_tags(data.dataset),
        "farm.gates": json.dumps(
            {k: v.model_dump(exclude_none=True) for k, v in base.gates.items()}
        ),
        SEARCH_TAG: doc["id"],
        "farm.tune.trial": best["trial_id"],
        "farm.tune.params": json.dumps(best["params"], sort_keys=True),
        **base.tags,
    }
    mv = registry.register(
        base.name, run_id, local, aliases=[CANDIDATE], tags=tags, description=base.description
    )
    shutil.rmtree(local, ignore_errors=True)
    return str(mv.version)


def _result(doc: dict, rows: list[dict], best: dict | None, version: str | None) -> TuneResult:
    return TuneResult(
        doc["id"],
        doc["status"],
        doc["job"]["base"]["name"],
        version,
        best,
        rows,
        doc["parent_run_id"],
        doc["seconds"],
        doc["job"]["metric"],
    )


def search_status(search_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(search.json, trial rows) of a search."""
    return read_search(search_id), read_trials(search_id)


def other_metrics(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """The table's metric columns besides the search's own: those some trial reported."""
    return [k for k in SHOWN_METRICS if k != metric and any(r.get(k) is not None for r in rows)]


def trials_csv(rows: list[dict[str, Any]], metric: str) -> str:
    """The trial table as CSV: one column per searched parameter, then the metrics."""
    params = sorted({k for r in rows for k in r.get("params", {})})
    extra = other_metrics(rows, metric)
    cols = ["trial_id", *params, metric, *extra, "status", "epochs", "stopped_early"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    for r in rows:
        writer.writerow(
            [r.get("params", {}).get(c, r.get(c)) if c in params else r.get(c) for c in cols]
        )
    return buf.getvalue()
