"""The sparse shower layout: per shower, the indices and values of its non-zero voxels (COO rows).

Lossless: a voxel is stored unless its float32 bit pattern is +0.0, so -0.0, denormals and NaN
survive; densifying scatters the values back into zeros. Plain Arrow list columns
(voxel_index list<int32>, voxel_energy list<float32>), so pandas, pyarrow and awkward read them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from farm.errors import FarmError

INDEX, ENERGY = "voxel_index", "voxel_energy"
INDEX_TYPE, ENERGY_TYPE = pa.list_(pa.int32()), pa.list_(pa.float32())
PARQUET_ENCODING = {
    f"{INDEX}.list.element": "DELTA_BINARY_PACKED",  # ascending within a shower: small deltas
    f"{ENERGY}.list.element": "BYTE_STREAM_SPLIT",  # float bytes by significance, then zstd
    "event_id": "DELTA_BINARY_PACKED",
}
"""Parquet column encodings of the sparse layout (standard ones every Parquet reader knows)."""


def sparse_columns(showers: np.ndarray) -> tuple[pa.ListArray, pa.ListArray]:
    """(voxel_index, voxel_energy) list arrays of an (N, V) float32 array, row by row."""
    x = np.ascontiguousarray(showers, dtype=np.float32)
    keep = x.view(np.uint32) != 0  # bitwise: -0.0 is kept, only +0.0 is implicit
    rows, cols = np.nonzero(keep)  # row-major: each row's indices ascending
    offsets = np.zeros(x.shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=x.shape[0]), out=offsets[1:])
    index = pa.ListArray.from_arrays(pa.array(offsets), pa.array(cols.astype(np.int32)))
    energy = pa.ListArray.from_arrays(pa.array(offsets), pa.array(x[rows, cols]))
    return index, energy


def densify(index: pa.Array, energy: pa.Array, n_voxels: int, where: str = "") -> np.ndarray:
    """The (N, n_voxels) float32 showers of sparse columns (FarmError naming `where` if corrupt)."""
    index = index.combine_chunks() if isinstance(index, pa.ChunkedArray) else index
    energy = energy.combine_chunks() if isinstance(energy, pa.ChunkedArray) else energy
    n = len(index)
    counts = index.value_lengths().to_numpy(zero_copy_only=False)
    if len(energy) != n or not np.array_equal(
        counts, energy.value_lengths().to_numpy(zero_copy_only=False)
    ):
        raise FarmError(
            f"{where}: sparse showers have voxel_index and voxel_energy of unequal length"
        )
    cols = index.flatten().to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    values = energy.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if cols.size and (cols.min() < 0 or cols.max() >= n_voxels):
        bad = int(cols.min() if cols.min() < 0 else cols.max())
        raise FarmError(f"{where}: sparse voxel index {bad} outside 0..{n_voxels - 1}")
    flat = np.repeat(np.arange(n, dtype=np.int64) * n_voxels, counts) + cols
    if flat.size > 1 and not (np.diff(flat) > 0).all():
        raise FarmError(f"{where}: sparse voxel indices of a shower are not strictly ascending")
    out = np.zeros((n, n_voxels), dtype=np.float32)
    out.reshape(-1)[flat] = values
    return out
