"""Showers as Parquet: event_id int64, incident_energy float64 MeV, showers fixed_size_list<f32>.

Plain Arrow types, so pandas, polars and awkward read the files without farm; units, geometry and
voxel order live in the schema metadata under b"farm" (JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from farm import store
from farm.errors import FarmError

METADATA_KEY = b"farm"
VOXEL_ORDER = "layer slowest, then angular bin, radial bin fastest (CaloChallenge)"
COLUMNS = ("event_id", "incident_energy", "showers")


def showers_schema(
    n_voxels: int, geometry_name: str, extra_metadata: dict | None = None
) -> pa.Schema:
    """The Arrow schema, with units, geometry and voxel order in its metadata."""
    meta = {
        "format": "farm-showers",
        "version": 1,
        "geometry": geometry_name,
        "n_voxels": int(n_voxels),
        "voxel_order": VOXEL_ORDER,
        "units": {"incident_energy": "MeV", "showers": "MeV"},
        **(extra_metadata or {}),
    }
    return pa.schema(
        [
            pa.field("event_id", pa.int64(), nullable=False),
            pa.field("incident_energy", pa.float64(), nullable=False),
            pa.field("showers", pa.list_(pa.float32(), n_voxels), nullable=False),
        ],
        metadata={METADATA_KEY: json.dumps(meta).encode()},
    )


def to_table(
    showers: np.ndarray,
    e_inc: np.ndarray,
    event_ids: np.ndarray,
    geometry_name: str,
    extra_metadata: dict | None = None,
) -> pa.Table:
    """Build the Arrow table (zero-copy for float32 C-contiguous showers)."""
    x = np.ascontiguousarray(showers, dtype=np.float32)
    e = np.asarray(e_inc, dtype=np.float64).reshape(-1)
    ids = np.asarray(event_ids, dtype=np.int64).reshape(-1)
    if x.ndim != 2 or not (x.shape[0] == e.shape[0] == ids.shape[0]):
        raise FarmError(
            f"showers {x.shape}, incident energies {e.shape} and event ids {ids.shape} must share N"
        )
    schema = showers_schema(x.shape[1], geometry_name, extra_metadata)
    values = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    return pa.Table.from_arrays([pa.array(ids), pa.array(e), values], schema=schema)


def write_showers_parquet(
    url: str,
    showers: np.ndarray,
    e_inc: np.ndarray,
    event_ids: np.ndarray,
    geometry_name: str,
    extra_metadata: dict | None = None,
    row_group_size: int = 10_000,
    compression: str = "zstd",
) -> None:
    """Write one Parquet file atomically (row groups of row_group_size showers)."""
    table = to_table(showers, e_inc, event_ids, geometry_name, extra_metadata)
    with store.atomic_local_file(url) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size, compression=compression)


def _parquet_file(url: str) -> tuple[pq.ParquetFile, object]:
    fs, path = store.filesystem(url)
    try:
        handle = fs.open(path, "rb")
    except FileNotFoundError:
        raise FarmError(f"{url}: file not found") from None
    try:
        pf = pq.ParquetFile(handle)
    except (pa.ArrowInvalid, OSError) as exc:
        handle.close()
        raise FarmError(f"{url}: not a readable Parquet file ({exc})") from None
    missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        handle.close()
        raise FarmError(
            f"{url}: missing column {missing[0]!r}; a showers file needs {', '.join(COLUMNS)}"
        )
    return pf, handle


def metadata(schema: pa.Schema) -> dict:
    """The farm metadata dict stored in a schema ({} if none)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def _batch_arrays(batch: pa.RecordBatch | pa.Table) -> dict:
    col = batch.column("showers")
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n_voxels = col.type.list_size
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return {
        "event_id": batch.column("event_id").to_numpy(),
        "incident_energy": batch.column("incident_energy").to_numpy(),
        "showers": flat.astype(np.float32, copy=False).reshape(len(batch), n_voxels),
    }


def read_showers_parquet(url: str) -> dict:
    """Read a whole file: {'event_id', 'incident_energy', 'showers' (N, V) float32, 'metadata'}."""
    pf, handle = _parquet_file(url)
    try:
        table = pf.read(columns=list(COLUMNS))
    finally:
        handle.close()
    out = _batch_arrays(table)
    out["metadata"] = metadata(pf.schema_arrow)
    return out


def read_metadata(url: str) -> dict:
    """The farm metadata of a showers Parquet file (schema only)."""
    pf, handle = _parquet_file(url)
    handle.close()
    return metadata(pf.schema_arrow)


def read_incident_energies(url: str) -> np.ndarray:
    """(N,) incident energies in MeV, without reading the showers column."""
    pf, handle = _parquet_file(url)
    try:
        return pf.read(columns=["incident_energy"]).column(0).to_numpy().astype(np.float64)
    finally:
        handle.close()


def iter_showers_parquet(url: str, batch_rows: int = 10_000) -> Iterator[dict]:
    """Stream dicts of arrays (as read_showers_parquet, without metadata) batch by batch."""
    pf, handle = _parquet_file(url)
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=list(COLUMNS)):
            yield _batch_arrays(batch)
    finally:
        handle.close()
