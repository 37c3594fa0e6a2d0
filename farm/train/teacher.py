"""Distillation teachers: a registered version resolved once, checked, sent as its files' bytes.

Consistency distillation (Song et al. 2023, arXiv:2303.01469) of a registered teacher runs on one
Ray Train worker; the teacher travels to it as the bytes of its checkpoint files (safetensors +
model.json), never as a pickle. Without a `data` block the student sees the teacher's own
training data and split, read from its model card.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from farm import registry
from farm.errors import FarmError
from farm.specs import DistillJob


@dataclass
class Teacher:
    """A resolved teacher: NAME/VERSION, its completed model config, data spec and files."""

    ref: str
    config: Any
    data_spec: Any
    files: dict[str, bytes]


def resolve_teacher(job: DistillJob) -> Teacher:
    """Resolve and download the teacher; refuse teachers distillation cannot use."""
    from models.config import TwoStageConfig, parse_model_config

    path, mv = registry.download(job.teacher)
    ref = f"{mv.name}/{mv.version}"
    card = registry.read_model_card(path, ref)
    config = parse_model_config(card.config)
    if isinstance(config, TwoStageConfig):
        stages = {name: getattr(config, name).process.kind for name in job.distill.stages}
        done = [name for name, kind in stages.items() if kind == "consistency"]
    else:
        done = ["model"] if config.process.kind == "consistency" else []
    if done:
        which = "" if done == ["model"] else f" (stage {', '.join(done)})"
        raise FarmError(
            f"teacher {job.teacher} ({ref}) is already a consistency model{which}; "
            "distil a diffusion or flow-matching model"
        )
    data = job.data
    if data is None:
        try:
            data = card.data_spec(ref)
        except FarmError as exc:  # none recorded, or a location farm may not read
            raise FarmError(f"{exc}; give the distill job a 'data' block") from None
    files = {}
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), "rb") as fh:
            files[name] = fh.read()
    return Teacher(ref, config, data, files)
