"""Campaign validation of point-cloud showers: the validated events' clouds and their reference.

The point-cloud counterpart of farm.campaign.validate's readers (the same seeded event-id draw,
the same seeded reference subset): each shard holding validated events is read as points Parquet
(farm.formats.points_parquet, whose reader checks counts, energies and the geometry) and cut to
those events; the 'simulator' reference is farm.data.hit_sim's hits (CaloClouds' ILD-like
readout, arXiv:2305.04847) at each validated event's incident energy, twice, so both reference
halves see exactly the validated energies. farm.evaluation.points compares them (point
features, the voxel projection's CaloChallenge features, FPD/KPD and classifier AUCs).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from farm.campaign.worker import shard_path
from farm.cards import ModelCard
from farm.data.hit_sim import simulate_hits
from farm.errors import FarmError
from farm.formats.points_parquet import concat_points, read_points_parquet
from farm.formats.reader import kind_of, read_points
from farm.geometry import CellGeometry
from farm.records import CampaignRecord
from farm.samples import PointSample
from farm.specs import SIMULATOR_REFERENCE, CampaignJob, CampaignValidation

SIMULATED_POINTS = "simulated_points"


def check_reference(
    job: CampaignJob,
    card: ModelCard,
    geometry: CellGeometry,
    model: str,
    bounds: tuple[float, float],
) -> None:
    """Submit-time checks of a points campaign's validation block: one FarmError line."""
    v = job.validation
    if v is None:
        return
    if v.reference == SIMULATOR_REFERENCE:
        source = card.data.source
        if source != SIMULATED_POINTS:
            raise FarmError(
                f"{job.name}: validation.reference: 'simulator' needs a model trained on "
                f"{SIMULATED_POINTS} data, but {model} was trained on {source or 'unrecorded'!s} "
                "data; give a reference URL instead"
            )
        lo, hi = geometry.energy_range
        if bounds[0] < lo * (1 - 1e-9) or bounds[1] > hi * (1 + 1e-9):
            raise FarmError(
                f"{job.name}: validation.reference: the hit simulator covers {lo:.4g}-{hi:.4g} "
                f"MeV for geometry {geometry.name!r}, the conditions span {bounds[0]:.4g}-"
                f"{bounds[1]:.4g} MeV; give a reference URL instead"
            )
        return
    kind = kind_of(v.reference)
    if kind != "points":
        raise FarmError(
            f"{job.name}: validation.reference {v.reference} holds {kind}, but model {model} "
            f"generates point-cloud showers of geometry {geometry.name!r}; give a point-cloud "
            "Parquet file or folder of that geometry, or 'simulator'"
        )
    ref = read_points(v.reference)
    if ref.geometry.name != geometry.name:
        raise FarmError(
            f"{job.name}: validation.reference {v.reference} holds point clouds of geometry "
            f"{ref.geometry.name!r}, the model generates {geometry.name!r}"
        )
    if len(ref) < 4:
        raise FarmError(
            f"{job.name}: validation.reference {v.reference} holds only {len(ref)} events"
        )


def read_point_events(
    campaign: CampaignRecord, event_ids: np.ndarray, geometry: CellGeometry
) -> PointSample:
    """The point clouds of sorted event ids, reading only the shards that hold them."""
    plan = campaign.plan
    shard_of = plan.shard_of(event_ids)
    parts = []
    for shard_id in np.unique(shard_of):
        shard = plan.shard(int(shard_id))
        url = campaign.path(shard_path("parquet", shard.id))
        sample = read_points_parquet(url, geometry)
        wanted = event_ids[shard_of == shard_id]
        rows = np.flatnonzero(np.isin(sample.event_id, wanted))
        if len(rows) != len(wanted):
            raise FarmError(f"{url}: holds {len(rows)} of the {len(wanted)} events validated there")
        parts.append(sample.subset(rows[np.argsort(sample.event_id[rows], kind="stable")]))
    if not parts:
        raise FarmError(f"campaign {campaign.id}: no events to validate")
    return concat_points(parts, {"campaign": campaign.id})


def reference_points(
    spec: CampaignValidation, geometry: CellGeometry, e_inc: np.ndarray
) -> PointSample:
    """The reference for validated events with energies e_inc (simulator: two per event)."""
    if spec.reference == SIMULATOR_REFERENCE:
        energies = np.concatenate([e_inc, e_inc])
        hits = simulate_hits(geometry, energies, np.random.default_rng([spec.seed, 1]))
        return PointSample(hits.counts, hits.hits, hits.layer, energies, geometry)
    source = read_points(spec.reference)
    n = min(spec.reference_events or 2 * len(e_inc), len(source))
    rows = np.sort(np.random.default_rng([spec.seed, 1]).choice(len(source), n, replace=False))
    return replace(source.subset(rows), provenance={"url": spec.reference})
