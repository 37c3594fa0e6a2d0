"""Data preparation shared by `farm train` and `farm tune`: load (or plan a stream), split, config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from farm.data.sources import check_finite_showers, load_dataset, split, split_rows
from farm.formats.reader import shower_geometry
from farm.formats.shower_rows import ShowerSource
from farm.geometry import load_geometry
from farm.samples import EventSample, JetSample, PointSample, ShowerSample
from farm.specs import CaloChallengeData
from farm.train.streaming import (
    FIT_BYTES,
    StreamPlan,
    block_rows,
    check_streamable,
    loading_choice,
    plan_blocks,
    seeded_subset,
)
from models.config import with_geometry


@dataclass
class PreparedData:
    """A job's showers or jets, their split, the arrays the workers train on, the model config."""

    dataset: ShowerSample | JetSample | PointSample
    """The loaded sample (streamed data: the in-memory validation part, with the provenance)."""
    parts: dict[str, Any]
    arrays: dict[str, np.ndarray]
    """x_train, c_train, x_val, c_val; streamed: x_fit, c_fit (preprocessing subsample), val."""
    model_config: Any
    stream: StreamPlan | None = None
    """What the workers stream instead of x_train (None: everything is in `arrays`)."""

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


ELECTRON_RECO_SLOTS = 50
"""Default reco slots of a model conditioned on the scattered electron (EIC point clouds)."""


def event_slots(dataset: EventSample, data_spec: Any, model_config: Any = None) -> dict[str, Any]:
    """`EventSample.model_inputs` keywords of a set model, recorded in the data's provenance.

    A truth-set model: truth and reco slots (None: the data's maxima). A model conditioned on the
    scattered electron has no truth slots and ELECTRON_RECO_SLOTS reco slots unless data.max_reco.
    """
    condition = getattr(model_config, "condition", "truth_set")
    electron = condition == "scattered_electron"
    truth_max = 0 if electron else data_spec.max_truth or int(dataset.truth_counts.max(initial=1))
    default_reco = ELECTRON_RECO_SLOTS if electron else int(dataset.reco_counts.max(initial=1))
    reco_max = data_spec.max_reco or default_reco
    over = dataset.reco_counts > reco_max
    if not electron:
        over |= dataset.truth_counts > truth_max
    dataset.provenance["sets"] = {
        "max_truth": truth_max,
        "max_reco": reco_max,
        "truncate": data_spec.truncate,
        "truncated_events": int(over.sum()),
    }
    kwargs = {"truth_max": truth_max, "reco_max": reco_max, "truncate": data_spec.truncate}
    if electron:
        dis = bool(model_config.dis_kinematics)
        dataset.provenance["sets"] |= {"condition": condition, "dis_kinematics": dis}
        kwargs |= {"condition": condition, "dis_kinematics": dis}
    return kwargs


def prepare_data(data_spec: Any, model_config: Any) -> PreparedData:
    """Load and split a data spec's events (or plan their stream); fill in model settings.

    Shower files (`data.source: calochallenge`) are streamed when `data.loading` says so, or
    when `auto` finds they would not fit in memory (`farm.train.streaming`); the choice is
    recorded in the provenance either way.
    """
    choice = None
    if isinstance(data_spec, CaloChallengeData):
        source = ShowerSource(data_spec.url, load_geometry(data_spec.geometry))
        n = min(source.n, data_spec.max_events or source.n)
        choice = loading_choice(data_spec, n, source.n_voxels)
        if choice["mode"] == "stream":
            check_streamable(model_config)
            return prepare_streamed(data_spec, model_config, source, n, choice)
    dataset = load_dataset(data_spec)
    if choice is not None:
        dataset.provenance["loading"] = choice
    parts = split(dataset, data_spec)
    # point clouds: one number of hit slots for every part (the data's maximum unless capped)
    slots = (
        (getattr(data_spec, "max_hits", None) or int(dataset.counts.max()),)
        if dataset.kind == "points"
        else ()
    )
    keywords = event_slots(dataset, data_spec, model_config) if dataset.kind == "events" else {}
    x_train, c_train = parts["train"].model_inputs(*slots, **keywords)
    x_val, c_val = parts["val"].model_inputs(*slots, **keywords)
    arrays = {"x_train": x_train, "c_train": c_train, "x_val": x_val, "c_val": c_val}
    model_config = complete_model_config(model_config, layer_shapes(dataset))
    return PreparedData(dataset, parts, arrays, model_config)


def prepare_streamed(
    spec: CaloChallengeData, model_config: Any, source: ShowerSource, n: int, choice: dict
) -> PreparedData:
    """The in-memory parts of streamed showers (preprocessing subsample, validation) and the plan.

    The split is the in-memory path's (`split_rows` over the first n rows in file order), so
    the same events train and validate either way; with fit_events and val_events at least the
    split sizes the preprocessing and val_loss see exactly the in-memory path's events.
    """
    geometry = shower_geometry([f.url for f in source.files], spec.geometry)
    s, st = spec.split, spec.stream
    idx = split_rows(n, spec)
    fit_cap = max(1, min(st.fit_events, FIT_BYTES // (4 * source.n_voxels)))
    fit_rows = seeded_subset(idx["train"], fit_cap, st.seed, 1)
    val_rows = seeded_subset(idx["val"], st.val_events, st.seed, 2)
    x_fit, e_fit = source.take(fit_rows)
    check_finite_showers(spec.url, x_fit, e_fit)
    x_val, e_val = source.take(val_rows)
    check_finite_showers(spec.url, x_val, e_val)
    e_min, e_max = incident_energy_range(source, n)
    rows_per_block = block_rows(source, st.block_events)
    blocks = plan_blocks(source, idx["train"], st.block_events, st.seed)
    provenance = {
        "source": spec.source,
        "url": spec.url,
        "geometry": geometry.name,
        "events": n,
        "e_inc_range": [e_min, e_max],
        "split": {
            "train": s.train,
            "val": s.val,
            "seed": s.seed,
            **{f"n_{k}": len(v) for k, v in idx.items()},
        },
        "loading": {
            **choice,
            "fit_events": len(fit_rows),
            "val_events": len(val_rows),
            "shuffle_buffer": st.shuffle_buffer,
            "seed": st.seed,
            "blocks": len(blocks),
            "rows_per_block": rows_per_block,
        },
    }
    val = ShowerSample(x_val, e_val, geometry, provenance)
    arrays = {
        "x_fit": x_fit,
        "c_fit": e_fit.reshape(-1, 1),
        "x_val": x_val,
        "c_val": e_val.reshape(-1, 1),
    }
    plan = StreamPlan(source, blocks, rows_per_block, len(idx["train"]), st.shuffle_buffer, st.seed)
    model_config = complete_model_config(model_config, layer_shapes(val))
    return PreparedData(val, {"val": val}, arrays, model_config, stream=plan)


def incident_energy_range(source: ShowerSource, n: int) -> tuple[float, float]:
    """(min, max) incident energy of the first n showers, reading only the energies file by file."""
    from farm.formats import calochallenge, showers_parquet
    from farm.formats.files import file_format

    lo, hi = np.inf, -np.inf
    for f, offset in zip(source.files, source.offsets[:-1], strict=True):
        if offset >= n:
            break
        module = showers_parquet if file_format(f.url) == "parquet" else calochallenge
        e = module.read_incident_energies(f.url)[: n - offset]
        if e.size:
            lo, hi = min(lo, float(e.min())), max(hi, float(e.max()))
    return lo, hi


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
