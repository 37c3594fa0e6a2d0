"""The HTTP contract of `farm serve`: typed requests, jobs, results and their JSON / Arrow IPC bodies.

Conditions per data kind: incident energies (showers and point-cloud showers), jet truth (pT,
eta, constituent count) or truth sets (events), as `farm generate` conditions each kind. Arrow IPC
bodies are the tables farm.formats writes to files (farm-showers, farm-points, farm-jets,
farm-events).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from farm.samples import EVENT_CLASSES

ARROW_STREAM = "application/vnd.apache.arrow.stream"
UNITS = {"energies": "MeV", "events": "MeV"}
JET_UNITS = {
    "pt": "GeV",
    "eta": "1",
    "mass": "GeV",
    "constituents": "[eta_rel, phi_rel, pt_rel (fraction of the jet pT), mask]",
}
EVENT_UNITS = {"pt": "GeV", "eta": "1", "phi": "rad", "met_x": "GeV", "met_y": "GeV", "ht": "GeV"}
POINT_UNITS = {"energies": "MeV", "x": "mm", "y": "mm", "z": "mm", "e": "MeV", "layer": "index"}
KIND_UNITS = {"showers": UNITS, "points": POINT_UNITS, "jets": JET_UNITS, "events": EVENT_UNITS}


class JetCondition(BaseModel):
    """One jet's truth: pT (GeV), eta and its number of constituents (1..the model's slots)."""

    model_config = ConfigDict(extra="forbid")
    pt: float = Field(gt=0, allow_inf_nan=False, description="jet pT in GeV")
    eta: float = Field(allow_inf_nan=False, description="jet pseudorapidity")
    n: int = Field(ge=1, description="number of constituents")


class Particle(BaseModel):
    """One truth particle of an event: pT (GeV), eta, phi (rad), PDG id and charge."""

    model_config = ConfigDict(extra="forbid")
    pt: float = Field(gt=0, allow_inf_nan=False, description="pT in GeV")
    eta: float = Field(allow_inf_nan=False)
    phi: float = Field(allow_inf_nan=False, description="azimuth in rad")
    pdg: int = Field(description="PDG id of a stable particle")
    charge: int = Field(ge=-1, le=1)


class ScatteredElectron(BaseModel):
    """A DIS event's scattered electron: E and pT (GeV), eta, phi (rad); x, Q^2, y optional."""

    model_config = ConfigDict(extra="forbid")
    e: float = Field(gt=0, allow_inf_nan=False, description="energy in GeV")
    pt: float = Field(gt=0, allow_inf_nan=False, description="pT in GeV")
    eta: float = Field(allow_inf_nan=False)
    phi: float = Field(allow_inf_nan=False, description="azimuth in rad")
    x: float | None = Field(None, gt=0, le=1, description="Bjorken x (dis_kinematics models)")
    q2: float | None = Field(None, gt=0, allow_inf_nan=False, description="Q^2 in GeV^2")
    y: float | None = Field(None, gt=0, le=1, description="inelasticity y")


class GenerateRequest(BaseModel):
    """POST /v1/models/{name}/generate: the model kind's conditions, sampler, NFE and seed.

    Exactly one of `energies` (showers), `jets` (jets), `truth` (events of a truth-set model) or
    `electrons` (events of a model conditioned on the scattered electron; `truth` may come with
    them, one set per electron, to give the reco tracks their charges) is given.
    """

    model_config = ConfigDict(extra="forbid")
    energies: list[float] | None = Field(
        None,
        min_length=1,
        description="showers: incident energies in MeV, one per event or one for every event",
    )
    jets: list[JetCondition] | None = Field(
        None, min_length=1, description="jets: one {pt, eta, n} per jet"
    )
    truth: list[list[Particle]] | None = Field(
        None,
        min_length=1,
        description="events: per event its truth particles [{pt, eta, phi, pdg, charge}, ...]",
    )
    electrons: list[ScatteredElectron] | None = Field(
        None,
        min_length=1,
        description="events of a scattered-electron model: one {e, pt, eta, phi[, x, q2, y]} "
        "per event",
    )
    truncate: bool = Field(
        False,
        description="events: keep the highest-pT truth particles of events bigger than the "
        "model's truth slots (default: refuse them); recorded in the response",
    )
    events: int | None = Field(
        None, ge=1, description="showers: number of showers (default: one per energy)"
    )
    sampler: str | None = Field(None, description="sampler name (default: the model card's)")
    nfe: int | None = Field(None, ge=1, description="network evaluations (default: the card's)")
    seed: int | None = Field(
        None,
        ge=0,
        lt=2**63,
        description="with a seed the showers are exactly those `farm generate --seed` makes for "
        "these conditions (sampled on their own); without one the request may share a "
        "sampler call with other requests",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> GenerateRequest:
        kinds = ("energies", "jets", "truth", "electrons")
        given = [k for k in kinds if getattr(self, k) is not None]
        if given != ["truth", "electrons"] and len(given) != 1:
            raise ValueError(
                "give exactly one of energies (showers), jets (jets), truth or electrons "
                f"(events; truth may come with electrons), got {given or 'none'}"
            )
        both = self.electrons is not None and self.truth is not None
        if both and len(self.truth) != len(self.electrons):
            raise ValueError(
                f"electrons has {len(self.electrons)} events but truth {len(self.truth)}: "
                "give one truth set per electron"
            )
        if self.events is not None and self.energies is None:
            raise ValueError("events applies to showers; jets and truth give one entry per event")
        if any(len(event) == 0 for event in self.truth or ()):
            raise ValueError("truth: every event needs at least one truth particle")
        return self

    @property
    def kind(self) -> str:
        """The data kind the request's conditions are for."""
        return "jets" if self.jets else "events" if self.truth or self.electrons else "showers"

    @property
    def condition(self) -> str:
        """What events are conditioned on: truth_set, or scattered_electron (`electrons`)."""
        return "scattered_electron" if self.electrons else "truth_set"


@dataclass(frozen=True)
class Job:
    """A checked request as the model deployment receives it (energies expanded to events).

    conditions: incident energies (N,) MeV (showers), a JetTruth (jets) or an EventSample of
    truth sets (events; with condition scattered_electron, the electrons as its event columns).
    """

    kind: str
    conditions: Any
    sampler: str | None
    nfe: int | None
    seed: int | None
    truncate: bool = False
    condition: str = "truth_set"

    def __len__(self) -> int:
        """Number of events asked for."""
        return len(self.conditions)


@dataclass(frozen=True)
class Result:
    """Showers, a JetSample or an EventSample (or an HTTP error status and one line)."""

    status: int = 200
    error: str | None = None
    showers: np.ndarray | None = None
    e_inc: np.ndarray | None = None
    header: dict[str, Any] = field(default_factory=dict)
    sample: Any = None


def error(status: int, message: str) -> Result:
    """A failed result: an HTTP status and one line."""
    return Result(status=status, error=" ".join(message.split()))


def jet_truth(jets: list[JetCondition]):
    """The JetTruth of a request's jets."""
    from farm.samples import JetTruth

    return JetTruth(
        np.array([j.pt for j in jets], np.float64),
        np.array([j.eta for j in jets], np.float64),
        np.array([j.n for j in jets], np.int64),
    )


def event_truth(events: list[list[Particle]]):
    """An EventSample of a request's truth sets (no reco yet), truth MET and HT per event."""
    from farm.kinematics import met_ht
    from farm.samples import EventSample

    flat = [p for event in events for p in event]
    counts = np.array([len(event) for event in events], np.int64)
    truth = {
        "pt": np.array([p.pt for p in flat], np.float32),
        "eta": np.array([p.eta for p in flat], np.float32),
        "phi": np.array([p.phi for p in flat], np.float32),
        "pdg": np.array([p.pdg for p in flat], np.int32),
        "charge": np.array([p.charge for p in flat], np.int8),
    }
    mx, my, ht = met_ht(counts, truth["pt"].astype(np.float64), truth["phi"].astype(np.float64))
    n = len(counts)
    event = {"event_index": np.arange(n), "truth_met_x": mx, "truth_met_y": my, "truth_ht": ht}
    empty = {k: v[:0] for k, v in truth.items() if k != "pdg"} | {"class": np.zeros(0, np.int8)}
    return EventSample(truth, counts, empty, np.zeros(n, np.int64), event, np.arange(n))


def event_electrons(electrons: list[ScatteredElectron], truth: list[list[Particle]] | None):
    """An EventSample of a request's electrons and truth sets (empty without `truth`).

    The electrons become the event columns farm's DIS files have (x, Q^2, y NaN where not given).
    """
    from farm.samples import DIS_KINEMATICS, ELECTRON_COLUMNS

    sample = event_truth(truth or [[] for _ in electrons])
    fields = dict(zip(ELECTRON_COLUMNS, ("e", "pt", "eta", "phi"), strict=True))
    fields |= dict(zip(DIS_KINEMATICS, ("x", "q2", "y"), strict=True))
    for column, name in fields.items():
        values = [getattr(e, name) for e in electrons]
        sample.event[column] = np.array([np.nan if v is None else v for v in values], np.float64)
    return sample


def json_body(result: Result) -> dict[str, Any]:
    """The JSON response: the header, the conditions and the generated events (lists)."""
    sample = result.sample
    if sample is None:
        return {
            **result.header,
            "energies": result.e_inc.tolist(),
            "events": result.showers.tolist(),
        }
    if sample.kind == "points":
        off = sample.offsets
        return {
            **result.header,
            "energies": sample.e_inc.tolist(),
            "events": [
                {
                    "n_hits": int(sample.counts[i]),
                    **{
                        k: sample.hits[off[i] : off[i + 1], j].tolist() for j, k in enumerate("xyz")
                    },
                    "layer": sample.layer[off[i] : off[i + 1]].tolist(),
                    "e": sample.hits[off[i] : off[i + 1], 3].tolist(),
                }
                for i in range(len(sample))
            ],
        }
    if sample.kind == "jets":
        f = sample.jet_features
        return {
            **result.header,
            "jets": [
                {"pt": float(a), "eta": float(b), "mass": float(m), "n": int(c)}
                for a, b, m, c in f.tolist()
            ],
            "constituents": sample.constituents.tolist(),
        }
    off_t, off_r = sample.offsets(sample.truth_counts), sample.offsets(sample.reco_counts)
    events = []
    for i in range(len(sample)):
        r = slice(off_r[i], off_r[i + 1])
        events.append(
            {
                "n_truth": int(off_t[i + 1] - off_t[i]),
                "reco": [
                    {"pt": float(pt), "eta": float(eta), "phi": float(phi),
                     "class": EVENT_CLASSES[int(c)], "charge": int(q)}
                    for pt, eta, phi, c, q in zip(
                        sample.reco["pt"][r], sample.reco["eta"][r], sample.reco["phi"][r],
                        sample.reco["class"][r], sample.reco["charge"][r], strict=True,
                    )
                ],
                **{k: float(sample.event[k][i]) for k in ("met_x", "met_y", "ht")},
            }
        )  # fmt: skip
    return {**result.header, "classes": list(EVENT_CLASSES), "events": events}


def _ipc(table) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def arrow_body(result: Result) -> bytes:
    """The Arrow IPC stream of the farm.formats table of the kind, the header in its metadata."""
    header = result.header
    meta = {"served": json.dumps(header)}
    sample = result.sample
    if sample is not None and sample.kind == "points":
        from farm.formats.points_parquet import to_table as points_table

        return _ipc(points_table(sample, meta))
    if sample is not None and sample.kind == "jets":
        from farm.formats.jets import jets_to_arrow

        return _ipc(jets_to_arrow(sample.as_dict(), meta))
    if sample is not None:
        from farm.formats.events import events_to_arrow

        return _ipc(events_to_arrow(sample, meta))
    from farm.formats.showers_parquet import to_table

    table = to_table(
        result.showers,
        result.e_inc,
        np.arange(len(result.e_inc)),
        header.get("geometry") or "unknown",
        meta,
    )
    return _ipc(table)
