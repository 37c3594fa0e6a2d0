"""The HTTP contract of `farm serve`: typed requests, jobs, results and their JSON / Arrow IPC bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

ARROW_STREAM = "application/vnd.apache.arrow.stream"
UNITS = {"energies": "MeV", "events": "MeV"}


class GenerateRequest(BaseModel):
    """POST /v1/models/{name}/generate: incident energies (MeV), events, sampler, NFE and seed."""

    model_config = ConfigDict(extra="forbid")
    energies: list[float] = Field(
        min_length=1,
        description="incident energies in MeV: one per event, or one value for every event",
    )
    events: int | None = Field(None, ge=1, description="number of showers (default: energies)")
    sampler: str | None = Field(None, description="sampler name (default: the model card's)")
    nfe: int | None = Field(None, ge=1, description="network evaluations (default: the card's)")
    seed: int | None = Field(
        None,
        ge=0,
        lt=2**63,
        description="with a seed the showers are exactly those `farm generate --seed` makes for "
        "these energies (sampled on their own); without one the request may share a sampler "
        "call with other requests",
    )


@dataclass(frozen=True)
class Job:
    """A checked request as the model deployment receives it (energies expanded to events)."""

    e_inc: np.ndarray
    sampler: str | None
    nfe: int | None
    seed: int | None


@dataclass(frozen=True)
class Result:
    """Showers (or an HTTP error status and one line), with what made them."""

    status: int = 200
    error: str | None = None
    showers: np.ndarray | None = None
    e_inc: np.ndarray | None = None
    header: dict[str, Any] = field(default_factory=dict)


def error(status: int, message: str) -> Result:
    """A failed result: an HTTP status and one line."""
    return Result(status=status, error=" ".join(message.split()))


def json_body(result: Result) -> dict[str, Any]:
    """The JSON response: the header, the incident energies and the showers (lists)."""
    return {
        **result.header,
        "energies": result.e_inc.tolist(),
        "events": result.showers.tolist(),
    }


def arrow_body(result: Result) -> bytes:
    """The Arrow IPC stream of a farm-showers table (farm.formats), the header in its metadata."""
    import pyarrow as pa

    from farm.formats.showers_parquet import to_table

    header = result.header
    table = to_table(
        result.showers,
        result.e_inc,
        np.arange(len(result.e_inc)),
        header.get("geometry") or "unknown",
        {"served": json.dumps(header)},
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
