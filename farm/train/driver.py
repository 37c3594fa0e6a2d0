"""run_training: a train or distill job on Ray Train, tracked in MLflow, registered when it ends.

Re-running the same job resumes its unfinished run: Ray Train restores the run's latest checkpoint
(same run name and storage path) and the MLflow run continues instead of being duplicated.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from farm import registry, store
from farm.errors import FarmError, root_cause
from farm.ray_utils import ensure_ray
from farm.specs import DistillJob, TrainJob, resolved
from farm.train.data import prepare_data
from farm.train.mlflow_run import RunIndex, log_spec, read_index, spec_hash, write_index
from farm.train.register import final_checkpoint, log_validation, register_version
from farm.train.streaming import stream_settings
from farm.train.teacher import resolve_teacher
from farm.train.trainer import build_trainer
from farm.train.worker import FAULT_ENV, WorkerConfig, distill_worker


@dataclass
class TrainResult:
    """A finished run: its registered version, final metrics and where its checkpoint is."""

    name: str
    run_name: str
    mlflow_run_id: str
    version: str
    metrics: dict[str, float]
    checkpoint_dir: str
    resumed_from_epoch: int
    seconds: float


@dataclass
class JobPlan:
    """What differs between a train and a distill job: data, model, worker and bookkeeping."""

    data_spec: Any
    model_config: Any
    worker: Callable[[dict[str, Any]], None] | None = None
    teacher_files: dict[str, bytes] = field(default_factory=dict)
    distill: dict[str, Any] | None = None
    card: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def plan_job(job: TrainJob | DistillJob) -> JobPlan:
    """Resolve what a job trains on and with which worker (a distill job resolves its teacher)."""
    if isinstance(job, DistillJob):
        teacher = resolve_teacher(job)
        return JobPlan(
            teacher.data_spec,
            teacher.config,
            worker=distill_worker,
            teacher_files=teacher.files,
            distill=job.distill.model_dump(mode="json"),
            card={"teacher": teacher.ref},
            tags={"farm.teacher": teacher.ref},
        )
    return JobPlan(job.data, job.model)


def _start_or_resume(job: TrainJob | DistillJob, new: bool) -> RunIndex:
    """The run's index: an unfinished one to resume (its MLflow run running again), or a new run."""
    index = None if new else read_index(job)
    c = registry.client()
    if index is not None and index.status != "finished":
        c.update_run(index.mlflow_run_id, status="RUNNING")
        return index
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_name = f"{job.name}-{stamp}-{spec_hash(job)[:6]}"
    run = c.create_run(
        registry.experiment_id(job.name),
        run_name=run_name,
        tags={"farm.job": job.name, "farm.spec_hash": spec_hash(job)},
    )
    index = RunIndex(run_name=run_name, mlflow_run_id=run.info.run_id)
    log_spec(c, run.info.run_id, job)
    write_index(job, index)
    return index


def _end_run(job: TrainJob | DistillJob, index: RunIndex, status: str) -> None:
    """Mark a run that stopped early: MLflow FAILED or KILLED, index `failed` (resumable)."""
    c = registry.client()
    write_index(job, index.model_copy(update={"status": "failed"}))
    c.set_tag(index.mlflow_run_id, "farm.status", status.lower())
    c.set_terminated(index.mlflow_run_id, status=status)


def run_training(
    job: TrainJob | DistillJob,
    *,
    new: bool = False,
    on_start: Callable[[str, int], None] | None = None,
) -> TrainResult:
    """Train or distil (or resume) a job with Ray Train, then register the result in MLflow.

    The data is loaded and checked before any MLflow run or index exists, so a job that fails on
    its data leaves nothing behind; a run that fails later ends FAILED, one stopped by Ctrl-C or
    SIGTERM ends KILLED, and running the job again resumes either.
    """
    t0 = time.perf_counter()
    store.check_writable(store.home())
    plan = plan_job(job)
    data = prepare_data(plan.data_spec, plan.model_config)
    index = _start_or_resume(job, new)
    if on_start:
        on_start(index.mlflow_run_id, job.optim.epochs)
    try:
        return _train(job, index, plan, data, t0)
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit) else "FAILED"
        with contextlib.suppress(Exception):  # the store may be what failed: keep the cause
            _end_run(job, index, status)
        raise


def _train(job: TrainJob | DistillJob, index: RunIndex, plan: JobPlan, data, t0: float):
    """Ray Train on prepared data, then the validation plots and the registered version."""
    import ray

    home = store.home()
    c = registry.client()
    run_name, run_id = index.run_name, index.mlflow_run_id
    card = {
        "name": job.name,
        "data": data.provenance,
        "job": resolved(job),
        "mlflow_run_id": run_id,
        "ray_run": run_name,
        **plan.card,
    }
    ensure_ray()
    stop_after = os.environ.get(FAULT_ENV)
    config = WorkerConfig(
        data_ref=ray.put(data.arrays),
        model=data.model_config.model_dump(mode="json"),
        optim=job.optim.model_dump(mode="json"),
        card=card,
        tracking_uri=registry.tracking_uri(),
        mlflow_run_id=run_id,
        stop_after_epoch=int(stop_after) if stop_after else None,
        teacher_files=plan.teacher_files,
        distill=plan.distill,
        stream=stream_settings(data.stream),
    )
    trainer = build_trainer(
        job,
        config,
        run_name=run_name,
        storage_url=store.join(home, "ray"),
        worker=plan.worker,
        stream=data.stream,
    )
    try:
        result = trainer.fit()
    except Exception as exc:
        raise FarmError(
            f"training {run_name} failed ({root_cause(exc, 300)}); run `farm train` with the "
            "same job to resume from its last checkpoint"
        ) from None
    local = final_checkpoint(result.checkpoint)
    log_validation(c, run_id, local, data.parts["val"], job.validation_events, job.optim.seed)
    mv = register_version(job, run_id, local, data.dataset, run_name=run_name, tags=plan.tags)
    c.set_terminated(run_id)
    write_index(job, index.model_copy(update={"status": "finished", "version": str(mv.version)}))
    metrics = dict(result.metrics or {})
    return TrainResult(
        job.name,
        run_name,
        run_id,
        str(mv.version),
        metrics,
        local,
        resumed_from_epoch=int(metrics.get("resumed_from_epoch", 0)),
        seconds=time.perf_counter() - t0,
    )
