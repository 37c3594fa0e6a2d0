"""The Ray Train TorchTrainer of a run: scaling, storage, failure and checkpoint settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from farm.ray_utils import storage_for_ray
from farm.specs import TrainJob
from farm.train.streaming import StreamPlan, data_config, training_dataset
from farm.train.worker import CONFIG_KEY, WorkerConfig, train_worker


def use_gpu(job: TrainJob) -> bool:
    """Whether the job's workers get GPUs ('auto': when the cluster has one per worker)."""
    import ray

    if job.resources.use_gpu == "auto":
        return ray.cluster_resources().get("GPU", 0) >= job.resources.workers
    return bool(job.resources.use_gpu)


def build_trainer(
    job: TrainJob,
    config: WorkerConfig,
    *,
    run_name: str,
    storage_url: str,
    callbacks: list | None = None,
    worker: Callable[[dict[str, Any]], None] | None = None,
    stream: StreamPlan | None = None,
):
    """The TorchTrainer running `worker` (default train_worker) for a job.

    Ray Train restores `run_name` if it exists under the storage. With a stream plan the
    training split is the Ray Dataset "train", sharded over the workers in a preserved order.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage_path, storage_fs = storage_for_ray(storage_url)
    datasets = {} if stream is None else {"datasets": {"train": training_dataset(stream)}}
    if stream is not None:
        datasets["dataset_config"] = data_config()
    return TorchTrainer(
        worker or train_worker,
        train_loop_config={CONFIG_KEY: config},
        scaling_config=ScalingConfig(
            num_workers=job.resources.workers,
            use_gpu=use_gpu(job),
            resources_per_worker={"CPU": job.resources.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=FailureConfig(max_failures=job.resources.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks or None,
        ),
        **datasets,
    )
