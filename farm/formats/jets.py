"""JetNet-style jet files: HDF5 (particle_features, jet_features) and Parquet, at any fsspec URL.

In memory a jet sample is a dict of numpy arrays (what `farm.data.jets.generate_jets` returns):
- constituents (N, P, 4) float32: [eta_rel, phi_rel, pt_rel, mask], pT-ordered, zero padded;
- jet_features (N, 4) float32: [pt (GeV), eta, mass (GeV), n_constituents];
- optional (N,) columns: sd_mass float32 (GeV), event_id int64, event_index int64.

HDF5 (JetNet layout): datasets `particle_features`, `jet_features` and the optional columns, gzip;
feature names and units as attributes; generator provenance as JSON in attr `farm_metadata`.

Parquet (readable by pyarrow, pandas, polars, awkward alone): one row per jet with columns
event_id, jet_pt, jet_eta, jet_mass, n_constituents (int32), [jet_sd_mass], [event_index], and
eta_rel, phi_rel, pt_rel (fixed_size_list<float32>[P]), mask (fixed_size_list<bool>[P]);
units in field metadata, everything else as JSON in schema metadata key `farm.jets`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import numpy as np

from farm import store
from farm.errors import FarmError
from farm.formats.files import file_format

PARTICLE_FEATURES = ("eta_rel", "phi_rel", "pt_rel", "mask")
PARTICLE_UNITS = ("1", "rad", "1", "1")
JET_FEATURES = ("pt", "eta", "mass", "n_constituents")
JET_UNITS = ("GeV", "1", "GeV", "1")
OPTIONAL = {"sd_mass": np.float32, "event_id": np.int64, "event_index": np.int64}
OPTIONAL_UNITS = {"sd_mass": "GeV", "event_id": "1", "event_index": "1"}
META_KEY = "farm.jets"
FORMAT_VERSION = 1


def _validate(url: str, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check shapes and dtypes; returns arrays cast to the file dtypes."""
    for key in ("constituents", "jet_features"):
        if key not in data:
            raise FarmError(f"{url}: jet data has no {key!r} array")
    cons = np.asarray(data["constituents"], dtype=np.float32)
    feats = np.asarray(data["jet_features"], dtype=np.float32)
    if cons.ndim != 3 or cons.shape[2] != 4:
        raise FarmError(f"{url}: constituents must have shape (N, P, 4), got {cons.shape}")
    n = cons.shape[0]
    if feats.shape != (n, 4):
        raise FarmError(f"{url}: jet_features must have shape ({n}, 4), got {feats.shape}")
    out = {"constituents": cons, "jet_features": feats}
    for key, dtype in OPTIONAL.items():
        if key in data:
            arr = np.asarray(data[key]).astype(dtype, copy=False)
            if arr.shape != (n,):
                raise FarmError(f"{url}: {key} must have shape ({n},), got {arr.shape}")
            out[key] = arr
    unknown = sorted(set(data) - set(out))
    if unknown:
        allowed = ", ".join(["constituents", "jet_features", *OPTIONAL])
        raise FarmError(f"{url}: unknown jet array(s) {unknown}; allowed: {allowed}")
    return out


def _description(meta: dict | None, n_particles: int) -> dict:
    return {
        "format": "farm-jets",
        "version": FORMAT_VERSION,
        "particle_features": list(PARTICLE_FEATURES),
        "particle_units": list(PARTICLE_UNITS),
        "jet_features": list(JET_FEATURES),
        "jet_units": list(JET_UNITS),
        "n_particles": int(n_particles),
        "conventions": "eta_rel = eta_i - eta_jet; phi_rel wrapped to (-pi, pi]; "
        "pt_rel = pT_i / pT_jet; constituents sorted by pT, zero padded; mask 1 = real",
        "generator": meta or {},
    }


# ---------------------------------------------------------------- HDF5


def write_jets_h5(url: str, data: dict[str, np.ndarray], meta: dict | None = None) -> str:
    """Write a JetNet-style HDF5 file atomically; returns the URL."""
    import h5py

    arrays = _validate(url, data)
    n, P, _ = arrays["constituents"].shape
    gzip = {"compression": "gzip", "compression_opts": 4} if n else {}
    with store.atomic_local_file(url) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("particle_features", data=arrays["constituents"], **gzip)
        ds.attrs["feature_names"] = list(PARTICLE_FEATURES)
        ds.attrs["units"] = list(PARTICLE_UNITS)
        ds = f.create_dataset("jet_features", data=arrays["jet_features"], **gzip)
        ds.attrs["feature_names"] = list(JET_FEATURES)
        ds.attrs["units"] = list(JET_UNITS)
        for key in OPTIONAL:
            if key in arrays:
                ds = f.create_dataset(key, data=arrays[key], **gzip)
                ds.attrs["units"] = OPTIONAL_UNITS[key]
        f.attrs["particle_feature_names"] = list(PARTICLE_FEATURES)
        f.attrs["jet_feature_names"] = list(JET_FEATURES)
        f.attrs["energy_unit"] = "GeV"
        f.attrs["farm_metadata"] = json.dumps(_description(meta, P))
    return url


@contextlib.contextmanager
def _open_h5(url: str):
    """An h5py.File on any fsspec URL; unreadable or truncated files raise FarmError."""
    import h5py

    with store.open_input(url) as fobj:
        try:
            f = h5py.File(fobj, "r")
        except OSError as exc:
            raise FarmError(
                f"{url}: not a readable HDF5 file (truncated or corrupt: {exc})"
            ) from None
        with f:
            for key in ("particle_features", "jet_features"):
                if key not in f:
                    raise FarmError(f"{url}: missing dataset {key!r} (found: {sorted(f.keys())})")
            yield f


def _h5_slice(url: str, f, start: int, stop: int) -> dict[str, np.ndarray]:
    try:
        out = {
            "constituents": np.asarray(f["particle_features"][start:stop], dtype=np.float32),
            "jet_features": np.asarray(f["jet_features"][start:stop], dtype=np.float32),
        }
        for key, dtype in OPTIONAL.items():
            if key in f:
                out[key] = np.asarray(f[key][start:stop], dtype=dtype)
    except (OSError, KeyError) as exc:
        raise FarmError(f"{url}: cannot read jets (truncated or corrupt: {exc})") from None
    return _validate(url, out)


def _h5_meta(f) -> dict:
    raw = f.attrs.get("farm_metadata")
    return json.loads(raw) if raw is not None else {}


def read_jets_h5(url: str) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, metadata) from a JetNet-style HDF5 file."""
    with _open_h5(url) as f:
        return _h5_slice(url, f, 0, f["particle_features"].shape[0]), _h5_meta(f)


def iter_jets_h5(url: str, chunk_size: int = 10_000) -> Iterator[dict[str, np.ndarray]]:
    """Stream a JetNet-style HDF5 file in chunks of `chunk_size` jets."""
    with _open_h5(url) as f:
        n = f["particle_features"].shape[0]
        for start in range(0, n, chunk_size):
            yield _h5_slice(url, f, start, min(start + chunk_size, n))


# ---------------------------------------------------------------- Parquet


def _fixed_list(values: np.ndarray, P: int):
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), P)


def jets_to_arrow(data: dict[str, np.ndarray], meta: dict | None = None, url: str = "<memory>"):
    """A pyarrow Table, one row per jet, with units and provenance in its metadata."""
    import pyarrow as pa

    arrays = _validate(url, data)
    cons, feats = arrays["constituents"], arrays["jet_features"]
    n, P, _ = cons.shape
    n_const = feats[:, 3]
    if not np.array_equal(n_const, np.round(n_const)) or (n_const < 0).any():
        raise FarmError(f"{url}: jet_features n_constituents must be non-negative integers")
    mask = cons[..., 3]
    if not np.isin(mask, (0.0, 1.0)).all():
        raise FarmError(f"{url}: constituent mask must be 0 or 1")
    event_id = arrays.get("event_id", np.arange(n, dtype=np.int64))
    cols = [
        ("event_id", pa.array(event_id), "1"),
        ("jet_pt", pa.array(feats[:, 0]), "GeV"),
        ("jet_eta", pa.array(feats[:, 1]), "1"),
        ("jet_mass", pa.array(feats[:, 2]), "GeV"),
        ("n_constituents", pa.array(n_const.astype(np.int32)), "1"),
    ]
    if "sd_mass" in arrays:
        cols.append(("jet_sd_mass", pa.array(arrays["sd_mass"]), "GeV"))
    if "event_index" in arrays:
        cols.append(("event_index", pa.array(arrays["event_index"]), "1"))
    for k, (name, unit) in enumerate(zip(PARTICLE_FEATURES, PARTICLE_UNITS, strict=True)):
        values = cons[..., k] if name != "mask" else cons[..., k].astype(bool)
        cols.append((name, _fixed_list(np.ascontiguousarray(values), P), unit))
    fields = [pa.field(name, arr.type, metadata={"unit": unit}) for name, arr, unit in cols]
    schema = pa.schema(fields, metadata={META_KEY: json.dumps(_description(meta, P))})
    return pa.Table.from_arrays([arr for _, arr, _ in cols], schema=schema)


def write_jets_parquet(
    url: str,
    data: dict[str, np.ndarray],
    meta: dict | None = None,
    row_group_size: int = 10_000,
) -> str:
    """Write jets as Parquet (zstd, row groups of `row_group_size` jets) atomically."""
    import pyarrow.parquet as pq

    table = jets_to_arrow(data, meta, url)
    with store.atomic_local_file(url) as tmp:
        pq.write_table(table, tmp, row_group_size=max(1, row_group_size), compression="zstd")
    return url


def _fixed_to_numpy(column, P: int, dtype) -> np.ndarray:
    """(N, P) numpy array from a fixed_size_list column (Array or ChunkedArray)."""
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    flat = [c.flatten().to_numpy(zero_copy_only=False) for c in chunks]
    values = np.concatenate(flat) if flat else np.zeros(0)
    return values.astype(dtype, copy=False).reshape(-1, P)


def arrow_to_jets(table, url: str = "<memory>") -> dict[str, np.ndarray]:
    """Arrays (generate_jets layout, plus event_id) from a table or record batch of jets."""
    required = ["event_id", "jet_pt", "jet_eta", "jet_mass", "n_constituents", *PARTICLE_FEATURES]
    missing = [c for c in required if c not in table.schema.names]
    if missing:
        raise FarmError(f"{url}: missing Parquet column(s) {missing}")
    P = table.schema.field("eta_rel").type.list_size

    def col(name: str, dtype) -> np.ndarray:
        return np.asarray(table.column(name).to_numpy(), dtype=dtype)

    cons = np.stack(
        [_fixed_to_numpy(table.column(c), P, np.float32) for c in PARTICLE_FEATURES], -1
    )
    feats = np.stack(
        [
            col("jet_pt", np.float32),
            col("jet_eta", np.float32),
            col("jet_mass", np.float32),
            col("n_constituents", np.float32),
        ],
        axis=1,
    )
    out = {"constituents": cons.reshape(-1, P, 4), "jet_features": feats.reshape(-1, 4)}
    if "jet_sd_mass" in table.schema.names:
        out["sd_mass"] = col("jet_sd_mass", np.float32)
    out["event_id"] = col("event_id", np.int64)
    if "event_index" in table.schema.names:
        out["event_index"] = col("event_index", np.int64)
    return out


@contextlib.contextmanager
def _open_parquet(url: str):
    """A pyarrow ParquetFile on any fsspec URL; unreadable files raise FarmError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with store.open_input(url) as fobj:
        try:
            pf = pq.ParquetFile(fobj)
        except (pa.ArrowException, OSError) as exc:
            raise FarmError(
                f"{url}: not a readable Parquet file (truncated or corrupt: {exc})"
            ) from None
        yield pf


def _parquet_meta(pf) -> dict:
    raw = (pf.schema_arrow.metadata or {}).get(META_KEY.encode())
    return json.loads(raw) if raw else {}


def read_jets_parquet(url: str) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, metadata) from a farm jets Parquet file."""
    import pyarrow as pa

    with _open_parquet(url) as pf:
        try:
            table = pf.read()
        except (pa.ArrowException, OSError) as exc:
            raise FarmError(f"{url}: cannot read jets (truncated or corrupt: {exc})") from None
        return arrow_to_jets(table, url), _parquet_meta(pf)


def iter_jets_parquet(url: str, batch_size: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Stream jets by row group (default) or in batches of `batch_size` jets."""
    import pyarrow as pa

    with _open_parquet(url) as pf:
        try:
            if batch_size is None:
                for i in range(pf.num_row_groups):
                    yield arrow_to_jets(pf.read_row_group(i), url)
            else:
                for batch in pf.iter_batches(batch_size=batch_size):
                    yield arrow_to_jets(batch, url)
        except (pa.ArrowException, OSError) as exc:
            raise FarmError(f"{url}: cannot read jets (truncated or corrupt: {exc})") from None


# ---------------------------------------------------------------- dispatch by suffix


def read_jets_file(url: str) -> tuple[dict[str, np.ndarray], dict]:
    """Read a .h5/.hdf5 or .parquet jets file: (arrays, metadata)."""
    return (read_jets_parquet if file_format(url) == "parquet" else read_jets_h5)(url)


def write_jets(url: str, data: dict[str, np.ndarray], meta: dict | None = None) -> str:
    """Write a .h5/.hdf5 or .parquet jets file."""
    return (write_jets_parquet if file_format(url) == "parquet" else write_jets_h5)(url, data, meta)
