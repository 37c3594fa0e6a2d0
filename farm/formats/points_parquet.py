"""Point-cloud showers as Parquet: one row per shower, its hits as parallel list columns.

Columns: event_id int64, incident_energy float64 (MeV), n_hits int32, x, y, z list<float32> (mm),
layer list<int16>, e list<float32> (MeV). Plain Arrow types, so pandas, pyarrow and awkward read
the files without farm; units, geometry and column meanings live in the schema metadata under
b"farm" (JSON). Reading checks what a model or a hand-made file could get wrong: n_hits against
the lists, non-finite or non-positive energies, hits outside the geometry.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from farm import store
from farm.errors import FarmError
from farm.geometry import CellGeometry, load_cell_geometry
from farm.samples import PointSample

METADATA_KEY = b"farm"
FORMAT = "farm-points"
LISTS = ("x", "y", "z", "layer", "e")
COLUMNS = ("event_id", "incident_energy", "n_hits", *LISTS)
UNITS = {"incident_energy": "MeV", "x": "mm", "y": "mm", "z": "mm", "e": "MeV", "layer": "index"}


def points_schema(geometry: CellGeometry, extra_metadata: dict | None = None) -> pa.Schema:
    """The Arrow schema, with units, geometry and column meanings in its metadata."""
    meta = {
        "format": FORMAT,
        "version": 1,
        "geometry": geometry.name,
        "units": UNITS,
        "hits": "x, y: cell centre; z: sensor plane of `layer`; e: signal above threshold",
        "cell_size_mm": geometry.cell_size,
        "n_layers": geometry.n_layers,
        **(extra_metadata or {}),
    }
    f32 = pa.list_(pa.float32())
    return pa.schema(
        [
            pa.field("event_id", pa.int64(), nullable=False),
            pa.field("incident_energy", pa.float64(), nullable=False),
            pa.field("n_hits", pa.int32(), nullable=False),
            pa.field("x", f32, nullable=False),
            pa.field("y", f32, nullable=False),
            pa.field("z", f32, nullable=False),
            pa.field("layer", pa.list_(pa.int16()), nullable=False),
            pa.field("e", f32, nullable=False),
        ],
        metadata={METADATA_KEY: json.dumps(meta).encode()},
    )


def to_table(sample: PointSample, extra_metadata: dict | None = None) -> pa.Table:
    """Build the Arrow table of a PointSample (list columns share the counts' offsets)."""
    n = len(sample)
    ids = sample.event_id if sample.event_id is not None else np.arange(n)
    offsets = pa.array(sample.offsets.astype(np.int32))
    lists = [
        pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(sample.hits[:, k])))
        for k in range(3)
    ]
    layer = pa.ListArray.from_arrays(offsets, pa.array(sample.layer.astype(np.int16)))
    e = pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(sample.hits[:, 3])))
    arrays = [
        pa.array(np.asarray(ids, dtype=np.int64)),
        pa.array(np.asarray(sample.e_inc, dtype=np.float64)),
        pa.array(sample.counts.astype(np.int32)),
        *lists,
        layer,
        e,
    ]
    return pa.Table.from_arrays(arrays, schema=points_schema(sample.geometry, extra_metadata))


def write_points_parquet(
    url: str, sample: PointSample, extra_metadata: dict | None = None, row_group_size: int = 2_000
) -> str:
    """Write one Parquet file atomically (zstd, row groups of row_group_size showers)."""
    table = to_table(sample, extra_metadata)
    with store.atomic_local_file(url) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size, compression="zstd")
    return url


def metadata(schema: pa.Schema) -> dict:
    """The farm metadata dict stored in a schema ({} if none)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def read_metadata(url: str) -> dict:
    """The farm metadata of a points Parquet file (its schema only)."""
    with store.open_input(url) as handle:
        return metadata(pq.ParquetFile(handle).schema_arrow)


def _read_table(url: str) -> pa.Table:
    try:
        with store.open_input(url) as handle:
            pf = pq.ParquetFile(handle)
            missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
            if missing:
                raise FarmError(
                    f"{url}: missing column {missing[0]!r}; a point-cloud file needs "
                    f"{', '.join(COLUMNS)}"
                )
            return pf.read(columns=list(COLUMNS))
    except FileNotFoundError:
        raise FarmError(f"{url}: file not found") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise FarmError(f"{url}: not a readable Parquet file ({exc})") from None


def _flat(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, per-row lengths) of a list column."""
    col = table.column(name).combine_chunks()
    lengths = col.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    return col.flatten().to_numpy(zero_copy_only=False), lengths.astype(np.int64)


def read_points_parquet(url: str, geometry: CellGeometry | None = None) -> PointSample:
    """A PointSample from one file; one FarmError line naming the file for any bad content."""
    table = _read_table(url)
    meta = metadata(table.schema)
    if geometry is None:
        geometry = load_cell_geometry(meta.get("geometry", ""))
    counts = table.column("n_hits").to_numpy().astype(np.int64)
    cols = {}
    for name in LISTS:
        values, lengths = _flat(table, name)
        bad = np.flatnonzero(lengths != counts)
        if bad.size:
            i = bad[0]
            raise FarmError(
                f"{url}: row {i} has n_hits = {counts[i]} but {lengths[i]} values in list "
                f"column {name!r}"
            )
        cols[name] = values
    e = cols["e"].astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(e) | (e <= 0))
    if bad.size:
        raise FarmError(f"{url}: hit energy {float(e[bad[0]])} MeV is not a positive finite number")
    layer = cols["layer"].astype(np.int16)
    outside = ~geometry.contains(cols["x"], cols["y"], layer)
    if outside.any():
        i = np.flatnonzero(outside)[0]
        raise FarmError(
            f"{url}: hit at x = {cols['x'][i]:g} mm, y = {cols['y'][i]:g} mm, layer {layer[i]} "
            f"lies outside geometry {geometry.name!r}"
        )
    hits = np.stack([cols["x"], cols["y"], cols["z"], e], axis=1).astype(np.float32)
    return PointSample(
        counts,
        hits,
        layer,
        table.column("incident_energy").to_numpy().astype(np.float64),
        geometry,
        {"url": url, **{k: meta[k] for k in ("seed", "shard") if k in meta}},
        table.column("event_id").to_numpy().astype(np.int64),
    )


def concat_points(parts: list[PointSample], provenance: dict) -> PointSample:
    """One PointSample from several (same geometry)."""
    ids = [p.event_id for p in parts]
    return PointSample(
        np.concatenate([p.counts for p in parts]),
        np.concatenate([p.hits for p in parts]),
        np.concatenate([p.layer for p in parts]),
        np.concatenate([p.e_inc for p in parts]),
        parts[0].geometry,
        provenance,
        None if any(i is None for i in ids) else np.concatenate(ids),
    )
