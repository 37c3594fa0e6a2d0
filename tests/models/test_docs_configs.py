"""The YAML examples in docs/models.md validate against the model, optimiser and distill configs
and build (geometry-derived fields filled as farm fills them)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from models.config import OptimConfig, TwoStageConfig, parse_model_config, with_geometry
from models.distill import DistillConfig
from models.loading import build_model

DS1_PHOTONS = [(1, 8), (10, 16), (10, 19), (1, 5), (1, 5)]
DS2 = [(16, 9)] * 45


def test_docs_yaml_blocks_validate():
    text = (Path(__file__).parents[2] / "docs" / "models.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    assert len(blocks) == 6
    kinds = set()
    for block in blocks:
        OptimConfig.model_validate(block["optim"])
        if "model" not in block:
            DistillConfig.model_validate(block["distill"])
            continue
        config = parse_model_config(block["model"])
        kinds.add(type(config).__name__)
        if isinstance(config, TwoStageConfig):
            build_model(with_geometry(config, DS2), 6480, 1)
        elif config.network.kind == "epic":
            build_model(config, 90, 3)
        else:
            build_model(with_geometry(config, DS1_PHOTONS), 368, 1)
    assert kinds == {"ModelConfig", "TwoStageConfig"}
