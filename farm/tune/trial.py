"""One Tune trial: the `farm train` TorchTrainer for a sampled job, reporting to Tune and MLflow.

Each trial is a Tune function that builds the same TorchTrainer as `farm train` (Ray Train V2
inside Tune) and forwards its per-epoch metrics to Tune through `TuneReportCallback`, so ASHA can
stop bad trials early. Its MLflow child run is keyed by the trial id, so a restarted or resumed
trial continues its run.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from ray import tune

from farm.specs import ParamSpace, TrainJob, apply_params, resolved
from farm.train.data import complete_model_config
from farm.train.mlflow_run import log_spec
from farm.train.streaming import StreamPlan, stream_settings
from farm.train.trainer import build_trainer
from farm.train.worker import WorkerConfig

TRIAL_TAG = "farm.tune.trial_id"
SEARCH_TAG = "farm.tune.search"
PG_KEY = "farm_placement_group"
"""Result key carrying the hex id of a trial's Ray Train placement group (see release)."""


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
    layer_shapes: list[tuple[int, int]] | None
    data_ref: list
    metric: str = "val_loss"
    fidelity: Any = None  # farm.evaluation.fidelity.FidelityScorer when checkpoints are scored
    stream: StreamPlan | None = None
    """The training split's stream plan when the base job streams (each trial reads it anew)."""


def domain(dist: ParamSpace):
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


def child_run_id(client, experiment_id: str, parent_run_id: str, trial_id: str) -> str | None:
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
    existing = child_run_id(client, ctx.experiment_id, ctx.parent_run_id, trial_id)
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
    log_spec(client, run.info.run_id, job)
    return run.info.run_id


def trial_callbacks(metric: str) -> list:
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


def release(pg_hex: str | None) -> None:
    """Remove a trial's Train placement group (no-op if Train already removed it)."""
    if not pg_hex:
        return
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    with contextlib.suppress(Exception):  # already removed
        remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg_hex))))


def run_trial(config: dict[str, Any], ctx: SearchContext) -> None:
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
    model_config = complete_model_config(job.model, ctx.layer_shapes)
    worker_config = WorkerConfig(
        data_ref=ctx.data_ref[0],
        model=model_config.model_dump(mode="json"),
        optim=job.optim.model_dump(mode="json"),
        card=card,
        tracking_uri=ctx.tracking_uri,
        mlflow_run_id=run_id,
        fidelity=ctx.fidelity,
        stream=stream_settings(ctx.stream),
    )
    trainer = build_trainer(
        job,
        worker_config,
        run_name=trial_id,
        storage_url=ctx.trials_storage,
        callbacks=trial_callbacks(ctx.metric),
        stream=ctx.stream,
    )
    trainer.fit()
