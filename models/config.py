"""Typed configuration of a generative model and its training (pydantic, unknown keys rejected).

Each network, process and preprocessing config carries a `kind` and a `build(...)`; the unions
below are the single place a new kind is registered.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.networks.epic import EPiCConfig
from models.networks.mlp import MLPConfig
from models.networks.pointcloud import PointCloudTransformerConfig
from models.networks.voxel import VoxelTransformerConfig
from models.preprocessing import (
    PointCloudPreprocessingConfig,
    ShowerPreprocessingConfig,
    StandardPreprocessingConfig,
)
from models.processes.consistency import ConsistencyConfig
from models.processes.edm import EDMConfig
from models.processes.flow_matching import RectifiedFlow
from models.processes.sde import SubVPSDEConfig, VESDEConfig, VPSDEConfig


class FlowMatchingConfig(BaseModel):
    """Conditional flow matching, linear path (rectified flow)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["flow_matching"] = "flow_matching"
    ot: bool = False

    def build(self) -> RectifiedFlow:
        return RectifiedFlow(ot=self.ot)


NetworkConfig = Annotated[
    MLPConfig | PointCloudTransformerConfig | EPiCConfig | VoxelTransformerConfig,
    Field(discriminator="kind"),
]
ProcessConfig = Annotated[
    FlowMatchingConfig | VESDEConfig | VPSDEConfig | SubVPSDEConfig | EDMConfig | ConsistencyConfig,
    Field(discriminator="kind"),
]
PreprocessingConfig = Annotated[
    ShowerPreprocessingConfig | StandardPreprocessingConfig | PointCloudPreprocessingConfig,
    Field(discriminator="kind"),
]


class SamplerConfig(BaseModel):
    """Default sampler of a model: name (one the process offers; None = the process's
    default_sampler), network evaluations, and sampler options (e.g. snr, s_churn, rtol)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    nfe: int = Field(20, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(BaseModel):
    """Architecture, process, preprocessing and default sampler: everything to rebuild a model."""

    model_config = ConfigDict(extra="forbid")
    network: NetworkConfig = Field(default_factory=MLPConfig)
    process: ProcessConfig = Field(default_factory=FlowMatchingConfig)
    preprocessing: PreprocessingConfig = Field(default_factory=ShowerPreprocessingConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)


class OptimConfig(BaseModel):
    """AdamW with linear warm-up and cosine decay, EMA weights, gradient clipping."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(100, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0.0, le=1.0)
    grad_clip: float | None = Field(1.0, gt=0.0)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    seed: int = 0
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    checkpoint_every: int = Field(1, ge=1)
