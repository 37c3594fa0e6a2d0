"""Shower files read by rows: metadata without data, wanted rows only, many files as one sample.

What reading larger-than-memory showers needs (streamed evaluation, campaign validation reading a
random subset of a campaign): a file's row and voxel counts from its metadata, the wanted rows of
one file chunk by chunk (Parquet row groups or HDF5 slices), and a folder of shards seen as one
sample with global row numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from farm.errors import FarmError
from farm.formats.files import data_files, file_format
from farm.formats.reader import resolve
from farm.geometry import CaloGeometry

CHUNK_BYTES = 64 << 20  # showers per chunk: at most this many bytes of float32 voxels


@dataclass(frozen=True)
class ShowerFile:
    """One CaloChallenge HDF5 or farm showers Parquet file, known from its metadata only."""

    url: str
    n: int
    n_voxels: int
    geometry: str  # recorded in Parquet metadata or farm's HDF5 attribute; '' if none


def inspect_file(url: str) -> ShowerFile:
    """Row count, voxel count and recorded geometry of a shower file without reading its data."""
    if file_format(url) == "parquet":
        from farm.formats.showers_parquet import _parquet_file, metadata, voxel_count

        pf, handle = _parquet_file(url)
        try:
            n_voxels = voxel_count(pf.schema_arrow)
            meta = metadata(pf.schema_arrow)
            return ShowerFile(url, pf.metadata.num_rows, n_voxels, meta.get("geometry", ""))
        finally:
            handle.close()
    from farm.formats.calochallenge import _datasets, _open, attrs_of

    with _open(url) as f:
        s_ds, _, n = _datasets(f, url, None)
        return ShowerFile(url, n, s_ds.shape[1], attrs_of(f).get("geometry") or "")


def read_file_rows(
    f: ShowerFile, wanted: np.ndarray, chunk_rows: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(local rows, showers, e_inc) of the wanted rows (bool mask over the file), in order.

    Parquet: only row groups holding wanted rows are read. HDF5: slices of chunk_rows rows, read
    whole when at least a quarter of their rows are wanted, else row by row (h5py selection).
    """
    if file_format(f.url) == "parquet":
        from farm.formats.showers_parquet import _batch_arrays, _parquet_file, read_columns

        pf, handle = _parquet_file(f.url)
        try:
            start = 0
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                sel = np.flatnonzero(wanted[start : start + n])
                if sel.size:
                    group = pf.read_row_group(g, columns=read_columns(pf.schema_arrow))
                    data = _batch_arrays(group, f.url)
                    for lo in range(0, sel.size, chunk_rows):
                        idx = sel[lo : lo + chunk_rows]
                        yield start + idx, data["showers"][idx], data["incident_energy"][idx]
                start += n
        finally:
            handle.close()
        return
    from farm.formats.calochallenge import _datasets, _open, _read_rows

    with _open(f.url) as h5:
        s_ds, e_ds, n = _datasets(h5, f.url, None)
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            sel = np.flatnonzero(wanted[start:stop])
            if not sel.size:
                continue
            if sel.size * 4 >= stop - start:
                showers, e_inc = _read_rows(s_ds, e_ds, start, stop, f.url, np.float32)
                yield start + sel, showers[sel], e_inc[sel]
                continue
            rows = start + sel
            try:
                showers = np.asarray(s_ds[rows], dtype=np.float32)
                e_inc = np.asarray(e_ds[rows], dtype=np.float64).reshape(-1)
            except (OSError, ValueError, RuntimeError) as exc:
                raise FarmError(
                    f"{f.url}: cannot read rows near {start}, file corrupt ({exc})"
                ) from None
            yield rows, showers, e_inc


class ShowerSource:
    """Shower files (one, or a folder of shards) seen as one sample with global row numbers."""

    def __init__(self, location: str, geometry: CaloGeometry | None = None):
        """Inspect the files of a location (file, folder of shards or campaign id)."""
        self.url = location
        self.files = [inspect_file(u) for u in data_files(resolve(location))]
        voxels = {f.n_voxels for f in self.files}
        if len(voxels) > 1:
            raise FarmError(f"{location}: files with different voxel counts {sorted(voxels)}")
        names = {f.geometry for f in self.files if f.geometry}
        if len(names) > 1:
            raise FarmError(f"{location}: files written for different geometries {sorted(names)}")
        self.geometry_name = names.pop() if names else ""
        self.n_voxels = voxels.pop()
        if geometry is not None:
            geometry.check_voxels(self.n_voxels, location)
        self.offsets = np.cumsum([0] + [f.n for f in self.files])

    @property
    def n(self) -> int:
        """Number of showers over all the files."""
        return int(self.offsets[-1])

    @property
    def nbytes(self) -> int:
        """Size of all the showers as float32 in memory."""
        return self.n * self.n_voxels * 4

    def chunks(
        self, wanted: np.ndarray, chunk_rows: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(global rows, showers, e_inc) of the wanted rows (bool mask over all rows), in order."""
        for f, start in zip(self.files, self.offsets[:-1], strict=True):
            mask = wanted[start : start + f.n]
            if mask.any():
                for rows, showers, e_inc in read_file_rows(f, mask, chunk_rows):
                    yield start + rows, showers, e_inc

    def take(
        self, rows: np.ndarray, chunk_rows: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(showers, e_inc) of the given global rows, in the given order; reads only those."""
        rows = np.asarray(rows, dtype=np.int64)
        wanted = np.zeros(self.n, dtype=bool)
        wanted[rows] = True
        slot = np.full(self.n, -1, dtype=np.int64)
        slot[rows] = np.arange(rows.size)
        showers = np.empty((rows.size, self.n_voxels), dtype=np.float32)
        e_inc = np.empty(rows.size, dtype=np.float64)
        for got, s, e in self.chunks(wanted, chunk_rows or default_chunk_rows(self.n_voxels)):
            showers[slot[got]], e_inc[slot[got]] = s, e
        return showers, e_inc


def default_chunk_rows(n_voxels: int) -> int:
    """Showers per read: as many as fit in CHUNK_BYTES of float32 voxels, at least one."""
    return max(1, CHUNK_BYTES // (4 * n_voxels))
