"""farm.data.sources: one split of a shower file is read without loading the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from farm.data.sources import load_showers, split
from farm.formats.calochallenge import write_calochallenge
from farm.formats.showers_parquet import write_showers_parquet
from farm.geometry import load_geometry
from farm.specs import CaloChallengeData

GEOMETRY = load_geometry("ds1-photons")


def numbered_files(folder: Path) -> str:
    """An HDF5 file and a Parquet shard of 2 row groups; voxel 0 holds the global row + 1."""
    rows = np.arange(300)
    showers = np.zeros((300, GEOMETRY.n_voxels), np.float32)
    showers[:, 0] = rows + 1
    e_inc = 1000.0 + rows
    folder.mkdir()
    write_calochallenge(str(folder / "a.h5"), showers[:120], e_inc[:120], geometry=GEOMETRY)
    write_showers_parquet(
        str(folder / "b.parquet"), showers[120:], e_inc[120:], rows[120:], GEOMETRY.name,
        row_group_size=90,
    )  # fmt: skip
    return str(folder)


def test_the_test_part_of_shower_files_is_the_in_memory_split_test_part(tmp_path):
    spec = CaloChallengeData.model_validate(
        {"source": "calochallenge", "url": numbered_files(tmp_path / "shards"),
         "geometry": "ds1-photons", "max_events": 250, "split": {"train": 0.6, "val": 0.2, "seed": 3}}
    )  # fmt: skip
    whole = split(load_showers(spec), spec)["test"]
    test = load_showers(spec, part="test")
    assert len(test.e_inc) == 50  # 20 % of the first 250 rows, not of all 300
    np.testing.assert_array_equal(test.showers, whole.showers)
    np.testing.assert_array_equal(test.e_inc, whole.e_inc)
    rows = test.showers[:, 0].astype(int) - 1
    assert rows.max() < 250 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(test.e_inc, 1000.0 + rows)  # each E_inc travels with its shower
    assert test.provenance["part"] == "test" and test.provenance["events"] == 250
