"""Checkpoints: weights.safetensors + model.json (architecture, process, preprocessing, provenance).

Loading (models.loading) never unpickles: tensors come from safetensors, everything else from
JSON.
Training state for resumption (raw weights, optimizer, RNG) lives beside it in
train_state.safetensors + train_state.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT = "farm-model/1"
WEIGHTS, CARD = "weights.safetensors", "model.json"
STATE_TENSORS, STATE_JSON = "train_state.safetensors", "train_state.json"


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def save_model(
    model: nn.Module,
    directory: str | Path,
    card: dict[str, Any] | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write weights.safetensors (model.state_dict() unless given) and model.json into `directory`.

    `model` is a GenerativeModel or TwoStageModel (anything with `config`, `dim`, `cond_dim`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous(state_dict or model.state_dict()), str(directory / WEIGHTS))
    doc = {
        "format": FORMAT,
        "config": model.config.model_dump(mode="json"),
        "dim": model.dim,
        "cond_dim": model.cond_dim,
        **(card or {}),
    }
    (directory / CARD).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))


def read_card(directory: str | Path) -> dict[str, Any]:
    """The model card (model.json) of a checkpoint directory."""
    doc = json.loads((Path(directory) / CARD).read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(
            f"{directory}/{CARD}: unknown format {doc.get('format')!r}, expected {FORMAT}"
        )
    return doc


def optimizer_to_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten torch optimizer state into safetensors-able tensors + JSON-able metadata."""
    tensors, scalars = {}, {}
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"opt.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of optimizer_to_tensors."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_train_state(directory: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write the resume state (raw weights, optimiser) beside a checkpoint."""
    directory = Path(directory)
    save_file(_contiguous(tensors), str(directory / STATE_TENSORS))
    (directory / STATE_JSON).write_text(json.dumps(meta, indent=2, default=str))


def load_train_state(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read the resume state written by `save_train_state`."""
    directory = Path(directory)
    return load_file(str(directory / STATE_TENSORS)), json.loads(
        (directory / STATE_JSON).read_text()
    )
