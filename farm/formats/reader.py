"""farm's one I/O face: showers, jets or events from a file, a folder of shards or a campaign id.

Locations are fsspec URLs (local paths, file://, s3://) of a .h5/.hdf5/.parquet file or of a
folder of such shards, or the id of a campaign in the store (its output is read: HDF5 where it
wrote HDF5, else Parquet). Every reader returns a typed sample in physical units; every problem is
one FarmError line naming the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from farm import records, store
from farm.errors import FarmError
from farm.formats.files import data_files, detect_kind, file_format
from farm.geometry import CaloGeometry, load_geometry
from farm.samples import EventSample, JetSample, JetTruth, PointSample, Sample, ShowerSample


def campaign_of(location: str) -> records.CampaignRecord | None:
    """The campaign a location names by its id (None for files and folders)."""
    if records.exists(location) and not store.exists(location):
        return records.load(location)
    return None


def resolve(location: str) -> str:
    """The URL a location names: a campaign id becomes its output folder of shards."""
    campaign = campaign_of(location)
    if campaign is None:
        return location
    return campaign.path("h5" if "h5" in campaign.job.formats else "parquet")


def kind_of(location: str) -> str:
    """'showers', 'points', 'jets' or 'events': what a location holds (by its first file)."""
    return detect_kind(data_files(resolve(location))[0])


def recorded_geometry(url: str) -> str:
    """The geometry name a shower file records (Parquet metadata, farm's HDF5 attribute) or ''."""
    if file_format(url) == "parquet":
        from farm.formats.showers_parquet import read_metadata

        return read_metadata(url).get("geometry", "")
    from farm.formats.calochallenge import read_attrs

    return read_attrs(url).get("geometry") or ""


def shower_geometry(urls: list[str], geometry: CaloGeometry | str | None) -> CaloGeometry:
    """The geometry of shower files: the given one (checked against what they record) or theirs."""
    names = {n for n in (recorded_geometry(u) for u in urls) if n}
    if geometry is None:
        if len(names) != 1:
            raise FarmError(
                "cannot tell the showers' geometry: pass --geometry (ds1-photons, ds1-pions, "
                "ds2, ds3)" + (f"; the files name {sorted(names)}" if names else "")
            )
        return load_geometry(names.pop())
    geo = load_geometry(geometry) if isinstance(geometry, str) else geometry
    other = sorted(names - {geo.name})
    if other and not geo.source.endswith(".xml"):
        raise FarmError(
            f"{urls[0]}: files were written for geometry {other[0]!r}, not {geo.name!r}"
        )
    return geo


def read_showers(location: str, geometry: CaloGeometry | str | None = None) -> ShowerSample:
    """Showers from a CaloChallenge HDF5 / farm Parquet file, a folder of shards or a campaign."""
    from farm.formats.calochallenge import read_calochallenge
    from farm.formats.showers_parquet import read_showers_parquet

    urls = data_files(resolve(location))
    campaign = campaign_of(location)
    if geometry is None and campaign is not None:
        geometry = campaign.geometry
    geo = shower_geometry(urls, geometry)
    showers, e_inc, ids = [], [], []
    for url in urls:
        if file_format(url) == "parquet":
            data = read_showers_parquet(url)
            geo.check_voxels(data["showers"].shape[1], url)
            showers.append(data["showers"])
            e_inc.append(data["incident_energy"])
            ids.append(data["event_id"])
        else:
            s, e = read_calochallenge(url, geo)
            showers.append(s)
            e_inc.append(e)
            ids.append(None)
    event_id = None if any(i is None for i in ids) else np.concatenate(ids)
    provenance = {"url": location}
    return ShowerSample(np.concatenate(showers), np.concatenate(e_inc), geo, provenance, event_id)


def read_jets(location: str) -> JetSample:
    """Jets (JetNet layout) from a farm jets Parquet / HDF5 file, a folder of shards or a campaign."""
    from farm.formats.jets import read_jets_file

    parts = [read_jets_file(u)[0] for u in data_files(resolve(location))]
    ids = [p.get("event_id") for p in parts]
    return JetSample(
        np.concatenate([p["constituents"] for p in parts]),
        np.concatenate([p["jet_features"] for p in parts]),
        {"url": location},
        None if any(i is None for i in ids) else np.concatenate(ids),
    )


def read_points(location: str) -> PointSample:
    """Point-cloud showers from a farm points Parquet file, a folder of shards or a campaign."""
    from farm.formats.points_parquet import concat_points, read_points_parquet

    urls = data_files(resolve(location))
    for url in urls:
        if file_format(url) != "parquet":
            raise FarmError(f"{url}: point-cloud showers are stored as Parquet, not HDF5")
    parts = [read_points_parquet(u) for u in urls]
    names = sorted({p.geometry.name for p in parts})
    if len(names) > 1:
        raise FarmError(f"{location}: point-cloud files of several geometries {names}")
    return concat_points(parts, {"url": location})


def read_events(location: str) -> EventSample:
    """Whole events (truth and reco sets) from a farm events Parquet file, folder or campaign."""
    from farm.formats.events import read_events_parquet

    urls = data_files(resolve(location))
    for url in urls:
        if file_format(url) != "parquet":
            raise FarmError(f"{url}: events are stored as Parquet, not HDF5")
    parts = [read_events_parquet(u) for u in urls]
    columns = {frozenset(p.event) for p in parts}
    if len(columns) > 1:
        raise FarmError(f"{location}: event files with different event-level columns")
    return EventSample.concat(parts, {"url": location})


def read_sample(location: str, geometry: CaloGeometry | str | None = None) -> Sample:
    """Showers, point-cloud showers, jets or events, whichever the location holds."""
    kind = kind_of(location)
    if kind == "events":
        return read_events(location)
    if kind == "jets":
        return read_jets(location)
    if kind == "points":
        return read_points(location)
    return read_showers(location, geometry)


def read_truth_energies(location: str) -> np.ndarray:
    """Incident energies (MeV) of a showers file, folder or campaign (reads only that column)."""
    from farm.formats.calochallenge import read_incident_energies
    from farm.formats.showers_parquet import read_incident_energies as read_parquet_energies

    urls = data_files(resolve(location))
    if detect_kind(urls[0]) == "points":
        return read_points(location).e_inc
    parts = [
        read_parquet_energies(u) if file_format(u) == "parquet" else read_incident_energies(u)
        for u in urls
    ]
    return np.concatenate(parts)


def read_truth_jets(location: str) -> JetTruth:
    """Truth (jet pT GeV, eta, kept constituent count) per row of a jets file or folder of shards."""
    jets = read_jets(location)
    if not len(jets):
        raise FarmError(f"{location}: no jets with jet_features (pT, eta) to condition on")
    return jets.truth()


def write_sample(
    url: str, sample: Sample, meta: dict[str, Any] | None = None, layout: str = "dense"
) -> str:
    """Write showers (.h5 or .parquet), point-cloud showers or events (.parquet), jets atomically.

    `layout` is that of showers Parquet (farm.formats.showers_parquet.LAYOUTS); other files refuse
    a sparse one.
    """
    file_format(url)
    if layout != "dense" and (sample.kind != "showers" or file_format(url) != "parquet"):
        raise FarmError(f"{url}: the {layout} layout is one of voxel showers in Parquet only")
    if sample.kind == "events":
        from farm.formats.events import write_events_parquet

        if file_format(url) != "parquet":
            raise FarmError(f"{url}: events are written as Parquet, not HDF5")
        return write_events_parquet(url, sample, meta)
    if sample.kind == "jets":
        from farm.formats.jets import write_jets

        return write_jets(url, sample.as_dict(), meta)
    if sample.kind == "points":
        from farm.formats.points_parquet import write_points_parquet

        if file_format(url) != "parquet":
            raise FarmError(f"{url}: point-cloud showers are written as Parquet, not HDF5")
        return write_points_parquet(url, sample, meta)
    if file_format(url) == "parquet":
        from farm.formats.showers_parquet import write_showers_parquet

        ids = sample.event_id if sample.event_id is not None else np.arange(len(sample))
        write_showers_parquet(
            url, sample.showers, sample.e_inc, ids, sample.geometry.name, meta, layout=layout
        )
    else:
        from farm.formats.calochallenge import write_calochallenge

        write_calochallenge(url, sample.showers, sample.e_inc, sample.geometry, meta)
    return url
