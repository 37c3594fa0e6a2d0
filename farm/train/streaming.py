"""Streamed training data: shower files as a Ray Dataset of row blocks, one shard per Ray Train worker.

The driver reads only metadata (row counts, voxel counts), the incident energies are never needed
in full, and three small in-memory parts: a seeded subsample of the training split to fit the
preprocessing on, a seeded subsample of the validation split, and nothing else. The training
split itself becomes a list of read blocks (a Parquet row group, or a slice of an HDF5 file)
holding the global rows of that block that belong to the split; their order is a seeded
permutation, recorded. Ray Train hands each worker its shard (`streaming_split(equal=True)`); a
worker shuffles its events in a buffer reseeded from (seed, epoch, rank) every epoch. With one
worker and Ray Data's `preserve_order`, an epoch's stream is the same every time it is read, so a
run resumed at an epoch re-reads exactly that epoch's batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from farm.data.sources import TRAINING_COPIES
from farm.errors import FarmError
from farm.formats.shower_rows import ShowerSource, read_file_rows

BLOCK_BYTES = 16 << 20
"""Default read block: this many bytes of float32 voxels (the unit Ray Data moves and shuffles)."""
FIT_BYTES = 2 << 30
"""The preprocessing subsample is capped at this many bytes of float32 voxels."""
READ_TASKS = 2
"""Read tasks in flight at once (they take no CPU slot; the train workers hold the CPUs)."""
MEMORY_FRACTION = 0.5
"""`loading: auto` streams when the in-memory path would need more than this share of memory."""


@dataclass
class StreamPlan:
    """What the workers stream: the files, the read blocks of the training split, the shuffle."""

    source: ShowerSource
    blocks: list[dict[str, Any]]
    rows_per_block: int
    n_train: int
    shuffle_buffer: int
    seed: int


def loading_choice(spec: Any, n_events: int, n_voxels: int) -> dict[str, Any]:
    """{'mode': 'memory'|'stream', 'chosen_by': 'spec'|'auto', bytes needed and available}."""
    import psutil

    need = n_events * n_voxels * 4 * TRAINING_COPIES
    have = psutil.virtual_memory().total
    mode = spec.loading
    if mode == "auto":
        mode = "stream" if need > MEMORY_FRACTION * have else "memory"
    return {
        "mode": mode,
        "chosen_by": "auto" if spec.loading == "auto" else "spec",
        "memory_path_gib": round(need / 2**30, 3),
        "machine_gib": round(have / 2**30, 3),
    }


def seeded_subset(rows: np.ndarray, n: int, seed: int, stream: int) -> np.ndarray:
    """Sorted seeded choice of n of the rows (all of them when n >= len(rows))."""
    if n >= len(rows):
        return rows
    rng = np.random.default_rng([seed, stream])
    return np.sort(rng.choice(rows, n, replace=False))


def block_rows(source: ShowerSource, block_events: int | None) -> int:
    """Rows per HDF5 read block: block_events, or BLOCK_BYTES of float32 voxels."""
    return block_events or max(1, BLOCK_BYTES // (4 * source.n_voxels))


def block_ranges(source: ShowerSource, block_events: int | None) -> list[tuple[int, int, int]]:
    """(file index, first global row, end global row) of every read block, file by file.

    Parquet: one block per row group (the unit a reader decodes); HDF5: slices of block_events
    rows (default BLOCK_BYTES of float32 voxels).
    """
    from farm.formats.files import file_format

    rows = block_rows(source, block_events)
    out = []
    for i, (f, offset) in enumerate(zip(source.files, source.offsets[:-1], strict=True)):
        if file_format(f.url) == "parquet" and block_events is None:
            from farm.formats.showers_parquet import _parquet_file

            pf, handle = _parquet_file(f.url)
            handle.close()
            sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
            starts = np.cumsum([0, *sizes])
            out += [(i, int(offset + a), int(offset + b)) for a, b in itertools.pairwise(starts)]
        else:
            out += [
                (i, int(offset + a), int(offset + min(a + rows, f.n))) for a in range(0, f.n, rows)
            ]
    return out


def plan_blocks(
    source: ShowerSource, train_rows: np.ndarray, block_events: int | None, seed: int
) -> list[dict[str, Any]]:
    """The read blocks holding training rows, in a seeded order: {'file', 'rows' (global)}."""
    blocks = []
    for file_index, start, stop in block_ranges(source, block_events):
        lo, hi = np.searchsorted(train_rows, [start, stop])
        if hi > lo:
            blocks.append({"file": file_index, "rows": train_rows[lo:hi]})
    order = np.random.default_rng([seed, 0xB10C]).permutation(len(blocks))
    return [blocks[i] for i in order]


class BlockReader:
    """Ray Data map: a batch of read blocks -> their showers (x) and incident energies (cond)."""

    def __init__(self, source: ShowerSource, rows_per_block: int):
        self.source, self.rows_per_block = source, rows_per_block

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Read the rows each block names; one FarmError naming the file on bad values."""
        xs, cs = [], []
        for file_index, rows in zip(batch["file"], batch["rows"], strict=True):
            f = self.source.files[int(file_index)]
            local = np.asarray(rows, dtype=np.int64) - int(self.source.offsets[int(file_index)])
            wanted = np.zeros(f.n, dtype=bool)
            wanted[local] = True
            # HDF5 blocks start at multiples of rows_per_block: each block is one contiguous read
            for got, showers, e_inc in read_file_rows(f, wanted, self.rows_per_block):
                if (
                    not (np.isfinite(showers).all() and np.isfinite(e_inc).all())
                    or (e_inc <= 0).any()
                ):
                    raise FarmError(
                        f"{f.url}: NaN/Inf showers or non-positive incident energies in rows "
                        f"{int(got[0])}-{int(got[-1])}; training needs finite energies and "
                        "positive incident energies"
                    )
                xs.append(showers)
                cs.append(e_inc.astype(np.float32).reshape(-1, 1))
        return {"x": np.concatenate(xs), "cond": np.concatenate(cs)}


def stream_settings(plan: StreamPlan | None) -> dict[str, int] | None:
    """What each worker needs to build its ShardStream (None: in-memory training)."""
    if plan is None:
        return None
    return {"n_events": plan.n_train, "shuffle_buffer": plan.shuffle_buffer, "seed": plan.seed}


def training_dataset(plan: StreamPlan):
    """The Ray Dataset of the training split: one read task per block, blocks in plan order."""
    import ray.data

    ds = ray.data.from_items(plan.blocks, override_num_blocks=len(plan.blocks))
    return ds.map_batches(
        BlockReader(plan.source, plan.rows_per_block),
        batch_size=1,
        num_cpus=0,
        compute=ray.data.TaskPoolStrategy(size=READ_TASKS),
    )


def data_config():
    """Ray Train's DataConfig for streamed training: order preserved (reproducible epochs)."""
    from ray.data import ExecutionOptions
    from ray.train import DataConfig

    return DataConfig(execution_options=ExecutionOptions(preserve_order=True))


class ShardStream:
    """A worker's Ray Data shard as a `models.stream.BatchStream` of (showers, E_inc) tensors."""

    def __init__(self, shard: Any, n_events: int, shuffle_buffer: int, seed: int):
        self.shard, self.n_events = shard, n_events
        self.shuffle_buffer, self.seed = shuffle_buffer, seed

    def batches(self, epoch: int, rank: int, batch_size: int) -> Iterator[tuple[Any, Any]]:
        """Full batches of this rank's shard, shuffled in a buffer seeded by (seed, epoch, rank)."""
        mixed = (self.seed * 1_000_003 + epoch) * 1_000_003 + rank
        for batch in self.shard.iter_torch_batches(
            batch_size=batch_size,
            drop_last=True,
            local_shuffle_buffer_size=min(self.shuffle_buffer, max(self.n_events, 1)),
            local_shuffle_seed=mixed % 2**32,
            device="cpu",
        ):
            yield batch["x"], batch["cond"]


def check_streamable(model_config: Any) -> None:
    """FarmError unless the job can train (or distil) from a stream: shower models only."""
    from models.config import ModelConfig, TwoStageConfig

    if not isinstance(model_config, ModelConfig | TwoStageConfig):
        raise FarmError(
            "data.loading: stream supports single-stage and two-stage shower models, not "
            f"{type(model_config).__name__}; set data.loading: memory (or data.max_events)"
        )
