"""`farm train`: models' fit() run by Ray Train's TorchTrainer (DDP), tracked and registered in MLflow.

Re-running the same job resumes its unfinished run: Ray Train restores the run's latest checkpoint
(same run name and storage path) and the MLflow run continues instead of being duplicated.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from farm import registry, store
from farm.errors import FarmError
from farm.ray_utils import ensure_ray, storage_for_ray
from farm.specs import DistillJob, TrainJob, resolved

FAULT_ENV = "FARM_FAULT_STOP_AFTER_EPOCH"
"""Fault injection for tests and drills: the run crashes right after this epoch's checkpoint."""


class InjectedFault(RuntimeError):
    """Raised by the fault-injection hook to simulate a crash."""


@dataclass
class TrainResult:
    name: str
    run_name: str
    mlflow_run_id: str
    version: str
    metrics: dict[str, float]
    checkpoint_dir: str
    resumed_from_epoch: int
    seconds: float


def spec_hash(job: TrainJob) -> str:
    return hashlib.sha256(json.dumps(resolved(job), sort_keys=True).encode()).hexdigest()[:12]


def _index_url(job: TrainJob) -> str:
    return store.join(store.home(), "train", job.name, f"{spec_hash(job)}.json")


def _read_index(job: TrainJob) -> dict[str, Any] | None:
    url = _index_url(job)
    return json.loads(store.read_text(url)) if store.exists(url) else None


def _write_index(job: TrainJob, entry: dict[str, Any]) -> None:
    store.write_text(_index_url(job), json.dumps(entry, indent=2))


def worker_report(config: dict[str, Any]) -> Callable[[dict[str, float], str | None], None]:
    """A rank's report(metrics, checkpoint_dir): MLflow (rank 0), ray.train.report, fault hook."""
    import ray.train
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    rank = ray.train.get_context().get_world_rank()
    mlflow = MlflowClient(tracking_uri=config["tracking_uri"]) if rank == 0 else None
    stop_after = config.get("stop_after_epoch")
    # a run resumed from an older checkpoint than its last logged epoch logs each epoch once
    logged = (
        max(
            (m.step for m in mlflow.get_metric_history(config["mlflow_run_id"], "epoch")), default=0
        )
        if mlflow is not None
        else 0
    )

    def report(metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        if mlflow is not None and metrics["epoch"] > logged:
            now = int(time.time() * 1000)
            mlflow.log_batch(
                config["mlflow_run_id"],
                metrics=[
                    Metric(k, float(v), now, int(metrics["epoch"])) for k, v in metrics.items()
                ],
            )
        ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=ckpt)
        if stop_after is not None and metrics["epoch"] >= stop_after:
            raise InjectedFault(
                f"{FAULT_ENV}={stop_after}: simulated crash after epoch {stop_after}"
            )

    return report


def _train_worker(config: dict[str, Any]) -> None:
    """Per-rank Ray Train function: plain PyTorch fit() plus report/get_checkpoint."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from models.config import ModelConfig, OptimConfig
    from models.training import TrainData, fit

    arrays = ray.get(config["data_ref"])
    train = TrainData(torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["c_train"]))
    val = TrainData(torch.from_numpy(arrays["x_val"]), torch.from_numpy(arrays["c_val"]))
    checkpoint = ray.train.get_checkpoint()
    kwargs = dict(device=ray.train.torch.get_device(), card=config["card"])
    model_cfg = ModelConfig.model_validate(config["model"])
    optim_cfg = OptimConfig.model_validate(config["optim"])
    send = worker_report(config)
    score = config.get("fidelity")  # farm.fidelity.FidelityScorer (tune searches) or None

    def report(metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        """Checkpoints (rank 0 only) due for scoring get fidelity.* metrics before they leave."""
        if score is not None and checkpoint_dir and score.due(metrics["epoch"], optim_cfg.epochs):
            metrics = {**metrics, **score(checkpoint_dir, arrays["x_val"], arrays["c_val"])}
        send(metrics, checkpoint_dir)

    if checkpoint is None:
        fit(model_cfg, optim_cfg, train, val, report, **kwargs)
    else:
        with checkpoint.as_directory() as resume_dir:
            fit(model_cfg, optim_cfg, train, val, report, resume_from=resume_dir, **kwargs)


def _use_gpu(job: TrainJob) -> bool:
    import ray

    if job.resources.use_gpu == "auto":
        return ray.cluster_resources().get("GPU", 0) >= job.resources.workers
    return bool(job.resources.use_gpu)


@dataclass
class PreparedData:
    """A job's showers or jets, their split, the arrays the workers train on, the model config."""

    dataset: Any
    parts: dict[str, Any]
    arrays: dict[str, np.ndarray]
    model_config: Any


def prepare_data(
    job: TrainJob | DistillJob, data_spec: Any = None, model_config: Any = None
) -> PreparedData:
    """Load and split a job's data (or `data_spec`); fill in data-dependent model settings."""
    from farm.data.sources import load_dataset, split

    data_spec = data_spec or job.data
    dataset = load_dataset(data_spec)
    parts = split(dataset, data_spec)
    model_config = (model_config or job.model).model_copy(deep=True)
    prep = model_config.preprocessing
    if getattr(prep, "kind", None) == "shower" and prep.layer_sizes is None:
        prep.layer_sizes = [layer.n_voxels for layer in dataset.geometry.active_layers]
    x_train, c_train = parts["train"].model_inputs()
    x_val, c_val = parts["val"].model_inputs()
    arrays = {"x_train": x_train, "c_train": c_train, "x_val": x_val, "c_val": c_val}
    return PreparedData(dataset, parts, arrays, model_config)


def data_tags(dataset: Any) -> dict[str, str]:
    """Registry tags describing what a model generates (geometry for showers, process for jets)."""
    if dataset.kind == "jets":
        process = dataset.provenance.get("process", "unknown")
        return {"farm.data": "jets", "farm.jets": f"{process},{dataset.n_particles}"}
    return {"farm.data": "showers", "farm.geometry": dataset.geometry.name}


def build_trainer(
    job: TrainJob,
    *,
    run_name: str,
    mlflow_run_id: str,
    data_ref: Any,
    model_config: Any,
    card: dict[str, Any],
    storage_url: str,
    tracking_uri: str,
    stop_after_epoch: int | None = None,
    callbacks: list | None = None,
    worker: Callable[[dict[str, Any]], None] | None = None,
    extra_config: dict[str, Any] | None = None,
):
    """The TorchTrainer running `worker` (default _train_worker) for a job; Ray Train restores
    `run_name` if it exists. `extra_config` joins the per-worker config."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage_path, storage_fs = storage_for_ray(storage_url)
    return TorchTrainer(
        worker or _train_worker,
        train_loop_config={
            **(extra_config or {}),
            "data_ref": data_ref,
            "model": model_config.model_dump(mode="json"),
            "optim": job.optim.model_dump(mode="json"),
            "card": card,
            "tracking_uri": tracking_uri,
            "mlflow_run_id": mlflow_run_id,
            "stop_after_epoch": stop_after_epoch,
        },
        scaling_config=ScalingConfig(
            num_workers=job.resources.workers,
            use_gpu=_use_gpu(job),
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
    )


@dataclass
class JobPlan:
    """What differs between a train and a distill job: data, model, worker and bookkeeping."""

    data_spec: Any
    model_config: Any
    worker: Callable[[dict[str, Any]], None] | None = None
    extra_config: dict[str, Any] | None = None
    card: dict[str, Any] | None = None
    tags: dict[str, str] | None = None


def plan_job(job: TrainJob | DistillJob) -> JobPlan:
    """Resolve what a job trains on and with which worker (a distill job resolves its teacher)."""
    if isinstance(job, DistillJob):
        from farm.distill import distill_worker, resolve_teacher

        teacher = resolve_teacher(job)
        return JobPlan(
            teacher.data_spec,
            teacher.config,
            worker=distill_worker,
            extra_config={
                "teacher_files": teacher.files,
                "distill": job.distill.model_dump(mode="json"),
            },
            card={"teacher": teacher.ref},
            tags={"farm.teacher": teacher.ref},
        )
    return JobPlan(job.data, job.model)


def run_training(
    job: TrainJob | DistillJob,
    *,
    new: bool = False,
    on_start: Callable[[str, int], None] | None = None,
) -> TrainResult:
    """Train or distil (or resume) a job with Ray Train, then register the result in MLflow."""
    import ray

    t0 = time.perf_counter()
    home = store.home()
    store.check_writable(home)
    c = registry.client()
    entry = None if new else _read_index(job)
    resuming = entry is not None and entry.get("status") != "finished"
    if not resuming:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        run_name = f"{job.name}-{stamp}-{spec_hash(job)[:6]}"
        run = c.create_run(
            registry.experiment_id(job.name),
            run_name=run_name,
            tags={"farm.job": job.name, "farm.spec_hash": spec_hash(job)},
        )
        entry = {"run_name": run_name, "mlflow_run_id": run.info.run_id, "status": "running"}
        _log_spec(c, run.info.run_id, job)
        _write_index(job, entry)
    run_name, run_id = entry["run_name"], entry["mlflow_run_id"]
    if on_start:
        on_start(run_id, job.optim.epochs)

    plan = plan_job(job)
    data = prepare_data(job, plan.data_spec, plan.model_config)
    dataset, parts = data.dataset, data.parts
    card = {
        "name": job.name,
        "data": {**dataset.provenance, "kind": dataset.kind},
        "job": resolved(job),
        "mlflow_run_id": run_id,
        "ray_run": run_name,
        **(plan.card or {}),
    }
    ensure_ray()
    stop_after = os.environ.get(FAULT_ENV)
    trainer = build_trainer(
        job,
        run_name=run_name,
        mlflow_run_id=run_id,
        data_ref=ray.put(data.arrays),
        model_config=data.model_config,
        card=card,
        storage_url=store.join(home, "ray"),
        tracking_uri=registry.tracking_uri(),
        stop_after_epoch=int(stop_after) if stop_after else None,
        worker=plan.worker,
        extra_config=plan.extra_config,
    )
    try:
        result = trainer.fit()
    except Exception as exc:
        entry["status"] = "failed"
        _write_index(job, entry)
        c.set_tag(run_id, "farm.status", "failed")
        cause = _root_cause(exc)
        raise FarmError(
            f"training {run_name} failed ({cause}); run `farm train` with the same job to resume "
            "from its last checkpoint"
        ) from None
    with result.checkpoint.as_directory() as ckpt_dir:
        local = tempfile.mkdtemp(prefix="farm-final-")
        import shutil

        shutil.copytree(ckpt_dir, local, dirs_exist_ok=True)
    for name in ("train_state.safetensors", "train_state.json"):
        with_path = os.path.join(local, name)
        if os.path.exists(with_path):
            os.remove(with_path)  # the registered model holds only what generation needs
    _log_validation(c, run_id, local, parts["val"], job.validation_events, job.optim.seed)
    tags = {
        "farm.job": job.name,
        "farm.run": run_name,
        **data_tags(dataset),
        **(plan.tags or {}),
        "farm.gates": json.dumps(
            {k: v.model_dump(exclude_none=True) for k, v in job.gates.items()}
        ),
        **job.tags,
    }
    mv = registry.register(
        job.name, run_id, local, aliases=job.aliases, tags=tags, description=job.description
    )
    c.set_terminated(run_id)
    entry.update(status="finished", version=mv.version)
    _write_index(job, entry)
    return TrainResult(
        job.name,
        run_name,
        run_id,
        mv.version,
        dict(result.metrics or {}),
        local,
        resumed_from_epoch=int((result.metrics or {}).get("resumed_from_epoch", 0)),
        seconds=time.perf_counter() - t0,
    )


def _root_cause(exc: BaseException) -> str:
    """The innermost error message of a (Ray-wrapped) exception chain, on one line."""
    text = str(exc).strip().splitlines()
    for line in reversed(text):
        if line.strip() and ("Error" in line or "Fault" in line):
            return line.strip()[:300]
    return (text[-1] if text else type(exc).__name__)[:300]


def _log_spec(c, run_id: str, job: TrainJob) -> None:
    """Params (flattened) and the resolved spec as an artifact."""
    import yaml

    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = value

    spec = resolved(job)
    keys = ("data", "teacher", "model", "distill", "optim", "resources")
    walk("", {k: spec[k] for k in keys if spec.get(k) is not None})
    from mlflow.entities import Param

    c.log_batch(run_id, params=[Param(k, str(v)[:500]) for k, v in flat.items()])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "job.yaml")
        with open(path, "w") as fh:
            yaml.safe_dump(spec, fh, sort_keys=False)
        c.log_artifact(run_id, path)


def _log_validation(c, run_id: str, ckpt_dir: str, val, n_events: int, seed: int) -> None:
    """Generate validation-condition samples; log loss curves and physics plots and figures."""
    if n_events <= 0:
        return
    if val.kind == "jets":
        _log_jet_validation(c, run_id, ckpt_dir, val, n_events, seed)
        return
    import torch

    from farm.plots import training_validation_figure
    from models.checkpoint import load_model

    model = load_model(ckpt_dir)
    n = min(n_events, len(val.e_inc))
    gen = torch.Generator().manual_seed(seed)
    e_inc = torch.from_numpy(val.e_inc[:n]).reshape(-1, 1)
    generated = model.generate(e_inc, generator=gen).numpy()
    history = {
        k: [m.value for m in sorted(c.get_metric_history(run_id, k), key=lambda m: m.step)]
        for k in ("train_loss", "val_loss")
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "validation.png")
        training_validation_figure(
            history, val.showers[:n], generated, val.e_inc[:n], val.geometry, path
        )
        c.log_artifact(run_id, path)
    ratio_ref = val.showers[:n].sum(1) / val.e_inc[:n]
    ratio_gen = generated.sum(1) / val.e_inc[:n]
    c.log_metric(run_id, "val_mean_e_ratio_generated", float(np.mean(ratio_gen)))
    c.log_metric(run_id, "val_mean_e_ratio_reference", float(np.mean(ratio_ref)))


def _log_jet_validation(c, run_id: str, ckpt_dir: str, val, n_events: int, seed: int) -> None:
    """Jets for the validation jets' (pT, eta, count): JetNet metrics and plots into the run."""
    import torch

    from farm.evaluation.evaluate import evaluate_jets
    from farm.evaluation.jet_features import jet_kinematics
    from farm.generation import jet_conditions, jets_from_model
    from models.checkpoint import load_model

    model = load_model(ckpt_dir)
    reference = val.subset(np.arange(min(n_events, len(val)))).as_dict()
    generated = jets_from_model(
        model, *jet_conditions(reference), generator=torch.Generator().manual_seed(seed)
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate_jets(reference, generated, out_url=tmp, seed=seed, classifier=False)
        c.log_artifacts(run_id, tmp, artifact_path="validation")
    for key in ("w1m", "w1p", "fpd", "sep/mass"):
        if key in result.metrics:
            c.log_metric(run_id, f"val_{key.replace('/', '_')}", result.metrics[key]["value"])
    for name, jets in (("generated", generated), ("reference", reference)):
        mass = jet_kinematics(jets["constituents"], None, *jet_conditions(jets)[:2])["mass"]
        c.log_metric(run_id, f"val_median_mass_{name}", float(np.median(mass)))
