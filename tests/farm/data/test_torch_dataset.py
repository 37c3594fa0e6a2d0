"""Torch datasets over shower files: deterministic splits, local and S3, random access = streaming."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from farm import store
from farm.data.splits import split_indices
from farm.data.torch_dataset import ShowerFileDataset, StreamingShowerDataset
from farm.errors import FarmError
from farm.formats.calochallenge import write_calochallenge
from farm.formats.showers_parquet import write_showers_parquet


def _files(base: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    showers = rng.exponential(5.0, (300, 368)).astype(np.float32)
    e_inc = rng.uniform(1e3, 1e5, 300)
    urls = [store.join(base, "a.h5"), store.join(base, "b.parquet")]
    write_calochallenge(urls[0], showers[:120], e_inc[:120], "ds1-photons")
    write_showers_parquet(urls[1], showers[120:], e_inc[120:], np.arange(120, 300), "ds1-photons")
    return urls, showers, e_inc


@pytest.mark.parametrize("where", ["local", "s3"])
def test_splits_are_deterministic_and_recorded(where, tmp_path, request):
    base = str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket")
    urls, showers, e_inc = _files(base)
    expected = split_indices(300, 0.7, 0.1, 3)
    seen = set()
    for split in ("train", "val", "test"):
        ds = ShowerFileDataset(urls, split=split, seed=3, geometry="ds1-photons")
        assert len(ds) == len(expected[split])
        rows = expected[split]
        x, e = zip(*(ds[i] for i in range(len(ds))), strict=True)
        assert torch.equal(torch.stack(x), torch.from_numpy(showers[rows]))
        assert np.allclose(torch.cat(e).numpy(), e_inc[rows])
        seen |= set(rows.tolist())
        assert ds.provenance["split"] == split and ds.provenance["rows_per_file"] == [120, 180]
    assert seen == set(range(300))  # the splits partition the events


def test_streaming_matches_random_access(tmp_path):
    urls, _, _ = _files(str(tmp_path))
    random_access = ShowerFileDataset(urls, split="train", seed=1)
    streaming = StreamingShowerDataset(urls, split="train", seed=1, chunk_size=17)
    a = torch.stack([random_access[i][0] for i in range(len(random_access))])
    b = torch.stack([x for x, _ in streaming])
    assert torch.equal(a, b)
    batches = list(DataLoader(streaming, batch_size=64))
    assert sum(len(x) for x, _ in batches) == len(random_access)


def test_wrong_geometry_and_split_are_clear(tmp_path):
    urls, _, _ = _files(str(tmp_path))
    with pytest.raises(FarmError, match="368 voxels per shower, but geometry 'ds2'"):
        ShowerFileDataset(urls[:1], geometry="ds2")[0]
    with pytest.raises(FarmError, match="split must be one of train, val, test"):
        ShowerFileDataset(urls, split="holdout")
