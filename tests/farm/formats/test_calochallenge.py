"""CaloChallenge HDF5: exact dataset names, shapes, dtypes; lossless round trip; clear errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from farm import store
from farm.errors import FarmError
from farm.formats.calochallenge import (
    count_calochallenge,
    iter_calochallenge,
    read_calochallenge,
    write_calochallenge,
)
from farm.geometry import load_geometry


@pytest.fixture(scope="module")
def ds1():
    return load_geometry("ds1-photons")


@pytest.fixture(scope="module")
def sample(ds1):
    rng = np.random.default_rng(0)
    showers = rng.exponential(5.0, size=(50, ds1.n_voxels)).astype(np.float32)
    showers[showers < 2.0] = 0.0
    e_inc = 2.0 ** rng.integers(8, 23, size=50).astype(np.float64)
    return showers, e_inc


def test_h5py_alone_sees_challenge_layout(tmp_path, ds1, sample):
    showers, e_inc = sample
    path = tmp_path / "ds1.hdf5"
    write_calochallenge(str(path), showers, e_inc, ds1)
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["incident_energies", "showers"]
        assert f["incident_energies"].shape == (50, 1)
        assert f["showers"].shape == (50, 368)
        assert f["incident_energies"].dtype == np.float64
        assert f["showers"].dtype == np.float32
        assert f["showers"].compression == "gzip"
        assert f["incident_energies"].compression == "gzip"
        np.testing.assert_array_equal(f["showers"][:], showers)
        np.testing.assert_array_equal(f["incident_energies"][:, 0], e_inc)
    assert [p.name for p in tmp_path.iterdir()] == ["ds1.hdf5"]  # no temporary left behind


def test_read_write_read_is_lossless(tmp_path, ds1, sample):
    a = str(tmp_path / "a.h5")
    b = str(tmp_path / "b.h5")
    write_calochallenge(a, *sample, geometry="ds1-photons")
    s1, e1 = read_calochallenge(a, ds1)
    write_calochallenge(b, s1, e1, ds1)
    s2, e2 = read_calochallenge(b, ds1)
    assert s1.dtype == np.float32 and e1.dtype == np.float64 and e1.shape == (50,)
    assert s2.tobytes() == s1.tobytes() == sample[0].tobytes()
    assert e2.tobytes() == e1.tobytes()
    # float64 files keep their dtype with dtype=None
    c = str(tmp_path / "c.h5")
    write_calochallenge(c, sample[0].astype(np.float64), sample[1])
    s3, _ = read_calochallenge(c, dtype=None)
    assert s3.dtype == np.float64
    part, e_part = read_calochallenge(a, start=10, stop=20)
    np.testing.assert_array_equal(part, sample[0][10:20])
    np.testing.assert_array_equal(e_part, sample[1][10:20])
    assert count_calochallenge(a) == 50


def test_streaming_chunks_cover_the_file(tmp_path, sample):
    url = str(tmp_path / "s.h5")
    write_calochallenge(url, *sample)
    chunks = list(iter_calochallenge(url, chunk_size=16))
    assert [len(c[1]) for c in chunks] == [16, 16, 16, 2]
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), sample[0])
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), sample[1])


def test_s3_round_trip(s3_bucket, ds1, sample):
    url = store.join(s3_bucket, "showers", "ds1.h5")
    write_calochallenge(url, *sample, geometry=ds1)
    assert store.exists(url)
    s, e = read_calochallenge(url, ds1)
    assert s.tobytes() == sample[0].tobytes() and e.tobytes() == sample[1].tobytes()
    chunks = list(iter_calochallenge(url, chunk_size=20, geometry=ds1))
    assert [len(c[1]) for c in chunks] == [20, 20, 10]


def test_voxel_count_mismatch_names_file_and_counts(tmp_path, sample):
    url = str(tmp_path / "ds1.h5")
    write_calochallenge(url, *sample)
    with pytest.raises(FarmError, match=r"ds1\.h5: 368 voxels.*'ds2'.*6480"):
        read_calochallenge(url, load_geometry("ds2"))
    with pytest.raises(FarmError, match=r"out\.h5: 368 voxels.*'ds2'"):
        write_calochallenge(str(tmp_path / "out.h5"), *sample, geometry="ds2")
    assert not (tmp_path / "out.h5").exists()


def test_truncated_file_is_a_clear_error(tmp_path, sample):
    url = tmp_path / "full.h5"
    write_calochallenge(str(url), *sample)
    data = url.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FarmError, match=r"cut\.h5: .*(truncated|corrupt)"):
        read_calochallenge(str(cut))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(FarmError, match=r"junk\.h5: not a readable HDF5"):
        read_calochallenge(str(junk))
    with pytest.raises(FarmError, match=r"nope\.h5: file not found"):
        read_calochallenge(str(tmp_path / "nope.h5"))


def test_missing_dataset_and_bad_shapes(tmp_path):
    url = tmp_path / "m.h5"
    with h5py.File(url, "w") as f:
        f["showers"] = np.zeros((3, 368), np.float32)
    with pytest.raises(FarmError, match=r"m\.h5: missing dataset 'incident_energies'"):
        read_calochallenge(str(url))
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["showers"] = np.zeros((3, 368), np.float32)
        f["incident_energies"] = np.zeros((4, 1))
    with pytest.raises(FarmError, match=r"bad\.h5: 'incident_energies' has 4 rows.*3"):
        read_calochallenge(str(bad))
    with pytest.raises(FarmError, match=r"must be \(N, n_voxels\)"):
        write_calochallenge(str(tmp_path / "w.h5"), np.zeros(5), np.zeros(5))
