"""A search: MLflow parent run, Ray Tune (Optuna TPE + ASHA) over trials, the best one registered.

MLflow holds one parent run per search and one child run per trial; the best trial's checkpoint
becomes a new model version with the alias `candidate`. An interrupted search continues with
`farm tune resume ID` (Tuner.restore from the experiment folder in the store).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass

from ray import tune

from farm import registry, store
from farm.errors import FarmError, root_cause
from farm.evaluation.fidelity import scorer
from farm.ray_utils import ensure_ray, storage_for_ray
from farm.specs import TuneJob, resolved
from farm.train.data import PreparedData, layer_shapes, prepare_data
from farm.train.register import final_checkpoint, log_validation, register_version
from farm.tune.asha import ResumableASHA
from farm.tune.records import (
    SearchRecord,
    TrialRow,
    new_search_id,
    read_search,
    read_trials,
    search_url,
    trials_csv,
    write_search,
)
from farm.tune.tracker import SearchTracker, TrackerSettings, best_trial
from farm.tune.trial import SEARCH_TAG, SearchContext, child_run_id, domain, run_trial, trial_job

CANDIDATE = "candidate"


@dataclass
class TuneResult:
    """A search's outcome: status, registered version, best trial and the whole table."""

    search_id: str
    status: str
    name: str | None
    version: str | None
    best: TrialRow | None
    trials: list[TrialRow]
    parent_run_id: str
    seconds: float
    metric: str = "val_loss"


def _start_parent_run(client, job: TuneJob, search_id: str, experiment_id: str) -> str:
    """The search's MLflow parent run: search space, settings and the resolved job."""
    from mlflow.entities import Param

    run = client.create_run(
        experiment_id,
        run_name=search_id,
        tags={SEARCH_TAG: search_id, "farm.job": job.base.name, "farm.kind": "tune"},
    )
    sections = {
        "resources_per_trial": job.resources_per_trial,
        "asha": job.asha,
        "fidelity": job.fidelity,
    }
    params = {
        **{f"space.{k}": json.dumps(v.model_dump(exclude_none=True)) for k, v in job.space.items()},
        "metric": job.metric,
        "mode": job.mode,
        "trials": job.trials,
        "concurrency": job.concurrency,
        "time_budget_s": job.time_budget_s,
        "seed": job.seed,
        **{
            f"{name}.{k}": v
            for name, section in sections.items()
            if section is not None
            for k, v in section.model_dump().items()
        },
    }
    if job.points_to_evaluate:
        params["points_to_evaluate"] = json.dumps(job.points_to_evaluate)
    client.log_batch(run.info.run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
    client.log_text(run.info.run_id, json.dumps(resolved(job), indent=2), "tune_job.json")
    return run.info.run_id


def _context(job: TuneJob, doc: SearchRecord, data: PreparedData) -> SearchContext:
    import ray

    return SearchContext(
        search_id=doc.id,
        base=resolved(job.base),
        resources=job.resources_per_trial.model_dump(),
        tracking_uri=registry.tracking_uri(),
        experiment_id=doc.experiment_id,
        parent_run_id=doc.parent_run_id,
        trials_storage=store.join(store.home(), "ray", "tune", f"{doc.id}-trials"),
        provenance=data.provenance,
        layer_shapes=layer_shapes(data.dataset),
        data_ref=[ray.put(data.arrays)],
        metric=job.metric,
        fidelity=job.fidelity and scorer(job.fidelity, data.dataset.geometry),  # showers only
        stream=data.stream,
    )


def _trainable(ctx: SearchContext):
    """The trial function with its context bound.

    The trial driver only waits on its TorchTrainer, whose workers request the trial's CPUs/GPUs
    themselves; so the driver reserves no CPU (a token byte of memory: Tune needs a non-empty
    request), and `concurrency` (ConcurrencyLimiter) bounds the trials running at once.
    """
    return tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), {"memory": 1})


def _trial_dirname(trial) -> str:
    return trial.trial_id


def _tuner(job: TuneJob, doc: SearchRecord, ctx: SearchContext):
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
            search_url(doc.id, "asha.json"),
            time_attr="epoch",
            max_t=job.asha.max_t or job.max_epochs,
            grace_period=job.asha.grace_period,
            reduction_factor=job.asha.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    storage_path, storage_fs = storage_for_ray(store.join(store.home(), "ray", "tune"))
    settings = TrackerSettings(
        search_id=doc.id,
        metric=job.metric,
        mode=job.mode,
        epochs=job.base.optim.epochs,
        experiment_id=doc.experiment_id,
        parent_run_id=doc.parent_run_id,
    )
    return tune.Tuner(
        _trainable(ctx),
        param_space={path: domain(dist) for path, dist in job.space.items()},
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
            name=doc.id,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=tune.FailureConfig(max_failures=job.base.resources.max_failures),
            callbacks=[SearchTracker(store.home(), ctx.tracking_uri, settings)],
            verbose=0,
        ),
    )


def run_search(job: TuneJob) -> TuneResult:
    """Run a search: parent run, trials on Ray Tune, trial table, best trial registered."""
    store.check_writable(store.home())
    client = registry.client()
    search_id = new_search_id(job)
    experiment_id = registry.experiment_id(job.base.name)
    doc = SearchRecord(
        id=search_id,
        name=job.search_name,
        job=job,
        experiment_id=experiment_id,
        parent_run_id=_start_parent_run(client, job, search_id, experiment_id),
        created=time.time(),
    )
    write_search(doc)
    return _execute(job, doc, restore=False)


def resume_search(search_id: str) -> TuneResult:
    """Continue an interrupted search from its Tune experiment state (finished trials are kept)."""
    doc = read_search(search_id)
    if doc.status == "finished":
        raise FarmError(
            f"tune search {search_id} already finished (see `farm tune status {search_id}`)"
        )
    path, fs = storage_for_ray(store.join(store.home(), "ray", "tune", search_id))
    if not tune.Tuner.can_restore(path, storage_filesystem=fs):
        raise FarmError(
            f"tune search {search_id} has no saved Tune state at {path}; start it again"
        )
    doc = doc.model_copy(update={"status": "running"})
    write_search(doc)
    return _execute(doc.job, doc, restore=True)


def _execute(job: TuneJob, doc: SearchRecord, *, restore: bool) -> TuneResult:
    """Fit (or restore and fit) the Tuner, then write the table and register the best trial."""
    t0 = time.perf_counter()
    data = prepare_data(job.base.data, job.base.model)
    ensure_ray()
    ctx = _context(job, doc, data)
    if restore:
        path, fs = storage_for_ray(store.join(store.home(), "ray", "tune", doc.id))
        tuner = tune.Tuner.restore(
            path, trainable=_trainable(ctx), resume_unfinished=True, storage_filesystem=fs
        )
    else:
        tuner = _tuner(job, doc, ctx)
    try:
        tuner.fit()
    except Exception as exc:
        doc = doc.model_copy(update={"status": "failed", "error": root_cause(exc, 300)})
        write_search(doc)
        raise FarmError(
            f"tune search {doc.id} failed ({doc.error}); `farm tune resume {doc.id}` continues it"
        ) from None
    rows = read_trials(doc.id)
    doc = doc.model_copy(update={"seconds": doc.seconds + time.perf_counter() - t0})
    if _interrupted(job, rows, doc.seconds):
        doc = doc.model_copy(update={"status": "interrupted"})
        write_search(doc)
        return _result(doc, rows, None, None)
    return _finalize(job, doc, rows, data)


def _interrupted(job: TuneJob, rows: list[TrialRow], seconds: float) -> bool:
    """True when the search stopped before all its trials ran (and not for its time budget)."""
    done = sum(r.done for r in rows)
    over_budget = job.time_budget_s is not None and seconds >= job.time_budget_s
    return done < job.trials and not over_budget


def _finalize(
    job: TuneJob, doc: SearchRecord, rows: list[TrialRow], data: PreparedData
) -> TuneResult:
    """Save the table (JSON + CSV), register the best trial as `candidate`, close the parent run."""
    client = registry.client()
    parent = doc.parent_run_id
    best = best_trial(rows, job.metric, job.mode)
    table = trials_csv(rows, job.metric)
    store.write_text(search_url(doc.id, "trials.csv"), table)
    client.log_text(parent, json.dumps([r.model_dump() for r in rows], indent=2), "trials.json")
    client.log_text(parent, table, "trials.csv")
    version = None
    if best is not None:
        version = _register_best(job, doc, best, data)
        client.set_tag(parent, "farm.tune.best_trial", best.trial_id)
        client.set_tag(parent, "farm.tune.version", version)
        client.log_metric(parent, f"best_{job.metric}", best.metrics[job.metric])
    client.set_terminated(parent, "FINISHED" if best is not None else "FAILED")
    doc = doc.model_copy(
        update={"status": "finished", "best_trial": best and best.trial_id, "version": version}
    )
    write_search(doc)
    return _result(doc, rows, best, version)


def _register_best(job: TuneJob, doc: SearchRecord, best: TrialRow, data: PreparedData) -> str:
    """Register the best trial's final checkpoint (a normal farm checkpoint) with alias candidate."""
    from ray.train import Checkpoint

    client = registry.client()
    run_id = child_run_id(client, doc.experiment_id, doc.parent_run_id, best.trial_id)
    _, fs = storage_for_ray(store.join(store.home(), "ray", "tune"))
    local = final_checkpoint(Checkpoint(best.checkpoint_path, filesystem=fs))
    base = job.base
    trained = trial_job(base, best.params, job.resources_per_trial.model_dump())
    log_validation(
        client, run_id, local, data.parts["val"], base.validation_events, trained.optim.seed
    )
    tags = {
        SEARCH_TAG: doc.id,
        "farm.tune.trial": best.trial_id,
        "farm.tune.params": json.dumps(best.params, sort_keys=True),
    }
    mv = register_version(
        base, run_id, local, data.dataset, run_name=best.trial_id, aliases=[CANDIDATE], tags=tags
    )
    shutil.rmtree(local, ignore_errors=True)
    return str(mv.version)


def _result(
    doc: SearchRecord, rows: list[TrialRow], best: TrialRow | None, version: str | None
) -> TuneResult:
    return TuneResult(
        doc.id,
        doc.status,
        doc.job.base.name,
        version,
        best,
        rows,
        doc.parent_run_id,
        doc.seconds,
        doc.job.metric,
    )


def search_status(search_id: str) -> tuple[SearchRecord, list[TrialRow]]:
    """(search record, trial rows) of a search."""
    return read_search(search_id), read_trials(search_id)
