"""Export a finished campaign's shards as one file (the CaloChallenge's tools take one input file).

Shower campaigns are copied shard by shard in event-id order into one CaloChallenge HDF5 file
(`incident_energies` (N, 1), `showers` (N, V), gzip, farm's attributes) or one farm showers Parquet
file (dense, or with `layout="sparse"` the lossless sparse layout whatever the shards' layout),
so memory holds one shard at a time; jet campaigns become one JetNet HDF5 or Parquet file.
Point-cloud campaigns become one farm-points Parquet file (farm.formats.points_parquet, a row
group per shard) or, as HDF5, the CaloChallenge file of their voxel projection onto the cell
geometry's binning (`PointSample.to_voxels`, geometry `<cell geometry>-voxels`).
The file appears under its final name only when complete (farm.store.atomic_local_file).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import h5py
import numpy as np

from farm import records, store
from farm.campaign.worker import shard_path
from farm.errors import FarmError
from farm.formats import calochallenge as cc
from farm.formats.files import file_format
from farm.formats.reader import read_jets, read_showers, write_sample
from farm.geometry import CaloGeometry, geometry_to_doc, load_cell_geometry, load_geometry
from farm.records import CampaignRecord
from farm.samples import PointSample, ShowerSample
from farm.sharding import Shard


def export_campaign(
    campaign_id: str, out_url: str, fmt: str | None = None, layout: str | None = None
) -> str:
    """Merge a finished campaign's shards into one file at `out_url`; returns the URL.

    `layout` (dense, the default, or sparse) lays out a shower campaign's Parquet file,
    whatever layout its shards have.
    """
    campaign = records.load(campaign_id)
    fmt = fmt or file_format(out_url)
    if file_format(out_url) != fmt:
        raise FarmError(f"{out_url}: the name ends in another suffix than format {fmt!r} writes")
    if layout is not None and (fmt != "parquet" or campaign.kind != "showers"):
        raise FarmError(
            f"--layout {layout} lays out voxel showers in Parquet, but campaign {campaign_id} "
            f"holds {campaign.kind} and the export is {fmt}; drop --layout"
        )
    summary = records.read_summary(campaign)
    if summary is None:
        raise FarmError(f"campaign {campaign_id} is not complete yet (no summary.json); resume it")
    source = "h5" if "h5" in campaign.job.formats else "parquet"
    urls = [campaign.path(shard_path(source, s.id)) for s in campaign.plan.shards()]
    if campaign.kind == "jets":
        jets = read_jets(campaign.path(source))
        meta = {"campaign": campaign.id, "model": campaign.model.key, "exported_from": source}
        return write_sample(out_url, jets, meta)
    if campaign.kind == "points":
        _export_points(campaign, urls, out_url, fmt)
        return out_url
    geometry = load_geometry(campaign.geometry)
    shards = (
        (s, _checked(s, read_showers(u, geometry), u))
        for s, u in zip(campaign.plan.shards(), urls, strict=True)
    )
    if fmt == "parquet":
        _showers_parquet(campaign, geometry, shards, out_url, layout or "dense")
    else:
        _showers_h5(campaign, geometry, shards, out_url)
    return out_url


def _meta(campaign: CampaignRecord) -> dict:
    return {
        "campaign": campaign.id,
        "model": campaign.model.key,
        "events": campaign.plan.events,
        "seed": campaign.plan.seed,
        "sampler": campaign.sampler,
        "nfe": campaign.nfe,
    }


def _checked(shard: Shard, sample: ShowerSample | PointSample, url: str):
    """The shard's sample, refused in one line when it holds another number of events."""
    if len(sample) != shard.n:
        raise FarmError(
            f"{url}: {len(sample)} events, but shard {shard.id} holds {shard.n}; "
            "the shard file is not the one its manifest committed"
        )
    return sample


def _showers_h5(
    campaign: CampaignRecord,
    geometry: CaloGeometry,
    shards: Iterator[tuple[Shard, ShowerSample]],
    out_url: str,
    extra_attrs: dict | None = None,
) -> None:
    """One CaloChallenge HDF5 file, filled shard by shard."""
    n, v = campaign.plan.events, geometry.n_voxels
    rows = max(1, min(n, (1 << 20) // (4 * v)))
    opts = {"compression": "gzip", "compression_opts": 4}
    with store.atomic_local_file(out_url) as tmp, h5py.File(tmp, "w") as f:
        e_ds = f.create_dataset(cc.E_KEY, (n, 1), np.float64, chunks=(min(n, 65536), 1), **opts)
        s_ds = f.create_dataset(cc.SHOWERS_KEY, (n, v), np.float32, chunks=(rows, v), **opts)
        for shard, sample in shards:
            e_ds[shard.start : shard.stop, 0] = sample.e_inc
            s_ds[shard.start : shard.stop] = sample.showers
        attrs = {
            "format": "calochallenge",
            "geometry": geometry.name,
            "units": {cc.E_KEY: "MeV", cc.SHOWERS_KEY: "MeV"},
            "voxel_order": cc.VOXEL_ORDER,
            **_meta(campaign),
            **(extra_attrs or {}),
        }
        f.attrs[cc.ATTRS_KEY] = json.dumps(attrs)


def _showers_parquet(
    campaign: CampaignRecord,
    geometry: CaloGeometry,
    shards: Iterator[tuple[Shard, ShowerSample]],
    out_url: str,
    layout: str = "dense",
) -> None:
    """One farm showers Parquet file (dense or sparse layout), a row group per shard."""
    import pyarrow.parquet as pq

    from farm.formats.showers_parquet import parquet_options, showers_schema, to_table

    meta = _meta(campaign)
    schema = showers_schema(geometry.n_voxels, geometry.name, meta, layout)
    with (
        store.atomic_local_file(out_url) as tmp,
        pq.ParquetWriter(tmp, schema, **parquet_options(layout)) as w,
    ):
        for shard, sample in shards:
            ids = shard.event_ids()
            w.write_table(to_table(sample.showers, sample.e_inc, ids, geometry.name, meta, layout))


def _export_points(campaign: CampaignRecord, urls: list[str], out_url: str, fmt: str) -> None:
    """A point-cloud campaign as one farm-points Parquet file or its voxel projection in HDF5."""
    import pyarrow.parquet as pq

    from farm.formats.points_parquet import points_schema, read_points_parquet, to_table

    cells = load_cell_geometry(campaign.geometry)

    def shards() -> Iterator[tuple[Shard, PointSample]]:
        for shard, url in zip(campaign.plan.shards(), urls, strict=True):
            sample = _checked(shard, read_points_parquet(url, cells), url)
            sample.event_id = shard.event_ids()
            yield shard, sample

    if fmt == "h5":
        binning = cells.voxel_binning
        projected = ((shard, points.to_voxels(binning)) for shard, points in shards())
        projection = {
            "projected_from": {"format": "farm-points", "geometry": cells.name},
            "projection": "farm.samples.project_points: hit energy summed into its voxel",
            "binning": geometry_to_doc(binning, cells.source),
        }
        _showers_h5(campaign, binning, projected, out_url, projection)
        return
    meta = {**_meta(campaign), "exported_from": "parquet"}
    with (
        store.atomic_local_file(out_url) as tmp,
        pq.ParquetWriter(tmp, points_schema(cells, meta), compression="zstd") as w,
    ):
        for _, sample in shards():
            w.write_table(to_table(sample, meta))
