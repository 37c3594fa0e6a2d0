"""Typed configuration of a generative model and its training (pydantic, unknown keys rejected).

Each network, process and preprocessing config carries a `kind` and a `build(...)`; the unions
below are the single place a new kind is registered.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    model_serializer,
    model_validator,
)

from models.cardinality import CardinalityConfig
from models.networks.epic import EPiCConfig
from models.networks.mlp import MLPConfig
from models.networks.pointcloud import PointCloudTransformerConfig
from models.networks.voxel import VoxelTransformerConfig
from models.preprocessing import (
    PointCloudPreprocessingConfig,
    ShowerPreprocessingConfig,
    StandardPreprocessingConfig,
    omit_defaults,
)
from models.processes.consistency import ConsistencyConfig
from models.processes.edm import EDMConfig
from models.processes.flow_matching import RectifiedFlow
from models.processes.sde import SubVPSDEConfig, VESDEConfig, VPSDEConfig
from models.set_preprocessing import SetPreprocessingConfig
from models.stage_preprocessing import (
    LayerEnergyPreprocessingConfig,
    ShowerStagesConfig,
    VoxelShapePreprocessingConfig,
)


class FlowMatchingConfig(BaseModel):
    """Conditional flow matching, linear path (rectified flow)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["flow_matching"] = "flow_matching"
    ot: bool = False

    def build(self) -> RectifiedFlow:
        """The process object."""
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
    ShowerPreprocessingConfig
    | StandardPreprocessingConfig
    | PointCloudPreprocessingConfig
    | LayerEnergyPreprocessingConfig
    | VoxelShapePreprocessingConfig,
    Field(discriminator="kind"),
]


class SamplerConfig(BaseModel):
    """Default sampler of a model: name, network evaluations (NFE) and options.

    `name` is one the process offers (None = the process's default_sampler); `options` are sampler
    keyword arguments (e.g. snr, s_churn, rtol).
    """

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    nfe: int = Field(20, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(BaseModel):
    """Architecture, process, preprocessing and default sampler: everything to rebuild a model.

    `kind` may be omitted (single-stage is the default) and is left out of dumps, so cards and
    spec hashes written before two-stage models existed are unchanged.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["single_stage"] = Field("single_stage", exclude=True)
    network: NetworkConfig = Field(default_factory=MLPConfig)
    process: ProcessConfig = Field(default_factory=FlowMatchingConfig)
    preprocessing: PreprocessingConfig = Field(default_factory=ShowerPreprocessingConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)


class StageConfig(BaseModel):
    """One stage of a two-stage model: its network, process and default sampler."""

    model_config = ConfigDict(extra="forbid")
    network: NetworkConfig = Field(default_factory=MLPConfig)
    process: ProcessConfig = Field(default_factory=FlowMatchingConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)


class TwoStageConfig(BaseModel):
    """A two-stage shower model (CaloDREAM, arXiv:2405.09629): energies, then shapes.

    The energy stage models the layer energies (so E_tot) given E_inc, the shape stage the voxels'
    shares of their layer energies given E_inc and the layer energies.

    `network`, `process` and `sampler` name the shape stage's (the one a campaign's `sampler`
    and `nfe` override), so code written for single-stage configs reads them unchanged.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["two_stage"] = "two_stage"
    preprocessing: ShowerStagesConfig = Field(default_factory=ShowerStagesConfig)
    energy: StageConfig = Field(default_factory=StageConfig)
    shape: StageConfig = Field(default_factory=StageConfig)

    @property
    def network(self) -> NetworkConfig:
        """The shape stage's network."""
        return self.shape.network

    @property
    def process(self) -> ProcessConfig:
        """The shape stage's process."""
        return self.shape.process

    @property
    def sampler(self) -> SamplerConfig:
        """The shape stage's default sampler."""
        return self.shape.sampler

    def stage(self, name: Literal["energy", "shape"]) -> ModelConfig:
        """A stage as a single-stage ModelConfig (its network, process, sampler, preprocessing)."""
        stage = self.energy if name == "energy" else self.shape
        preprocessing = (
            self.preprocessing.energy() if name == "energy" else self.preprocessing.shape()
        )
        return ModelConfig(
            network=stage.network,
            process=stage.process,
            preprocessing=preprocessing,
            sampler=stage.sampler,
        )


POINT_FEATURES = 4
"""Features of a shower hit as point-cloud models see it: x, y (mm), layer (index), E (MeV)."""


def _default_hits() -> ModelConfig:
    return ModelConfig(
        network=EPiCConfig(n_features=POINT_FEATURES),
        process=EDMConfig(),
        preprocessing=PointCloudPreprocessingConfig(
            n_features=POINT_FEATURES, log_features=[POINT_FEATURES - 1]
        ),
    )


class PointShowerConfig(BaseModel):
    """A point-cloud shower model (CaloClouds, arXiv:2305.04847): the count, then the hits.

    `cardinality` draws the number of hits given E_inc; `hits` is a permutation-equivariant
    model of (x, y, layer, E) per hit conditioned on [E_inc, count] (EPiC or the point-cloud
    transformer, masks from the count). `network`, `process` and `sampler` name the hits model's,
    so campaigns and distillation read them as for a single-stage model.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["point_showers"] = "point_showers"
    hits: ModelConfig = Field(default_factory=_default_hits)
    cardinality: CardinalityConfig = Field(default_factory=CardinalityConfig)

    @property
    def network(self) -> NetworkConfig:
        """The hits model's network."""
        return self.hits.network

    @property
    def process(self) -> ProcessConfig:
        """The hits model's process."""
        return self.hits.process

    @property
    def sampler(self) -> SamplerConfig:
        """The hits model's default sampler."""
        return self.hits.sampler

    @property
    def preprocessing(self) -> PreprocessingConfig:
        """The hits model's preprocessing."""
        return self.hits.preprocessing


class SetModelConfig(BaseModel):
    """A set-to-set model (Parnassus, arXiv:2406.01620): reco candidates given truth particles.

    Flow matching in two stages (`models.sets`): the event-level flow (reco multiplicity, MET,
    HT), then the transformer over reco tokens with cross-attention to truth; sizes of the sets
    come from the data (dim = reco slots * 4, cond_dim = truth slots * 5). With `condition:
    scattered_electron` (EIC, DIS events) the condition is the scattered electron's (E, pT, eta,
    phi), plus (x, Q^2, y) with `dis_kinematics`: cond_dim 4 or 7, one condition token.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["sets"] = "sets"
    width: int = Field(64, ge=8)
    heads: int = Field(4, ge=1)
    layers: int = Field(2, ge=1)
    condition: Literal["truth_set", "scattered_electron"] = Field(
        "truth_set",
        description="what the reco set is generated given: the truth set, or (DIS) the "
        "scattered electron's kinematics",
    )
    dis_kinematics: bool = Field(
        False, description="scattered_electron: also condition on x, Q^2 and y of the event"
    )
    preprocessing: SetPreprocessingConfig = Field(default_factory=SetPreprocessingConfig)
    sampler: SamplerConfig = Field(default_factory=lambda: SamplerConfig(name="midpoint"))

    @model_validator(mode="after")
    def _condition(self) -> SetModelConfig:
        if self.dis_kinematics and self.condition != "scattered_electron":
            raise ValueError(
                "dis_kinematics: true needs condition: scattered_electron (a truth-set model "
                "takes no event-level condition)"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        return omit_defaults(self, handler(self), ("condition", "dis_kinematics"))

    @property
    def process(self) -> FlowMatchingConfig:
        """The process of both stages (flow matching; what campaigns check samplers against)."""
        return FlowMatchingConfig()


def _model_kind(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("kind", "single_stage")
    return getattr(value, "kind", "single_stage")


AnyModelConfig = Annotated[
    Annotated[ModelConfig, Tag("single_stage")]
    | Annotated[TwoStageConfig, Tag("two_stage")]
    | Annotated[PointShowerConfig, Tag("point_showers")]
    | Annotated[SetModelConfig, Tag("sets")],
    Discriminator(_model_kind),
]
"""A model of any kind: `kind: two_stage`, `point_showers`, `sets`, or single-stage (kind omitted)."""

_ANY_MODEL = TypeAdapter(AnyModelConfig)


def parse_model_config(doc: Any) -> ModelConfig | TwoStageConfig:
    """Validate a `model:` block or a card's `config` as a model config of either kind."""
    return _ANY_MODEL.validate_python(doc)


def _voxel_network_with(network: NetworkConfig, layer_shapes: list[tuple[int, int]]):
    if network.kind != "voxel_transformer" or network.layer_shapes or network.layer_sizes:
        return network
    return network.model_copy(update={"layer_shapes": [tuple(s) for s in layer_shapes]})


def _preprocessing_with(preprocessing: BaseModel, layer_shapes: list[tuple[int, int]]):
    if getattr(preprocessing, "layer_sizes", "absent") is not None:
        return preprocessing
    return preprocessing.model_copy(update={"layer_sizes": [a * r for a, r in layer_shapes]})


def with_geometry(
    config: ModelConfig | TwoStageConfig, layer_shapes: list[tuple[int, int]]
) -> ModelConfig | TwoStageConfig:
    """A copy with the geometry-derived fields that are unset filled in.

    Args:
        config: A model config of either kind.
        layer_shapes: (angular, radial) bins of each active layer, in voxel order.

    Returns:
        The config with `preprocessing.layer_sizes` (showers) and the voxel transformer's
        `layer_shapes` (the network of a single-stage model, the shape stage's of a two-stage
        one) set wherever they were None; fields already set are kept.
    """
    pre = _preprocessing_with(config.preprocessing, layer_shapes)
    if isinstance(config, TwoStageConfig):
        shape = config.shape.model_copy(
            update={"network": _voxel_network_with(config.shape.network, layer_shapes)}
        )
        return config.model_copy(update={"preprocessing": pre, "shape": shape})
    network = _voxel_network_with(config.network, layer_shapes)
    return config.model_copy(update={"preprocessing": pre, "network": network})


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
