"""The YAML examples in docs/models.md validate against the model, optimiser and distill configs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from models.config import ModelConfig, OptimConfig
from models.distill import DistillConfig
from models.generative import GenerativeModel


def test_docs_yaml_blocks_validate():
    text = (Path(__file__).parents[2] / "docs" / "models.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    assert len(blocks) == 5
    for block in blocks:
        OptimConfig.model_validate(block["optim"])
        if "model" in block:
            config = ModelConfig.model_validate(block["model"])
            dim, cond_dim = (90, 3) if config.network.kind == "epic" else (368, 1)
            if config.preprocessing.kind == "shower":  # farm fills layer_sizes from the geometry
                config = config.model_copy(
                    update={
                        "preprocessing": config.preprocessing.model_copy(
                            update={"layer_sizes": [8, 160, 190, 5, 5]}
                        )
                    }
                )
            GenerativeModel(config, dim, cond_dim)
        else:
            DistillConfig.model_validate(block["distill"])
