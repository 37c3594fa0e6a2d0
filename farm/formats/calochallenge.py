"""CaloChallenge 2022 HDF5 files: `incident_energies` (N, 1) and `showers` (N, n_voxels), MeV, gzip.

Read and written through fsspec URLs (local or s3://); writes are atomic (farm.store). farm's
provenance rides along as file attributes (`farm`: JSON with geometry, units, voxel order and the
writer's metadata), which the challenge's own tools ignore; the datasets are unchanged.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import h5py
import numpy as np

from farm import store
from farm.errors import FarmError
from farm.geometry import CaloGeometry, load_geometry

E_KEY = "incident_energies"
SHOWERS_KEY = "showers"
ATTRS_KEY = "farm"
VOXEL_ORDER = "layer slowest, then angular bin, radial bin fastest (CaloChallenge)"


def _geometry(geometry: CaloGeometry | str | None) -> CaloGeometry | None:
    return load_geometry(geometry) if isinstance(geometry, str) else geometry


def write_calochallenge(
    url: str,
    showers: np.ndarray,
    e_inc: np.ndarray,
    geometry: CaloGeometry | str | None = None,
    metadata: dict | None = None,
    compression_level: int = 4,
) -> None:
    """Write showers (N, V) and incident energies (N,) or (N, 1) in MeV as a CaloChallenge file.

    `metadata` (JSON-able) joins the `farm` file attribute beside geometry, units and voxel order.
    """
    showers = np.asarray(showers)
    e = np.asarray(e_inc, dtype=np.float64).reshape(-1, 1)
    if showers.ndim != 2 or showers.shape[0] != e.shape[0]:
        raise FarmError(
            f"{url}: showers must be (N, n_voxels) with N = len(incident_energies); got "
            f"{showers.shape} and {e.shape[0]} energies"
        )
    if not np.issubdtype(showers.dtype, np.floating):
        showers = showers.astype(np.float32)
    geo = _geometry(geometry)
    if geo is not None:
        geo.check_voxels(showers.shape[1], url)
    n, v = showers.shape
    rows = max(1, min(n, (1 << 20) // max(v * showers.dtype.itemsize, 1)))
    with store.atomic_local_file(url) as tmp, h5py.File(tmp, "w") as f:
        opts = {"compression": "gzip", "compression_opts": compression_level}
        f.create_dataset(E_KEY, data=e, chunks=(max(1, min(n, 65536)), 1) if n else None, **opts)
        f.create_dataset(SHOWERS_KEY, data=showers, chunks=(rows, v) if n and v else None, **opts)
        attrs = {
            "format": "calochallenge",
            "geometry": geo.name if geo is not None else None,
            "units": {E_KEY: "MeV", SHOWERS_KEY: "MeV"},
            "voxel_order": VOXEL_ORDER,
            **(metadata or {}),
        }
        f.attrs[ATTRS_KEY] = json.dumps(attrs, default=str)


def attrs_of(f: h5py.File) -> dict:
    """Farm's `farm` attribute of an open CaloChallenge file ({} for files written elsewhere)."""
    raw = f.attrs.get(ATTRS_KEY)
    return json.loads(raw) if raw is not None else {}


def read_attrs(url: str) -> dict:
    """Farm's `farm` attribute of a CaloChallenge file ({} for files written elsewhere)."""
    with _open(url) as f:
        return attrs_of(f)


@contextlib.contextmanager
def _open(url: str) -> Iterator[h5py.File]:
    """Open an HDF5 file at a URL, turning missing/corrupt files into FarmError naming the file."""
    fs, path = store.filesystem(url)
    try:
        if store.is_local(url):
            handle = h5py.File(path, "r")
        else:
            handle = h5py.File(fs.open(path, "rb"), "r")
    except FileNotFoundError:
        raise FarmError(f"{url}: file not found") from None
    except OSError as exc:
        raise FarmError(f"{url}: not a readable HDF5 file, truncated or corrupt ({exc})") from None
    try:
        yield handle
    finally:
        handle.close()


def _datasets(f: h5py.File, url: str, geometry: CaloGeometry | None):
    """Check names and shapes; returns (showers dataset, energies dataset, n_events)."""
    missing = [k for k in (E_KEY, SHOWERS_KEY) if k not in f]
    if missing:
        raise FarmError(
            f"{url}: missing dataset {missing[0]!r}; a CaloChallenge file needs {E_KEY!r} (N, 1) "
            f"and {SHOWERS_KEY!r} (N, n_voxels), found {sorted(f.keys())}"
        )
    e_ds, s_ds = f[E_KEY], f[SHOWERS_KEY]
    if s_ds.ndim != 2:
        raise FarmError(f"{url}: {SHOWERS_KEY!r} has shape {s_ds.shape}, expected (N, n_voxels)")
    if e_ds.ndim not in (1, 2) or (e_ds.ndim == 2 and e_ds.shape[1] != 1):
        raise FarmError(f"{url}: {E_KEY!r} has shape {e_ds.shape}, expected (N, 1)")
    if e_ds.shape[0] != s_ds.shape[0]:
        raise FarmError(
            f"{url}: {E_KEY!r} has {e_ds.shape[0]} rows but {SHOWERS_KEY!r} has {s_ds.shape[0]}"
        )
    if geometry is not None:
        geometry.check_voxels(s_ds.shape[1], url)
    return s_ds, e_ds, s_ds.shape[0]


def _read_rows(s_ds, e_ds, start: int, stop: int, url: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    try:
        showers = s_ds[start:stop]
        e = e_ds[start:stop]
    except (OSError, ValueError, RuntimeError) as exc:
        raise FarmError(f"{url}: cannot read rows {start}:{stop}, file corrupt ({exc})") from None
    if dtype is not None:
        showers = showers.astype(dtype, copy=False)
    return showers, np.asarray(e, dtype=np.float64).reshape(-1)


def read_calochallenge(
    url: str,
    geometry: CaloGeometry | str | None = None,
    start: int = 0,
    stop: int | None = None,
    dtype=np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """(showers (N, V) MeV as `dtype` (None: the file's), incident energies (N,) float64 MeV)."""
    with _open(url) as f:
        s_ds, e_ds, n = _datasets(f, url, _geometry(geometry))
        stop = n if stop is None else min(stop, n)
        return _read_rows(s_ds, e_ds, start, stop, url, dtype)


def read_incident_energies(url: str) -> np.ndarray:
    """(N,) incident energies in MeV, without reading the showers."""
    with _open(url) as f:
        _, e_ds, _ = _datasets(f, url, None)
        return np.asarray(e_ds[:], np.float64).reshape(-1)


def count_calochallenge(url: str) -> int:
    """Number of showers in a CaloChallenge file (reads only the metadata)."""
    with _open(url) as f:
        return _datasets(f, url, None)[2]


def iter_calochallenge(
    url: str,
    chunk_size: int = 10_000,
    geometry: CaloGeometry | str | None = None,
    dtype=np.float32,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream (showers, incident energies) in chunks of chunk_size rows, for files beyond memory."""
    if chunk_size < 1:
        raise FarmError(f"chunk_size must be >= 1, got {chunk_size}")
    with _open(url) as f:
        s_ds, e_ds, n = _datasets(f, url, _geometry(geometry))
        for start in range(0, n, chunk_size):
            yield _read_rows(s_ds, e_ds, start, min(start + chunk_size, n), url, dtype)
