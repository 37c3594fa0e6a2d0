"""`farm train` jobs of kind distill: consistency distillation (Song et al. 2023, arXiv:2303.01469)
of a registered teacher on one Ray Train worker; the student is registered like any trained model.

The teacher is resolved once (an alias is pinned to its version) and travels to the worker as the
bytes of its checkpoint files (safetensors + model.json), never as a pickle. Without a `data`
block the student sees the teacher's own training data and split, read from its model card.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

from farm import registry
from farm.errors import FarmError
from farm.specs import DataSpec, DistillJob


@dataclass
class Teacher:
    """A resolved teacher: NAME/VERSION, its completed model config, data spec and files."""

    ref: str
    config: Any
    data_spec: Any
    files: dict[str, bytes]


def resolve_teacher(job: DistillJob) -> Teacher:
    """Resolve and download the teacher; refuse teachers distillation cannot use."""
    from pydantic import TypeAdapter

    from models.checkpoint import read_card
    from models.config import ModelConfig

    path, mv = registry.download(job.teacher)
    card = read_card(path)
    config = ModelConfig.model_validate(card["config"])
    if config.process.kind == "consistency":
        raise FarmError(
            f"teacher {job.teacher} ({mv.name}/{mv.version}) is already a consistency model; "
            "distil a diffusion or flow-matching model"
        )
    data = job.data
    if data is None:
        data_doc = (card.get("job") or {}).get("data")
        if data_doc is None:
            raise FarmError(
                f"teacher {mv.name}/{mv.version} records no training data in its card; give the "
                "distill job a 'data' block"
            )
        data = TypeAdapter(DataSpec).validate_python(data_doc)
    files = {}
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), "rb") as fh:
            files[name] = fh.read()
    return Teacher(f"{mv.name}/{mv.version}", config, data, files)


def distill_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: rebuild the teacher from its files, run models.distill.distill."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from farm.train import worker_report
    from models.checkpoint import load_model
    from models.config import OptimConfig
    from models.distill import DistillConfig, distill
    from models.training import TrainData

    arrays = ray.get(config["data_ref"])
    train = TrainData(torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["c_train"]))
    val = TrainData(torch.from_numpy(arrays["x_val"]), torch.from_numpy(arrays["c_val"]))
    device = ray.train.torch.get_device()
    with tempfile.TemporaryDirectory(prefix="farm-teacher-") as tmp:
        for name, blob in config["teacher_files"].items():
            with open(os.path.join(tmp, name), "wb") as fh:
                fh.write(blob)
        teacher = load_model(tmp, device=str(device))
    # a restarted distillation begins again from the teacher (runs are short; documented)
    distill(
        teacher,
        DistillConfig.model_validate(config["distill"]),
        OptimConfig.model_validate(config["optim"]),
        train,
        worker_report(config),
        val=val,
        device=device,
        card=config["card"],
    )
