"""Typed campaign records and where they live in the store (JSON only at this boundary).

FARM_HOME/campaigns/<id>/ holds campaign.json (`CampaignRecord`), status.json (`CampaignStatus`),
lease.json (`DriverLease`, the driver that holds the campaign), `cancel` (a request) and
driver.log; the campaign's output (by default
campaigns/<id>/output/) holds `_manifest/shard-*.json` (`ShardRecord`, the commit points),
manifest.parquet, summary.json (`CampaignSummary`) and validation.json (`ValidationRecord`).
Paths inside records are relative to the campaign output (or, for the output itself, to the
campaign folder) whenever they lie inside it, so a store that moves or is mounted elsewhere still
resolves; `CampaignRecord.output_url` and `CampaignRecord.path` resolve them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from farm import store
from farm.errors import FarmError
from farm.sharding import Plan
from farm.specs import CampaignJob

SCHEMA_VERSION = 1
CAMPAIGN_JSON, STATUS_JSON, CANCEL = "campaign.json", "status.json", "cancel"
LEASE_JSON = "lease.json"
DEFAULT_OUTPUT = "output"
DataKind = Literal["showers", "jets", "points", "events"]


class Record(BaseModel):
    """A stored record: unknown keys rejected, a schema version, JSON at the storage boundary."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        """The record as indented JSON."""
        return self.model_dump_json(indent=2)


class ModelVersionRef(BaseModel):
    """The registered model version a campaign resolved once at submit."""

    model_config = ConfigDict(extra="forbid")
    ref: str
    name: str
    version: str
    source: str
    run_id: str | None = None

    @property
    def key(self) -> str:
        """NAME/VERSION."""
        return f"{self.name}/{self.version}"


PYTHIA_SEEDS = (
    "Shard.pythia_seed: 1 + (first 64-bit word of numpy SeedSequence([campaign seed, shard id]) "
    "mod 900,000,000); the shard's sampling seed Shard.seed is the low 63 bits of the same word"
)
"""How a `distribution: pythia` campaign seeds each shard's Pythia (farm.sharding)."""


class TruthGenerator(BaseModel):
    """How a `distribution: pythia` campaign generates its truth: settings, version, seeds."""

    model_config = ConfigDict(extra="forbid")
    generator: Literal["Pythia 8"] = "Pythia 8"
    pythia8mc: str = Field(description="the pythia8mc version at submit; every shard must match")
    config: dict[str, Any] = Field(
        description="farm.data.events.EventGenConfig, process defaults filled (n_events: per shard)"
    )
    seeds: str = PYTHIA_SEEDS


class CampaignRecord(Record):
    """campaign.json: the validated job (sampler and NFE resolved), model version, plan, output."""

    id: str
    job: CampaignJob
    output: str
    kind: DataKind
    geometry: str | None
    model: ModelVersionRef
    plan: Plan
    created: float
    truth_generator: TruthGenerator | None = Field(
        None, description="distribution pythia: the truth generator (absent otherwise)"
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """Omit truth_generator when absent: other campaigns' campaign.json stays unchanged."""
        data = handler(self)
        if self.truth_generator is None:
            data.pop("truth_generator", None)
        return data

    @property
    def output_url(self) -> str:
        """The output location as a URL (a relative `output` lies in the campaign folder)."""
        return resolve(campaign_url(self.id), self.output)

    def path(self, relative: str) -> str:
        """A path stored relative to the output, as a URL."""
        return resolve(self.output_url, relative)

    @property
    def sampler(self) -> str:
        """The sampler every shard uses (resolved at submit)."""
        assert self.job.sampler is not None
        return self.job.sampler

    @property
    def nfe(self) -> int:
        """The network evaluations every shard uses (resolved at submit)."""
        assert self.job.nfe is not None
        return self.job.nfe


class ShardFile(BaseModel):
    """One committed file of a shard: path relative to the output, size in bytes."""

    model_config = ConfigDict(extra="forbid")
    path: str
    bytes: int


class ShardRecord(Record):
    """A shard's manifest record: its existence is the shard's commit point."""

    shard: int
    events: int
    event_id_start: int
    event_id_stop: int
    seed: int
    model: str
    sampler: str
    nfe: int
    sampler_options: dict[str, bool | int | float | str] = Field(default_factory=dict)
    compiled: bool = False
    content_sha256: str
    files: dict[str, ShardFile]
    bytes: int
    worker: str
    device: str
    seconds_wait: float
    seconds_sample: float
    seconds_write: float
    committed_at: float
    pythia_seed: int | None = Field(
        None, description="distribution pythia: the Random:seed of this shard's truth events"
    )
    pythia8mc: str | None = Field(
        None, description="distribution pythia: the pythia8mc version that generated them"
    )
    seconds_truth: float | None = Field(
        None, description="distribution pythia: seconds Pythia took (before seconds_wait)"
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """Omit the Pythia fields of shards whose truth was not generated (records unchanged)."""
        data = handler(self)
        for key in ("pythia_seed", "pythia8mc", "seconds_truth"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class MetricSummary(BaseModel):
    """A headline metric: value, error, and its reference-vs-reference floor."""

    model_config = ConfigDict(extra="forbid")
    value: float
    error: float | None = None
    floor: float | None = None
    floor_error: float | None = None


Validated = Literal["running", "pass", "fail", "ungated", "error"]


class ValidationSummary(BaseModel):
    """What status.json and summary.json keep of a validation."""

    model_config = ConfigDict(extra="forbid")
    validated: Validated
    events: int | None = None
    reference: str | None = None
    failures: list[str] = Field(default_factory=list)
    error: str | None = None
    url: str | None = None
    report: str | None = None
    headline: dict[str, MetricSummary] = Field(default_factory=dict)


class ValidationRecord(ValidationSummary, Record):
    """validation.json: the outcome, the gates, the sample and every metric."""

    campaign: str
    model: str
    seed: int
    started: float
    finished: float | None = None
    gates: dict[str, dict[str, float]] = Field(default_factory=dict)
    event_ids_sha256: str | None = None
    reference_events: int | None = None
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    logged: bool | str | None = None

    def summary(self) -> ValidationSummary:
        """The short form kept in status.json and summary.json."""
        return ValidationSummary.model_validate(
            self.model_dump(include=set(ValidationSummary.model_fields))
        )


class CampaignSummary(Record):
    """summary.json: a finished campaign's totals, files (relative to the output), checksum."""

    campaign: str
    events: int
    shards: int
    model: str
    sampler: str
    nfe: int
    geometry: str | None
    formats: list[str]
    bytes: int
    event_id_range: tuple[int, int]
    seed: int
    manifest: str
    files: dict[str, str]
    sample_seconds: float
    write_seconds: float
    dataset_sha256: str
    validation: ValidationSummary | None = None


CampaignState = Literal["submitted", "running", "finished", "cancelled", "failed", "orphaned"]
"""A campaign's state. The driver writes submitted, running, finished, cancelled and failed (a
shard failing too often, actors that keep dying, a failed finalize or any other driver error,
named in `CampaignStatus.error`); `orphaned` is never written: `observed_status` reports it for a
submitted or running campaign whose driver's lease has expired (its heartbeat stopped)."""
ACTIVE_STATES = ("submitted", "running")
STATUS_SCHEMA_VERSION = 2
"""status.json schema 2 (issue 17) adds `error` and the derived state `orphaned`; schema 1 files
read unchanged (every new field has a default)."""


class CampaignStatus(Record):
    """status.json: the driver's progress, rewritten every few seconds."""

    schema_version: int = STATUS_SCHEMA_VERSION
    state: CampaignState = "submitted"
    shards_done: int = 0
    shards_total: int = 0
    shards_running: int = 0
    shards_skipped: int = 0
    events_done: int = 0
    events_total: int = 0
    events_per_second: float = 0.0
    eta_seconds: float | None = None
    bytes_written: int = 0
    actor_restarts: int = 0
    shard_retries: int = 0
    pid: int | None = None
    started: float | None = None
    updated: float | None = None
    summary: CampaignSummary | None = None
    validated: Validated | None = None
    validation: ValidationSummary | None = None
    error: str | None = None


class DriverLease(Record):
    """lease.json: the one driver that may drive a campaign, until `expires` unless renewed.

    The holder's heartbeat rewrites it every few seconds with a later `expires`; a driver that
    dies stops renewing, so its lease lapses and another driver may take over.
    """

    token: str
    host: str
    pid: int
    since: float
    heartbeat: float
    expires: float
    process_space: str = ""

    @property
    def holder(self) -> str:
        """'host pid N', the words an operator looks for."""
        return f"{self.host} pid {self.pid}"

    def expired(self, now: float | None = None) -> bool:
        """Whether the lease has lapsed (its holder stopped renewing it)."""
        return (time.time() if now is None else now) >= self.expires

    def holder_gone(self) -> bool:
        """Whether the holder ran in this machine's process space and its process is gone."""
        import psutil

        space = process_space()
        return bool(space) and self.process_space == space and not psutil.pid_exists(self.pid)

    def lapsed(self, now: float | None = None) -> bool:
        """Expired, or held by a process of this machine that no longer exists."""
        return self.expired(now) or self.holder_gone()


def process_space() -> str:
    """This machine's boot id and pid namespace ('' where unknown): where a pid means a process."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


# --------------------------------------------------------------------------- paths


def resolve(base: str, path: str) -> str:
    """`path` as a URL: absolute paths and URLs as they are, relative ones under `base`."""
    if "://" in path or path.startswith("/"):
        return path
    return store.join(base, path)


def relative(base: str, url: str) -> str:
    """`url` relative to `base` when it lies inside it, else `url` unchanged."""
    base = base.rstrip("/") + "/"
    return url[len(base) :] if url.startswith(base) else url


def root() -> str:
    """FARM_HOME/campaigns."""
    return store.join(store.home(), "campaigns")


def campaign_url(campaign_id: str, name: str = "") -> str:
    """FARM_HOME/campaigns/<id>[/name]."""
    base = store.join(root(), campaign_id)
    return store.join(base, name) if name else base


# --------------------------------------------------------------------------- campaign records


def new_id(name: str) -> str:
    """<name>-<UTC time>-<4 hex digits>."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def save(campaign: CampaignRecord) -> None:
    """Write campaign.json."""
    store.write_text(campaign_url(campaign.id, CAMPAIGN_JSON), campaign.to_json())


def exists(campaign_id: str) -> bool:
    """Whether a campaign id names a campaign in the store."""
    return "/" not in campaign_id and store.exists(campaign_url(campaign_id, CAMPAIGN_JSON))


def load(campaign_id: str) -> CampaignRecord:
    """campaign.json of a campaign; FarmError naming recent ids if there is none."""
    if not exists(campaign_id):
        known = ", ".join(list_ids()[-5:]) or "none yet"
        raise FarmError(f"campaign {campaign_id!r} not found under {root()} (recent: {known})")
    url = campaign_url(campaign_id, CAMPAIGN_JSON)
    return CampaignRecord.model_validate_json(store.read_text(url))


def list_ids() -> list[str]:
    """Campaign ids in the store, oldest first."""
    return [n for n in store.listdir(root()) if not n.startswith(".")]


def write_status(campaign_id: str, status: CampaignStatus) -> None:
    """Write status.json (with the time of writing)."""
    status = status.model_copy(update={"updated": time.time()})
    store.write_text(campaign_url(campaign_id, STATUS_JSON), status.to_json())


def read_status(campaign_id: str) -> CampaignStatus:
    """status.json, or a `submitted` status before the driver wrote one."""
    url = campaign_url(campaign_id, STATUS_JSON)
    if not store.exists(url):
        return CampaignStatus()
    return CampaignStatus.model_validate_json(store.read_text(url))


def update_status(campaign_id: str, **fields: Any) -> None:
    """Change some fields of status.json."""
    write_status(campaign_id, read_status(campaign_id).model_copy(update=fields))


def read_lease(campaign_id: str) -> DriverLease | None:
    """lease.json of a campaign, or None when no driver holds (or ever held) it."""
    url = campaign_url(campaign_id, LEASE_JSON)
    try:
        return DriverLease.model_validate_json(store.read_text(url))
    except FarmError:  # no such file
        return None


def write_lease(campaign_id: str, lease: DriverLease) -> None:
    """Write lease.json atomically (tmp + rename locally, one PUT on S3)."""
    store.write_text(campaign_url(campaign_id, LEASE_JSON), lease.to_json())


def remove_lease(campaign_id: str) -> None:
    """Delete lease.json (a driver lets go of its campaign)."""
    fs, path = store.filesystem(campaign_url(campaign_id, LEASE_JSON))
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def observed_state(status: CampaignStatus, lease: DriverLease | None, now: float) -> str:
    """The state to report: `orphaned` for an active campaign whose driver's lease lapsed."""
    if status.state not in ACTIVE_STATES:
        return status.state
    if lease is not None and lease.lapsed(now):
        return "orphaned"
    if lease is None and status.state == "running":
        return "orphaned"  # a running driver always holds the lease
    return status.state


def observed_status(campaign_id: str) -> tuple[CampaignStatus, DriverLease | None]:
    """status.json with the observed state (orphaned when the heartbeat stopped), and the lease."""
    status, lease = read_status(campaign_id), read_lease(campaign_id)
    state = observed_state(status, lease, time.time())
    return status.model_copy(update={"state": state}), lease


def request_cancel(campaign_id: str) -> None:
    """Ask the campaign's driver to stop (it checks between shards)."""
    load(campaign_id)
    store.write_text(campaign_url(campaign_id, CANCEL), str(time.time()))


def cancel_requested(campaign_id: str) -> bool:
    """Whether a cancel was requested."""
    return store.exists(campaign_url(campaign_id, CANCEL))


def clear_cancel(campaign_id: str) -> None:
    """Forget a cancel request (a resume starts afresh)."""
    fs, path = store.filesystem(campaign_url(campaign_id, CANCEL))
    if fs.exists(path):
        fs.rm_file(path)


def read_summary(campaign: CampaignRecord) -> CampaignSummary | None:
    """summary.json of a finished campaign, or None."""
    url = campaign.path("summary.json")
    return CampaignSummary.model_validate_json(store.read_text(url)) if store.exists(url) else None


def write_json(url: str, record: Record) -> None:
    """Write a record atomically, retrying transient storage errors."""
    store.with_retries(lambda: store.write_text(url, record.to_json()), f"writing {url}")


def dumps(doc: Any) -> str:
    """JSON text of plain data (for the few records that are not models)."""
    return json.dumps(doc, indent=2, default=float)
