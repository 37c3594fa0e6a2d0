"""PyTorch datasets over shower files (CaloChallenge HDF5 or farm Parquet, local or s3://).

The split is the same deterministic one training uses (farm.data.splits over the concatenated
files), and it is recorded in `provenance`. `ShowerFileDataset` reads rows on demand (random
access); `StreamingShowerDataset` reads chunk by chunk, for data larger than memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from farm.data.geometry import CaloGeometry, load_geometry
from farm.data.splits import split_indices
from farm.errors import FarmError

SPLITS = ("train", "val", "test")


def _is_parquet(url: str) -> bool:
    return url.endswith(".parquet")


def count_rows(url: str) -> int:
    """Showers in one file, from metadata only."""
    if _is_parquet(url):
        from farm.formats.showers_parquet import _parquet_file

        pf, handle = _parquet_file(url)
        handle.close()
        return pf.metadata.num_rows
    from farm.formats.calochallenge import count_calochallenge

    return count_calochallenge(url)


def iter_file(
    url: str, chunk_size: int, geometry: CaloGeometry | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(showers, e_inc) chunks of one file."""
    if _is_parquet(url):
        from farm.formats.showers_parquet import iter_showers_parquet

        for batch in iter_showers_parquet(url, batch_rows=chunk_size):
            if geometry is not None:
                geometry.check_voxels(batch["showers"].shape[1], url)
            yield batch["showers"], batch["incident_energy"]
        return
    from farm.formats.calochallenge import iter_calochallenge

    yield from iter_calochallenge(url, chunk_size=chunk_size, geometry=geometry)


class _SplitIndex:
    """Global row index over several files and the rows of one split."""

    def __init__(
        self,
        urls: list[str] | str,
        split: str,
        train: float,
        val: float,
        seed: int,
        geometry: CaloGeometry | str | None,
    ):
        if split not in SPLITS:
            raise FarmError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise FarmError("no shower files given")
        self.geometry = load_geometry(geometry) if isinstance(geometry, str) else geometry
        self.counts = np.array([count_rows(u) for u in self.urls], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        parts = split_indices(int(self.offsets[-1]), train, val, seed)
        self.rows = parts[split]
        self.provenance: dict[str, Any] = {
            "urls": self.urls,
            "rows_per_file": self.counts.tolist(),
            "split": split,
            "fractions": {"train": train, "val": val},
            "seed": seed,
            **{f"n_{k}": len(v) for k, v in parts.items()},
        }


class ShowerFileDataset(Dataset):
    """Random access to one split: item i -> (showers [n_voxels] MeV, e_inc [1] MeV) tensors."""

    def __init__(
        self,
        urls: list[str] | str,
        split: str = "train",
        train: float = 0.7,
        val: float = 0.1,
        seed: int = 0,
        geometry: CaloGeometry | str | None = None,
    ):
        self.index = _SplitIndex(urls, split, train, val, seed, geometry)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def provenance(self) -> dict[str, Any]:
        return self.index.provenance

    def __len__(self) -> int:
        return len(self.index.rows)

    def _file(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One file's arrays, read once per process (files are shards of a manageable size)."""
        if k not in self._cache:
            chunks = list(iter_file(self.index.urls[k], 1 << 16, self.index.geometry))
            self._cache[k] = (
                np.concatenate([c[0] for c in chunks]),
                np.concatenate([c[1] for c in chunks]),
            )
        return self._cache[k]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self.index.rows[i])
        k = int(np.searchsorted(self.index.offsets, row, side="right") - 1)
        showers, e_inc = self._file(k)
        local = row - int(self.index.offsets[k])
        return (
            torch.from_numpy(np.asarray(showers[local], np.float32)),
            torch.tensor([float(e_inc[local])]),
        )


class StreamingShowerDataset(IterableDataset):
    """Stream one split chunk by chunk (memory bounded by chunk_size); DataLoader workers split
    the files between them."""

    def __init__(
        self,
        urls: list[str] | str,
        split: str = "train",
        train: float = 0.7,
        val: float = 0.1,
        seed: int = 0,
        geometry: CaloGeometry | str | None = None,
        chunk_size: int = 10_000,
    ):
        self.index = _SplitIndex(urls, split, train, val, seed, geometry)
        self.chunk_size = chunk_size
        self.member = np.zeros(int(self.index.offsets[-1]), dtype=bool)
        self.member[self.index.rows] = True

    @property
    def provenance(self) -> dict[str, Any]:
        return self.index.provenance

    def __len__(self) -> int:
        return len(self.index.rows)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        files = range(len(self.index.urls))
        if info is not None:
            files = files[info.id :: info.num_workers]
        for k in files:
            start = int(self.index.offsets[k])
            for showers, e_inc in iter_file(
                self.index.urls[k], self.chunk_size, self.index.geometry
            ):
                keep = self.member[start : start + len(e_inc)]
                start += len(e_inc)
                for s, e in zip(showers[keep], e_inc[keep], strict=True):
                    yield torch.from_numpy(np.asarray(s, np.float32)), torch.tensor([float(e)])
