"""Typed job specs (pydantic, unknown keys rejected) and their loading with one-line errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from farm.errors import FarmError
from farm.samples import JET_POINT_FEATURES
from models.config import (
    POINT_FEATURES,
    AnyModelConfig,
    ModelConfig,
    OptimConfig,
    TwoStageConfig,
)
from models.distill import DistillConfig
from models.preprocessing import omit_defaults

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
Scalar = bool | int | float | str

# Bounds on what a job file may be, checked before anything is built from it; each error names
# its bound. A job names its data by URL and never holds it, so these are far above real jobs.
MAX_JOB_BYTES = 1_000_000
"""A job file's size."""
MAX_YAML_NODES = 100_000
"""YAML nodes (mappings, sequences, scalars) once every alias is expanded (alias bombs)."""
MAX_YAML_DEPTH = 64
"""Nesting depth of YAML collections."""
MAX_LIST = 10_000
"""Items of any list or mapping a spec takes (condition values, energies, tags, options, ...)."""
MAX_CAMPAIGN_EVENTS = 10**12
"""Events of one campaign (the farm is built for 10^6 to 10^9)."""
MAX_SHARDS = 1_000_000
"""Shards of one campaign (events / shard_size): the driver's queue and the manifest listing."""
MAX_DATA_EVENTS = 100_000_000
"""Events a training job generates (simulated showers, jets) or reads (max_events)."""
MAX_BATCH = 10_000_000
"""A sampling batch, validation subset or fidelity sample."""
MAX_WORKERS = 10_000
"""Ray Train workers, campaign actors, tune trials and concurrency."""
MAX_WRITERS = 64
"""Writer slots of one campaign actor."""


class Strict(BaseModel):
    """Base of every spec: unknown keys are rejected (extra="forbid")."""

    model_config = ConfigDict(extra="forbid")


class SplitSpec(Strict):
    """Deterministic train/validation/test split of the events, recorded in provenance."""

    train: float = Field(0.7, gt=0.0, lt=1.0)
    val: float = Field(0.1, gt=0.0, lt=1.0)
    seed: int = 0

    @model_validator(mode="after")
    def _fractions(self) -> SplitSpec:
        if self.train + self.val >= 1.0:
            raise ValueError(
                f"train + val must be < 1 (the rest is test), got {self.train + self.val}"
            )
        return self


class SimulatedShowersData(Strict):
    """Showers from farm's built-in parametrised simulator in a CaloChallenge geometry."""

    source: Literal["simulated_showers"] = "simulated_showers"
    geometry: str = "ds1-photons"
    events: int = Field(20_000, gt=0, le=MAX_DATA_EVENTS)
    seed: int = 0
    energies: list[float] | None = Field(None, max_length=MAX_LIST)
    split: SplitSpec = Field(default_factory=SplitSpec)


class StreamSpec(Strict):
    """How streamed training data is read: preprocessing subsample, validation cap, shuffling."""

    fit_events: int = Field(
        50_000,
        gt=0,
        le=MAX_DATA_EVENTS,
        description="training events (a seeded subsample) the preprocessing is fitted on",
    )
    val_events: int = Field(
        10_000,
        gt=0,
        le=MAX_DATA_EVENTS,
        description="validation events (a seeded subsample) held in memory for val_loss",
    )
    shuffle_buffer: int = Field(
        10_000,
        gt=0,
        le=MAX_DATA_EVENTS,
        description="events each worker shuffles among, reseeded every epoch",
    )
    block_events: int | None = Field(
        None,
        gt=0,
        le=MAX_DATA_EVENTS,
        description="events per read task (None: 16 MiB of float32 voxels; Parquet: row groups)",
    )
    seed: int = Field(0, ge=0, description="order of the read blocks and the per-epoch shuffles")


class CaloChallengeData(Strict):
    """Shower files: CaloChallenge HDF5 or farm Parquet, one file, a folder of shards or a campaign.

    `loading` picks how training reads them: `memory` (the driver loads every event and hands the
    arrays to the workers), `stream` (a Ray Dataset of row blocks, each worker reading its own
    shard; `farm.train.streaming`) or `auto` (stream when holding the events in memory would take
    more than half this machine's memory, recorded in the model card).
    """

    source: Literal["calochallenge"] = "calochallenge"
    url: str
    geometry: str = "ds1-photons"
    max_events: int | None = Field(None, gt=0, le=MAX_DATA_EVENTS)
    split: SplitSpec = Field(default_factory=SplitSpec)
    loading: Literal["auto", "memory", "stream"] = "auto"
    stream: StreamSpec = Field(default_factory=StreamSpec)


class SimulatedJetsData(Strict):
    """Jets from farm's Pythia 8 + FastJet generator (`farm data jets`), cached under FARM_HOME."""

    source: Literal["simulated_jets"] = "simulated_jets"
    process: Literal["gluon", "quark", "top", "w", "z"] = "top"
    events: int = Field(5_000, gt=0, le=MAX_DATA_EVENTS)
    seed: int = Field(1, ge=0)
    n_constituents: int = Field(30, ge=2, le=MAX_LIST)
    pt_hat_min: float = Field(900.0, gt=0)
    pt_hat_max: float = Field(1100.0, gt=0)
    shard_size: int = Field(
        500, gt=0, le=MAX_DATA_EVENTS, description="jets per cached shard (one Ray task each)"
    )
    split: SplitSpec = Field(default_factory=SplitSpec)

    @model_validator(mode="after")
    def _window(self) -> SimulatedJetsData:
        if self.pt_hat_min >= self.pt_hat_max:
            raise ValueError(f"pt_hat_min ({self.pt_hat_min:g}) must be < pt_hat_max")
        return self


class JetFileData(Strict):
    """JetNet-style jets (farm jets Parquet or HDF5): one file or a folder of shards, any URL."""

    source: Literal["jets"] = "jets"
    url: str
    max_events: int | None = Field(None, gt=0, le=MAX_DATA_EVENTS)
    split: SplitSpec = Field(default_factory=SplitSpec)


class SimulatedPointsData(Strict):
    """Point-cloud showers (hits) of a high-granularity geometry from farm's simulator."""

    source: Literal["simulated_points"] = "simulated_points"
    geometry: str = "ild-ecal-like"
    events: int = Field(5_000, gt=0, le=MAX_DATA_EVENTS)
    seed: int = 0
    energies: list[float] | None = Field(None, max_length=MAX_LIST)
    max_hits: int | None = Field(
        None, gt=0, le=MAX_LIST, description="hit slots of the model (None: the data's maximum)"
    )
    split: SplitSpec = Field(default_factory=SplitSpec)


class EventSets(Strict):
    """Set sizes of a set-to-set model: truth and reco slots, and what happens to bigger events."""

    max_truth: int | None = Field(
        None, gt=0, le=MAX_LIST, description="truth slots (None: the data's maximum)"
    )
    max_reco: int | None = Field(
        None, gt=0, le=MAX_LIST, description="reco slots (None: the data's maximum)"
    )
    truncate: bool = Field(
        False, description="keep the highest-pT particles of bigger events (else refuse them)"
    )


class SimulatedEventsData(EventSets):
    """Whole events from farm's Pythia 8 + synthetic particle flow (`farm data events`), cached."""

    source: Literal["simulated_events"] = "simulated_events"
    process: Literal["qcd", "ttbar", "dis"] = "ttbar"
    events: int = Field(2_000, gt=0, le=MAX_DATA_EVENTS)
    seed: int = Field(1, ge=0)
    pt_hat_min: float | None = Field(None, ge=0)
    pt_hat_max: float | None = Field(None, gt=0)
    mpi: bool = True
    shard_size: int = Field(
        500, gt=0, le=MAX_DATA_EVENTS, description="events per cached shard (one Ray task each)"
    )
    split: SplitSpec = Field(default_factory=SplitSpec)


class EventFileData(EventSets):
    """Whole events in farm's events Parquet (one file, a folder of shards or a campaign)."""

    source: Literal["events"] = "events"
    url: str
    max_events: int | None = Field(None, gt=0, le=MAX_DATA_EVENTS)
    split: SplitSpec = Field(default_factory=SplitSpec)


EVENT_SOURCES = ("simulated_events", "events")
SHOWER_SOURCES = ("simulated_showers", "calochallenge")
JET_SOURCES = ("simulated_jets", "jets")
POINT_SOURCES = ("simulated_points",)

DataSpec = Annotated[
    SimulatedShowersData
    | CaloChallengeData
    | SimulatedJetsData
    | JetFileData
    | SimulatedPointsData
    | SimulatedEventsData
    | EventFileData,
    Field(discriminator="source"),
]


class TrainResources(Strict):
    """Ray Train scaling: workers (DDP ranks), GPUs if present ('auto'), CPUs per worker."""

    workers: int = Field(2, ge=1, le=MAX_WORKERS)
    use_gpu: bool | Literal["auto"] = "auto"
    cpus_per_worker: float = Field(1, gt=0)
    max_failures: int = Field(0, ge=-1)


class Gate(Strict):
    """Promotion threshold on one evaluation metric (value must be <= max and/or >= min)."""

    max: float | None = None
    min: float | None = None


class RegisteredJob(Strict):
    """What every job that registers a model version has: its name, aliases, tags and gates."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    aliases: list[str] = Field(default_factory=lambda: ["candidate"], max_length=MAX_LIST)
    tags: dict[str, str] = Field(default_factory=dict, max_length=MAX_LIST)
    gates: dict[str, Gate] = Field(default_factory=dict, max_length=MAX_LIST)
    validation_events: int = Field(2000, ge=0, le=MAX_BATCH)

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, v: list[str]) -> list[str]:
        return check_aliases(v)


class TrainJob(RegisteredJob):
    """`farm train` job: data, model, optimiser, resources, and how the result is registered."""

    kind: Literal["train"] = "train"
    data: DataSpec = Field(default_factory=SimulatedShowersData)
    model: AnyModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    resources: TrainResources = Field(default_factory=TrainResources)

    @model_validator(mode="after")
    def _model_fits_data(self) -> TrainJob:
        check_model_for_data(self.model, self.data.source)
        check_event_condition(self.model, self.data)
        return self


def check_aliases(aliases: list[str]) -> list[str]:
    """Registry aliases: letters, digits, _ and -; never v<N> (MLflow reserves it)."""
    for alias in aliases:
        if not re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", alias) or re.match(r"^v\d+$", alias):
            raise ValueError(f"invalid alias {alias!r} (letters, digits, _ and -; not v<N>)")
    return aliases


def check_event_condition(model: Any, data: Any) -> None:
    """A set model conditioned on the scattered electron: DIS events, no truth slots."""
    if getattr(model, "condition", "truth_set") != "scattered_electron":
        return
    if getattr(data, "process", "dis") != "dis":
        raise ValueError(
            f"data.process: a model conditioned on the scattered electron needs DIS events "
            f"(process: dis), got {data.process!r}"
        )
    if data.max_truth is not None:
        raise ValueError(
            "data.max_truth: a model conditioned on the scattered electron takes no truth set; "
            "drop max_truth (max_reco sets its candidate slots, default 50)"
        )


def check_model_for_data(model: ModelConfig | TwoStageConfig, source: str) -> None:
    """Refuse model settings that cannot work with the data kind (named key, allowed values)."""
    if (source in EVENT_SOURCES) != (getattr(model, "kind", "") == "sets"):
        raise ValueError(
            f"model.kind: events (data.source one of {', '.join(EVENT_SOURCES)}) need 'sets', "
            "and a 'sets' model needs events data"
        )
    if source in EVENT_SOURCES:
        return
    prep, net = model.preprocessing, model.network
    points_model = getattr(model, "kind", "") == "point_showers"
    if (source in POINT_SOURCES) != points_model:
        raise ValueError(
            "model.kind: point-cloud showers (data.source simulated_points) need "
            "'point_showers', and a 'point_showers' model needs point-cloud data"
        )
    if points_model:
        for key, cfg in (("hits.preprocessing", prep), ("hits.network", net)):
            if getattr(cfg, "n_features", POINT_FEATURES) != POINT_FEATURES:
                raise ValueError(
                    f"model.{key}.n_features: hits have {POINT_FEATURES} features "
                    f"(x, y, layer, E), got {cfg.n_features}"
                )
        if prep.kind != "pointcloud":
            raise ValueError(f"model.hits.preprocessing.kind: 'pointcloud', got {prep.kind!r}")
        return
    if source in JET_SOURCES:
        if prep.kind != "pointcloud":
            raise ValueError(f"model.preprocessing.kind: jets need 'pointcloud', got {prep.kind!r}")
        for key, cfg in (("preprocessing", prep), ("network", net)):
            if getattr(cfg, "n_features", JET_POINT_FEATURES) != JET_POINT_FEATURES:
                raise ValueError(
                    f"model.{key}.n_features: jets have {JET_POINT_FEATURES} features per "
                    f"constituent (eta_rel, phi_rel, pt_rel), got {cfg.n_features}"
                )
            if not getattr(cfg, "count_cond", True):
                raise ValueError(
                    f"model.{key}.count_cond: jets condition on the constituent count; set true"
                )
    elif prep.kind == "pointcloud":
        raise ValueError(
            f"model.preprocessing.kind: 'pointcloud' needs jets data (data.source one of "
            f"{', '.join(JET_SOURCES)}); showers take 'shower' or 'standard'"
        )


class DistillResources(TrainResources):
    """Ray Train resources of a distillation: one worker (it is not data-parallel), GPU if present."""

    workers: int = Field(1, ge=1, le=MAX_WORKERS)

    @field_validator("workers")
    @classmethod
    def _one_worker(cls, v: int) -> int:
        if v != 1:
            raise ValueError(f"distillation runs on one worker, got {v}")
        return v


class DistillJob(RegisteredJob):
    """`farm train` job of kind distill: a registered teacher distilled into a new model.

    Consistency distillation (Song et al. 2023) of the teacher into a 1- or 2-step student,
    registered as a new model.
    """

    kind: Literal["distill"] = "distill"
    teacher: str = Field(description="NAME@ALIAS or NAME/VERSION, resolved once at start")
    data: DataSpec | None = Field(None, description="default: the teacher's training data")
    distill: DistillConfig = Field(default_factory=DistillConfig)
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig(lr=1e-4, warmup_steps=0))
    resources: DistillResources = Field(default_factory=DistillResources)

    @field_validator("teacher")
    @classmethod
    def _teacher(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z][A-Za-z0-9_-]*|/\d+)?$", v):
            raise ValueError(f"{v!r} is not NAME, NAME@ALIAS or NAME/VERSION")
        return v


PP_ONLY = ("pt_hat_min", "pt_hat_max", "sqrt_s")
"""PythiaTruth keys of the pp processes (qcd, ttbar)."""
DIS_ONLY = ("electron_energy", "proton_energy", "q2_min")
"""PythiaTruth keys of process dis."""


class PythiaTruth(Strict):
    """Truth events generated with Pythia 8 in each shard (`farm data events` options).

    None picks the process default of `farm.data.events.DEFAULTS`. The synthetic detector is not
    an option: a campaign's reco sets are the model's, the generated truth is what it keeps.
    """

    process: Literal["qcd", "ttbar", "dis"]
    pt_hat_min: float | None = Field(None, ge=0, description="GeV (default qcd 100, ttbar 0)")
    pt_hat_max: float | None = Field(None, gt=0, description="GeV (default: open)")
    sqrt_s: float = Field(13600.0, gt=0, description="pp centre-of-mass energy, GeV")
    electron_energy: float = Field(18.0, gt=0, description="dis electron beam, GeV")
    proton_energy: float = Field(275.0, gt=0, description="dis proton beam, GeV")
    q2_min: float = Field(10.0, gt=0, description="dis Q^2 lower bound, GeV^2")
    mpi: bool = Field(True, description="multiparton interactions")
    truth_pt_min: float | None = Field(
        None, ge=0, description="truth particles' pT cut, GeV (default pp 0.1, dis 0.05)"
    )
    truth_eta_max: float | None = Field(
        None, gt=0, description="truth particles' |eta| cut (default pp 5, dis 4.5)"
    )

    @model_validator(mode="after")
    def _process_keys(self) -> PythiaTruth:
        dis = self.process == "dis"
        for key in DIS_ONLY if not dis else PP_ONLY:
            if key in self.model_fields_set:
                takes = "process dis" if key in DIS_ONLY else "processes qcd, ttbar"
                raise ValueError(f"{key} applies to {takes}, not {self.process!r}")
        lo, hi = self.pt_hat_min, self.pt_hat_max
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"pt_hat_min ({lo}) must be below pt_hat_max ({hi})")
        return self  # with a process default (qcd: 100 GeV) the window is checked at submit

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """The keys of this process only, so a dumped block (campaign.json) validates again."""
        data = handler(self)
        for key in PP_ONLY if self.process == "dis" else DIS_ONLY:
            data.pop(key, None)
        return data


class EnergyConditions(Strict):
    """Campaign conditions: incident energies for showers, truth rows of a jets file for jets.

    Showers: incident energies, `discrete` (uniform over `values`), `log-uniform`/`uniform` in
    [min, max], or a `file` of truth energies. Jets: `jet-truth`, a jets file whose (pT, eta,
    constituent count) condition the events, row by row. Events: `event-truth`, a farm events
    file or folder whose truth sets condition the events (event i takes truth event i, cyclically),
    or `pythia`, truth events generated with Pythia 8 in each shard (`pythia` block, seeded by the
    shard); a model conditioned on the scattered electron takes the events' electron instead.
    """

    distribution: Literal[
        "discrete", "log-uniform", "uniform", "file", "jet-truth", "event-truth", "pythia"
    ] = "log-uniform"
    values: list[float] | None = Field(None, max_length=MAX_LIST)
    min: float | None = Field(None, gt=0)
    max: float | None = Field(None, gt=0)
    url: str | None = None
    pythia: PythiaTruth | None = Field(
        None, description="pythia: the generator settings of every shard's truth events"
    )
    truncate: bool = Field(
        False,
        description="event-truth, pythia: keep the highest-pT truth particles of events bigger "
        "than the model's truth slots (default: refuse the campaign); refused for a model "
        "conditioned on the scattered electron (no truth slots)",
    )

    @model_validator(mode="after")
    def _complete(self) -> EnergyConditions:
        need = {
            "discrete": ["values"],
            "log-uniform": ["min", "max"],
            "uniform": ["min", "max"],
            "file": ["url"],
            "jet-truth": ["url"],
            "event-truth": ["url"],
            "pythia": ["pythia"],
        }[self.distribution]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"distribution {self.distribution!r} needs {', '.join(missing)}")
        unused = [k for k in ("values", "min", "max", "url", "pythia") if k not in need]
        if self.distribution == "pythia" or self.pythia is not None:
            extra = [k for k in unused if getattr(self, k) is not None]
            if extra:
                raise ValueError(
                    f"distribution {self.distribution!r} takes no {', '.join(extra)} "
                    f"(it takes {', '.join(need)})"
                )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) > max ({self.max})")
        if self.values is not None and (not self.values or min(self.values) <= 0):
            raise ValueError("values must be a non-empty list of positive energies (MeV)")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """Omit pythia when unset: campaign.json of jobs without it stays unchanged."""
        return omit_defaults(self, handler(self), ("pythia",))


class CampaignResources(Strict):
    """Generation actors, GPUs and CPUs per actor, sampling batch size and writer slots."""

    actors: int = Field(2, ge=1, le=MAX_WORKERS)
    gpus_per_actor: float = Field(0, ge=0)
    cpus_per_actor: float = Field(1, gt=0)
    batch_size: int = Field(4096, ge=1, le=MAX_BATCH)
    bf16: bool = True
    compile: bool = Field(
        False,
        description="torch.compile the network in each actor (compiles once per actor, then "
        "faster sampling; samples agree with eager to float rounding, not bit for bit)",
    )
    max_shard_retries: int = Field(3, ge=0)
    custom_resources: dict[str, float] = Field(
        default_factory=dict,
        max_length=MAX_LIST,
        description="Ray custom resources each actor needs, e.g. {farm_gen: 1} to pin one actor "
        "per node that offers farm_gen: 1",
    )
    writers: int = Field(
        1,
        ge=0,
        le=MAX_WRITERS,
        description="writer slots per actor: threads that encode and write finished shards while "
        "the actor samples the next (0: the sampler writes each shard itself, no overlap)",
    )
    max_in_flight: int | None = Field(
        None,
        ge=1,
        le=MAX_WRITERS + 1,
        description="shards an actor holds at once (one sampling, the rest waiting for or in a "
        "writer slot); sampling waits when it is reached. Default: writers + 1",
    )

    @model_validator(mode="after")
    def _in_flight(self) -> CampaignResources:
        if self.max_in_flight is None:
            self.max_in_flight = self.writers + 1
        elif self.max_in_flight < self.writers + 1:
            raise ValueError(
                f"max_in_flight ({self.max_in_flight}) must be at least writers + 1 "
                f"({self.writers + 1}): one shard sampling and one per writer slot"
            )
        return self


SIMULATOR_REFERENCE = "simulator"
DEFAULT_VALIDATION_EVENTS = 10_000


class CampaignValidation(Strict):
    """Validate a seeded random subset of a finished campaign against reference showers."""

    reference: str = Field(
        description="reference showers: a CaloChallenge HDF5 / farm Parquet file or folder URL, "
        "or 'simulator' (farm's simulator at the validated events' incident energies; only for "
        "models trained on simulated showers)"
    )
    events: int | None = Field(
        None,
        ge=4,
        le=MAX_BATCH,
        description="events validated (default: min(10000, the campaign's events))",
    )
    reference_events: int | None = Field(
        None,
        ge=4,
        le=MAX_BATCH,
        description="reference events read from a URL, a seeded random subset (default: twice "
        "`events`); the simulator always makes two showers per validated event",
    )
    seed: int = 0
    classifier: bool = True
    gates: dict[str, Gate] = Field(
        default_factory=dict,
        max_length=MAX_LIST,
        description="thresholds on metrics, merged over the model version's own gates",
    )

    @field_validator("reference")
    @classmethod
    def _reference(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("give a reference URL or 'simulator'")
        return v.strip()


class CampaignJob(Strict):
    """`farm campaign submit` job: which model, how many events, how they are conditioned and written."""

    kind: Literal["campaign"] = "campaign"
    name: str = Field(pattern=NAME_PATTERN)
    model: str = Field(description="NAME@ALIAS or NAME/VERSION")
    events: int = Field(gt=0, le=MAX_CAMPAIGN_EVENTS)
    shard_size: int = Field(10_000, gt=0)
    sampler: str | None = None
    nfe: int | None = Field(None, ge=1, le=MAX_LIST)
    sampler_options: dict[str, Scalar] = Field(
        default_factory=dict,
        max_length=MAX_LIST,
        description="sampler keyword arguments, e.g. {snr: 0.16} (PC) or {s_churn: 40} (EDM Heun)",
    )
    conditions: EnergyConditions
    formats: list[Literal["parquet", "h5"]] = Field(default_factory=lambda: ["parquet"])
    parquet_layout: Literal["dense", "sparse"] = Field(
        "dense",
        description="layout of voxel-shower Parquet shards: dense (a fixed-size showers list) or "
        "sparse (the non-zero voxels' indices and energies, lossless; every farm reader "
        "densifies it)",
    )
    output: str | None = None
    seed: int = 0
    resources: CampaignResources = Field(default_factory=CampaignResources)
    allow_out_of_range: bool = False
    validation: CampaignValidation | None = None

    @model_validator(mode="after")
    def _sizes(self) -> CampaignJob:
        if self.shard_size > self.events:
            raise ValueError(
                f"shard_size ({self.shard_size}) is larger than events ({self.events})"
            )
        shards = -(-self.events // self.shard_size)
        if shards > MAX_SHARDS:
            raise ValueError(
                f"events / shard_size gives {shards:,} shards, more than the {MAX_SHARDS:,} a "
                "campaign may have; raise shard_size"
            )
        if not self.formats:
            raise ValueError("formats must name at least one of: parquet, h5")
        if self.parquet_layout == "sparse" and "parquet" not in self.formats:
            raise ValueError(
                f"parquet_layout: 'sparse' lays out Parquet shards, but formats is "
                f"[{', '.join(self.formats)}]; add parquet to formats or drop parquet_layout"
            )
        v = self.validation
        if v is not None and v.events is not None and v.events > self.events:
            raise ValueError(
                f"validation.events ({v.events}) is larger than events ({self.events})"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """Omit parquet_layout when dense: campaign.json of jobs without it stays unchanged."""
        return omit_defaults(self, handler(self), ("parquet_layout",))

    @property
    def validation_events(self) -> int:
        """Events a validation checks: its `events`, else min(10000, the campaign's events)."""
        v = self.validation
        if v is None:
            return 0
        return v.events if v.events is not None else min(DEFAULT_VALIDATION_EVENTS, self.events)


JOB_KINDS: dict[str, type[BaseModel]] = {
    "train": TrainJob,
    "distill": DistillJob,
    "campaign": CampaignJob,
}


def _walk(model: type[BaseModel], loc: tuple) -> tuple[type[BaseModel] | None, list[str]]:
    """Follow an error location through nested models; drop union tags from the shown key path."""
    current: Any = model
    union: Any = None
    shown: list[str] = []
    for part in loc:
        if isinstance(part, int):
            shown.append(str(part))
            current = None
            continue
        member = _union_member(union, part) if union is not None else None
        if member is not None and (current is None or part not in current.model_fields):
            current, union = member, None  # `part` is the tag of a discriminated-union member
            continue
        if current is None:
            shown.append(str(part))
            continue
        field = current.model_fields.get(part)
        if field is None:
            shown.append(part)
            current = None
            continue
        shown.append(part)
        union = field.annotation
        current = _single_model(field.annotation)
    return current, shown


def _tags_of(model: type[BaseModel], loc: tuple) -> str:
    """The allowed tags of the discriminated union at `loc` (for error messages)."""
    current: Any = model
    ann: Any = None
    for part in loc:
        field = current.model_fields.get(part) if isinstance(current, type) else None
        if field is None:
            break
        ann = field.annotation
        current = _single_model(ann)
    tags = []
    for member in _models_in(ann) if ann is not None else []:
        for name in ("kind", "source"):
            f = member.model_fields.get(name)
            if f is not None and isinstance(f.default, str):
                tags.append(repr(f.default))
    return ", ".join(tags)


def _single_model(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    members = _models_in(ann)
    return members[0] if len(members) == 1 else None


def _models_in(ann: Any) -> list[type[BaseModel]]:
    import typing

    out = []
    for a in typing.get_args(ann):
        if isinstance(a, type) and issubclass(a, BaseModel):
            out.append(a)
        else:
            out.extend(_models_in(a))
    return out


def _union_member(ann: Any, tag: str) -> type[BaseModel] | None:
    members = [ann] if isinstance(ann, type) and issubclass(ann, BaseModel) else _models_in(ann)
    for member in members:
        for name in ("kind", "source"):
            f = member.model_fields.get(name)
            if f is not None and f.default == tag:
                return member
    return None


def _format_error(source: str, err: dict[str, Any], model: type[BaseModel]) -> str:
    if err["type"] == "extra_forbidden":
        parent, shown = _walk(model, err["loc"][:-1])
        key = ".".join([*shown, str(err["loc"][-1])])
        allowed = f" (allowed: {', '.join(parent.model_fields)})" if parent else ""
        return f"{source}: unknown key '{key}'{allowed}"
    parent, shown = _walk(model, err["loc"])
    loc = ".".join(shown)
    if err["type"] in ("union_tag_not_found", "union_tag_invalid"):
        ctx = err.get("ctx", {})
        key = f"{loc}.{ctx.get('discriminator', 'kind').strip(chr(39))}".lstrip(".")
        allowed = ctx.get("expected_tags") or _tags_of(model, err["loc"])
        if err["type"] == "union_tag_not_found":
            return f"{source}: missing required key '{key}' (allowed: {allowed})"
        return f"{source}: {key}: {ctx.get('tag')!r} is not one of: {allowed}"
    if err["type"] == "missing":
        return f"{source}: missing required key '{loc}'"
    bound = _bound_message(err)
    if bound:
        return f"{source}: {loc}: {bound}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}"


def _bound_message(err: dict[str, Any]) -> str | None:
    """'at most N (the bound ...), got X' for errors of a value or list above its bound."""
    ctx = err.get("ctx", {})
    if err["type"] == "less_than_equal" and isinstance(err.get("input"), int | float):
        return (
            f"must be at most {ctx['le']:,} (a bound of farm's job files), got {err['input']:.4g}"
        )
    if err["type"] == "too_long":
        return (
            f"at most {ctx['max_length']:,} items (a bound of farm's job files), "
            f"got {ctx.get('actual_length', 'more'):,}"
        )
    return None


def parse_job(doc: Any, source: str, kind: str | tuple[str, ...] | None = None) -> BaseModel:
    """Validate a job document; raises FarmError with one line naming the source, key and problem.

    `kind` names the kind(s) the calling command takes; the first is assumed when the document
    has no `kind` key.
    """
    if not isinstance(doc, dict):
        raise FarmError(f"{source}: a job must be a YAML mapping, got {type(doc).__name__}")
    kinds = (kind,) if isinstance(kind, str) else tuple(kind or ())
    job_kind = doc.get("kind", kinds[0] if kinds else None)
    if job_kind not in JOB_KINDS:
        raise FarmError(f"{source}: kind: must be one of {', '.join(JOB_KINDS)}, got {job_kind!r}")
    if kinds and job_kind not in kinds:
        takes = " or ".join(repr(k) for k in kinds)
        raise FarmError(f"{source}: kind: this command takes a {takes} job, got {job_kind!r}")
    model = JOB_KINDS[job_kind]
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise FarmError(_format_error(source, exc.errors()[0], model)) from None


def read_job_text(path: Path) -> str:
    """A job file's text, at most MAX_JOB_BYTES (FarmError naming the file and the bound)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_JOB_BYTES + 1)
    except FileNotFoundError:
        raise FarmError(f"{path}: job file not found") from None
    except OSError as exc:
        raise FarmError(f"{path}: cannot read job file ({exc.strerror})") from None
    if len(data) > MAX_JOB_BYTES:
        raise FarmError(
            f"{path}: job file is larger than {MAX_JOB_BYTES:,} bytes (the bound on a job "
            "file; a job names its data by URL instead of holding it)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FarmError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _children(node: yaml.Node) -> list[yaml.Node]:
    """The nodes a YAML node holds (keys and values of a mapping, items of a sequence)."""
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _collection_length(node: yaml.Node) -> int:
    return len(node.value) if isinstance(node, yaml.CollectionNode) else 0


def check_yaml_bounds(root: yaml.Node, source: str) -> int:
    """Nodes of a composed YAML document with every alias expanded, without expanding any.

    Each distinct node is sized once (aliases share nodes), so an alias bomb costs its real
    node count; FarmError names the bound it breaks (nodes, depth, items) or a recursive alias.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_YAML_NODES:
                raise FarmError(
                    f"{source}: more than {MAX_YAML_NODES:,} YAML nodes once aliases are "
                    f"expanded (line {node.start_mark.line + 1}); the bound on a job file"
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise FarmError(f"{source}: recursive YAML alias at line {node.start_mark.line + 1}")
        if depth > MAX_YAML_DEPTH:
            raise FarmError(
                f"{source}: YAML nested deeper than {MAX_YAML_DEPTH} levels at line "
                f"{node.start_mark.line + 1}"
            )
        if _collection_length(node) > MAX_LIST:
            raise FarmError(
                f"{source}: a list or mapping of more than {MAX_LIST:,} items at line "
                f"{node.start_mark.line + 1} (the bound on any list in a job)"
            )
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node) if id(c) not in sizes)
    return sizes[id(root)]


def parse_yaml(text: str, source: str) -> Any:
    """Safe-load one YAML document after checking its bounds (FarmError naming the problem)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_yaml_bounds(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FarmError(f"{source}: malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise FarmError(f"{source}: YAML nested deeper than {MAX_YAML_DEPTH} levels") from None
    finally:
        loader.dispose()


def load_job(path: str | Path, kind: str | tuple[str, ...] | None = None) -> BaseModel:
    """Read and validate a YAML job file within the bounds above (size, nodes, depth, lists)."""
    path = Path(path)
    doc = parse_yaml(read_job_text(path), str(path))
    return parse_job(doc, str(path), kind)


def resolved(job: BaseModel) -> dict[str, Any]:
    """The fully resolved spec (defaults filled in), as saved with every run; kind and name first."""
    doc = job.model_dump(mode="json")
    return {**{k: doc[k] for k in ("kind", "name") if k in doc}, **doc}


# --- `farm tune`: a search over a train job's parameters (kind: tune) -------------------------

SEARCHABLE = ("model.", "optim.")
"""Path prefixes a search may vary; data and resources are shared by all trials."""
TUNE_METRICS = ("val_loss", "train_loss")
"""Per-epoch metrics a search can optimise (what models.training.fit reports every epoch)."""
FIDELITY_METRICS = (
    "fidelity.sep_mean",
    "fidelity.sep_max",
    "fidelity.sep_energy",
    "fidelity.sep_e_ratio",
)
"""Fidelity objectives (minimised), scored on a small generated sample (farm.fidelity): the mean
and the largest separation power over all high-level shower features (as `farm evaluate`), the
mean over E_tot/E_inc and the layer energies, and E_tot/E_inc's alone."""


class ParamSpace(Strict):
    """One searched parameter: uniform/loguniform in [low, high], randint in low..high, or a choice."""

    type: Literal["uniform", "loguniform", "choice", "randint"]
    low: float | None = None
    high: float | None = None
    values: list[Scalar] | None = Field(None, max_length=MAX_LIST)

    @model_validator(mode="after")
    def _complete(self) -> ParamSpace:
        if self.type == "choice":
            if not self.values:
                raise ValueError("choice needs a non-empty 'values' list")
            if self.low is not None or self.high is not None:
                raise ValueError("choice takes 'values', not low/high")
            return self
        if self.values is not None:
            raise ValueError(f"{self.type} takes low and high, not 'values'")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs both 'low' and 'high'")
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) > high ({self.high:g})")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low:g}")
        if self.type == "randint" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("randint needs integer low and high")
        return self

    def corners(self) -> list[Scalar]:
        """Values that together exercise the whole range (for validation against the base job)."""
        if self.type == "choice":
            return list(self.values or [])
        if self.type == "randint":
            return [int(self.low), int(self.high)]
        inner = self.low * (self.high / self.low) ** 0.37 if self.type == "loguniform" else None
        return [self.low, inner or self.low + 0.37 * (self.high - self.low), self.high]

    def problem(self, value: Any) -> str | None:
        """Why `value` is not in this parameter's domain (None if it is)."""
        if self.type == "choice":
            return (
                None if value in (self.values or []) else f"{value!r} is not one of {self.values}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{value!r} is not a number"
        if self.type == "randint" and value != int(value):
            return f"{value!r} is not an integer"
        if not self.low <= value <= self.high:
            return f"{value:g} is outside [{self.low:g}, {self.high:g}]"
        return None


class FidelitySpec(Strict):
    """Score checkpoints by generating `events` showers for validation energies (farm.fidelity)."""

    events: int = Field(
        1000, ge=10, le=MAX_BATCH, description="at most the validation split's size is used"
    )
    every: int = Field(
        1, ge=1, description="score every N-th epoch with a checkpoint, and the last"
    )
    nfe: int | None = Field(None, ge=1, description="default: the trial model's sampler nfe")
    threshold_mev: float | None = Field(
        None, ge=0, description="voxels at or below count as empty; default 1 MeV DS1, 15 keV DS2/3"
    )
    seed: int = 0


class TrialResources(Strict):
    """Ray Train workers per trial (DDP ranks), CPUs per worker, GPUs if present ('auto')."""

    workers: int = Field(1, ge=1, le=MAX_WORKERS)
    cpus: float = Field(1, gt=0)
    use_gpu: bool | Literal["auto"] = "auto"


class AshaSpec(Strict):
    """ASHA early stopping on epochs: first decision after grace_period, keep 1/reduction_factor."""

    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)
    max_t: int | None = Field(None, ge=1, description="default: the base job's epochs")


class TuneJob(Strict):
    """`farm tune` job: a base train job, a search space over its parameters, and the search."""

    kind: Literal["tune"] = "tune"
    name: str | None = Field(None, pattern=NAME_PATTERN, description="default: <base name>-tune")
    description: str = ""
    base: TrainJob | None = None
    base_job: str | None = Field(
        None, description="path to a train job YAML (instead of base; resolved into base)"
    )
    space: dict[str, ParamSpace] = Field(max_length=MAX_LIST)
    points_to_evaluate: list[dict[str, Scalar]] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="parameter sets tried first, in order; then TPE",
    )
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    fidelity: FidelitySpec | None = Field(
        None, description="score checkpoints on a generated sample (default on for fidelity.*)"
    )
    trials: int = Field(10, ge=1, le=MAX_WORKERS)
    concurrency: int = Field(2, ge=1, le=MAX_WORKERS)
    resources_per_trial: TrialResources = Field(default_factory=TrialResources)
    time_budget_s: float | None = Field(None, gt=0)
    asha: AshaSpec | None = Field(default_factory=AshaSpec)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _load_base(cls, doc: Any) -> Any:
        if isinstance(doc, dict) and doc.get("base_job") is not None:
            if doc.get("base") is not None:
                raise ValueError("give either 'base' or 'base_job', not both")
            base = load_job(doc["base_job"], kind="train")
            doc = {**doc, "base": resolved(base), "base_job": None}
        return doc

    @model_validator(mode="after")
    def _check_space(self) -> TuneJob:
        if self.base is None:
            raise ValueError("missing required key 'base' (a train job) or 'base_job' (its path)")
        if not self.space:
            raise ValueError("space: must name at least one parameter")
        metrics = (*TUNE_METRICS, *FIDELITY_METRICS)
        if self.metric not in metrics:
            raise ValueError(f"metric: {self.metric!r} is not one of: {', '.join(metrics)}")
        for path, dist in self.space.items():
            for value in dist.corners():
                apply_params(self.base, {path: value}, key=f"space.{path}")
        for i, point in enumerate(self.points_to_evaluate):
            self._check_point(point, f"points_to_evaluate.{i}")
        if self.metric in FIDELITY_METRICS:
            if self.mode != "min":
                raise ValueError(f"mode: {self.metric} is a separation power (0 is best); use min")
            self.fidelity = self.fidelity or FidelitySpec()
        every = self.base.optim.checkpoint_every
        source = self.base.data.source
        if self.fidelity is not None and source not in SHOWER_SOURCES:
            raise ValueError(
                f"fidelity: scores calorimeter showers (data sources {', '.join(SHOWER_SOURCES)}); "
                f"the base job's data source is {source!r}"
            )
        if self.fidelity is not None and self.fidelity.every % every:
            raise ValueError(
                f"fidelity.every: {self.fidelity.every} is not a multiple of the base job's "
                f"optim.checkpoint_every ({every}); checkpoints are what gets scored"
            )
        return self

    def _check_point(self, point: dict[str, Any], key: str) -> None:
        """A points_to_evaluate entry: every searched parameter, each inside its domain."""
        missing = [p for p in self.space if p not in point]
        if missing:
            raise ValueError(f"{key}: missing searched parameter(s) {', '.join(missing)}")
        for path, value in point.items():
            if path not in self.space:
                have = ", ".join(self.space)
                raise ValueError(f"{key}.{path}: not a searched parameter (space has: {have})")
            problem = self.space[path].problem(value)
            if problem:
                raise ValueError(f"{key}.{path}: {problem}")
        apply_params(self.base, point, key=key)

    @property
    def search_name(self) -> str:
        """The search's name: `name`, else the base job's name with '-tune' appended."""
        return self.name or f"{self.base.name}-tune"

    @property
    def max_epochs(self) -> int:
        """The most epochs any trial can run (ASHA's max_t unless set)."""
        epochs = self.space.get("optim.epochs")
        return max(int(v) for v in epochs.corners()) if epochs else self.base.optim.epochs


def apply_params(base: TrainJob, params: dict[str, Any], key: str | None = None) -> TrainJob:
    """The base train job with dotted-path parameters replaced, re-validated (ValueError naming the key)."""
    doc = resolved(base)
    for path, value in params.items():
        name = key or path
        if not path.startswith(SEARCHABLE):
            raise ValueError(
                f"{name}: only {' and '.join(p + '*' for p in SEARCHABLE)} parameters can be searched"
            )
        node = doc
        parts = path.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[:i]) or "the job"
                have = ", ".join(node) if isinstance(node, dict) else "no sub-keys"
                raise ValueError(f"{name}: unknown parameter path ({where} has: {have})")
            if i == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    try:
        return TrainJob.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        where = key or ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{where}: {msg}") from None


JOB_KINDS["tune"] = TuneJob
