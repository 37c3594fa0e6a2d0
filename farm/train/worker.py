"""Per-rank Ray Train worker functions: plain PyTorch fit() or distill() plus three Ray calls.

The config every worker receives is a `WorkerConfig` (picklable, typed); metrics leave through
`worker_report`: MLflow from rank 0, ray.train.report with the checkpoint, and the fault hook.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

FAULT_ENV = "FARM_FAULT_STOP_AFTER_EPOCH"
"""Fault injection for tests and drills: the run crashes right after this epoch's checkpoint."""


class InjectedFault(RuntimeError):
    """Raised by the fault-injection hook to simulate a crash."""


@dataclass
class WorkerConfig:
    """What every Ray Train worker of a run gets: data, model and optimiser, where to log."""

    data_ref: Any
    model: dict[str, Any]
    optim: dict[str, Any]
    card: dict[str, Any]
    tracking_uri: str
    mlflow_run_id: str
    stop_after_epoch: int | None = None
    fidelity: Any = None  # farm.evaluation.fidelity.FidelityScorer (tune searches) or None
    teacher_files: dict[str, bytes] = field(default_factory=dict)
    distill: dict[str, Any] | None = None
    stream: dict[str, int] | None = None  # ShardStream settings of the "train" shard, or None


def peak_rss_mib() -> float:
    """This process's peak resident memory so far in MiB (getrusage; Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_report(config: WorkerConfig) -> Callable[[dict[str, float], str | None], None]:
    """A rank's report(metrics, checkpoint_dir): MLflow (rank 0), ray.train.report, fault hook."""
    import ray.train
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    rank = ray.train.get_context().get_world_rank()
    mlflow = MlflowClient(tracking_uri=config.tracking_uri) if rank == 0 else None
    # a run resumed from an older checkpoint than its last logged epoch logs each epoch once
    logged = 0
    if mlflow is not None:
        history = mlflow.get_metric_history(config.mlflow_run_id, "epoch")
        logged = max((m.step for m in history), default=0)

    def report(metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        metrics = {**metrics, "peak_rss_mib": peak_rss_mib()}
        if mlflow is not None and metrics["epoch"] > logged:
            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, int(metrics["epoch"])) for k, v in metrics.items()]
            mlflow.log_batch(config.mlflow_run_id, metrics=batch)
        ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=ckpt)
        stop_after = config.stop_after_epoch
        if stop_after is not None and metrics["epoch"] >= stop_after:
            raise InjectedFault(
                f"{FAULT_ENV}={stop_after}: simulated crash after epoch {stop_after}"
            )

    return report


@contextlib.contextmanager
def _resume_dir() -> Iterator[str | None]:
    """The run's latest checkpoint as a local folder while it is needed (None on a fresh run)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as directory:
        yield directory


def _train_data(config: WorkerConfig):
    """(arrays, train, val): TrainData from the object store, or this worker's streamed shard."""
    import ray
    import torch

    from models.stream import StreamData
    from models.training import TrainData

    arrays = ray.get(config.data_ref)
    val = TrainData(torch.from_numpy(arrays["x_val"]), torch.from_numpy(arrays["c_val"]))
    if config.stream is None:
        train = TrainData(torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["c_train"]))
        return arrays, train, val
    from farm.train.streaming import ShardStream

    shard = ray.train.get_dataset_shard("train")
    stream = ShardStream(shard, **config.stream)
    fit_sample = TrainData(torch.from_numpy(arrays["x_fit"]), torch.from_numpy(arrays["c_fit"]))
    return arrays, StreamData(stream, fit_sample), val


CONFIG_KEY = "worker"
"""Ray Train's train_loop_config is a dict: the WorkerConfig travels under this key."""


def train_worker(loop_config: dict[str, WorkerConfig]) -> None:
    """Per-rank Ray Train function of a train job: models.training.fit."""
    import ray.train
    import ray.train.torch

    from models.config import OptimConfig, parse_model_config
    from models.training import fit

    config = loop_config[CONFIG_KEY]
    arrays, train, val = _train_data(config)
    model_cfg = parse_model_config(config.model)
    optim_cfg = OptimConfig.model_validate(config.optim)
    send = worker_report(config)
    score = config.fidelity

    def report(metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        """Checkpoints (rank 0 only) due for scoring get fidelity.* metrics before they leave."""
        if score is not None and checkpoint_dir and score.due(metrics["epoch"], optim_cfg.epochs):
            metrics = {**metrics, **score(checkpoint_dir, arrays["x_val"], arrays["c_val"])}
        send(metrics, checkpoint_dir)

    device = ray.train.torch.get_device()
    with _resume_dir() as resume_from:
        fit(
            model_cfg,
            optim_cfg,
            train,
            val,
            report,
            device=device,
            card=config.card,
            resume_from=resume_from,
        )


def distill_worker(loop_config: dict[str, WorkerConfig]) -> None:
    """Ray Train worker of a distill job: rebuild the teacher from its files, models.distill."""
    import ray.train.torch

    from models.config import OptimConfig
    from models.distill import DistillConfig, distill
    from models.loading import load_model

    config = loop_config[CONFIG_KEY]
    _, train, val = _train_data(config)
    device = ray.train.torch.get_device()
    with tempfile.TemporaryDirectory(prefix="farm-teacher-") as tmp:
        for name, blob in config.teacher_files.items():
            with open(os.path.join(tmp, name), "wb") as fh:
                fh.write(blob)
        teacher = load_model(tmp, device=str(device))
    distill_config = DistillConfig.model_validate(config.distill)
    optim = OptimConfig.model_validate(config.optim)
    with _resume_dir() as resume_from:
        distill(
            teacher,
            distill_config,
            optim,
            train,
            worker_report(config),
            val=val,
            device=device,
            card=config.card,
            resume_from=resume_from,
        )
