"""Data preparation shared by `farm train` and `farm tune`: load, split, complete the model config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from farm.data.sources import load_dataset, split
from farm.samples import EventSample, JetSample, PointSample, ShowerSample
from models.config import with_geometry


@dataclass
class PreparedData:
    """A job's showers or jets, their split, the arrays the workers train on, the model config."""

    dataset: ShowerSample | JetSample | PointSample
    parts: dict[str, Any]
    arrays: dict[str, np.ndarray]
    model_config: Any

    @property
    def provenance(self) -> dict[str, Any]:
        """What a model card records about its data (the dataset's provenance and kind)."""
        return {**self.dataset.provenance, "kind": self.dataset.kind}


def layer_shapes(dataset: ShowerSample | JetSample) -> list[tuple[int, int]] | None:
    """(angular, radial) bins of each active layer of a shower dataset's geometry (None: jets)."""
    if dataset.kind != "showers":
        return None
    return [(layer.n_alpha, layer.n_radial) for layer in dataset.geometry.active_layers]


def complete_model_config(model_config: Any, shapes: list[tuple[int, int]] | None) -> Any:
    """A copy of the model config with the geometry-derived settings filled in (layer sizes)."""
    if shapes is None:
        return model_config.model_copy(deep=True)
    return with_geometry(model_config, shapes)


def event_slots(dataset: EventSample, data_spec: Any) -> tuple[int, int, bool]:
    """(truth slots, reco slots, truncate) of a set model, recorded in the data's provenance."""
    truth_max = data_spec.max_truth or int(dataset.truth_counts.max(initial=1))
    reco_max = data_spec.max_reco or int(dataset.reco_counts.max(initial=1))
    dataset.provenance["sets"] = {
        "max_truth": truth_max,
        "max_reco": reco_max,
        "truncate": data_spec.truncate,
        "truncated_events": int(
            ((dataset.truth_counts > truth_max) | (dataset.reco_counts > reco_max)).sum()
        ),
    }
    return truth_max, reco_max, data_spec.truncate


def prepare_data(data_spec: Any, model_config: Any) -> PreparedData:
    """Load and split a data spec's events; fill in data-dependent model settings."""
    dataset = load_dataset(data_spec)
    parts = split(dataset, data_spec)
    # point clouds: one number of hit slots for every part (the data's maximum unless capped)
    slots = (
        (getattr(data_spec, "max_hits", None) or int(dataset.counts.max()),)
        if dataset.kind == "points"
        else ()
    )
    if dataset.kind == "events":
        slots = event_slots(dataset, data_spec)
    x_train, c_train = parts["train"].model_inputs(*slots)
    x_val, c_val = parts["val"].model_inputs(*slots)
    arrays = {"x_train": x_train, "c_train": c_train, "x_val": x_val, "c_val": c_val}
    model_config = complete_model_config(model_config, layer_shapes(dataset))
    return PreparedData(dataset, parts, arrays, model_config)


def data_tags(dataset: ShowerSample | JetSample) -> dict[str, str]:
    """Registry tags describing what a model generates (geometry for showers, process for jets)."""
    if dataset.kind == "jets":
        process = dataset.provenance.get("process", "unknown")
        return {"farm.data": "jets", "farm.jets": f"{process},{dataset.n_particles}"}
    if dataset.kind == "points":
        return {"farm.data": "points", "farm.geometry": dataset.geometry.name}
    if dataset.kind == "events":
        process = dataset.provenance.get("process", "file")
        return {"farm.data": "events", "farm.events": process}
    return {"farm.data": "showers", "farm.geometry": dataset.geometry.name}
