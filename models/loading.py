"""Models of either kind built from a config, or rebuilt from a checkpoint folder (never a pickle)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from models.checkpoint import WEIGHTS, read_card
from models.config import (
    AnyModelConfig,
    PointShowerConfig,
    SetModelConfig,
    TwoStageConfig,
    parse_model_config,
)
from models.generative import GenerativeModel
from models.points import PointShowerModel
from models.set_model import SetModel
from models.two_stage.model import TwoStageModel


def build_model(
    config: AnyModelConfig, dim: int, cond_dim: int
) -> GenerativeModel | TwoStageModel | PointShowerModel | SetModel:
    """An untrained model of the config's kind for data of `dim` features and `cond_dim` conditions."""
    if isinstance(config, TwoStageConfig):
        return TwoStageModel(config, dim, cond_dim)
    if isinstance(config, PointShowerConfig):
        return PointShowerModel(config, dim, cond_dim)
    if isinstance(config, SetModelConfig):
        return SetModel(config, dim, cond_dim)
    return GenerativeModel(config, dim, cond_dim)


def load_model(
    directory: str | Path, device: str | torch.device = "cpu"
) -> GenerativeModel | TwoStageModel | PointShowerModel | SetModel:
    """Rebuild a model of either kind from model.json and load weights.safetensors (strict, no pickle)."""
    card = read_card(directory)
    model = build_model(parse_model_config(card["config"]), card["dim"], card["cond_dim"])
    model.load_state_dict(load_file(str(Path(directory) / WEIGHTS)), strict=True)
    return model.to(device).eval()
