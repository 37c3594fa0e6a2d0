"""JetNet-style jet files: lossless round trips, readable without farm, streaming, bad files, S3."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from farm.errors import FarmError
from farm.formats import jets as jf

META = {"pythia_settings": ["Beams:eCM = 13000.0", "Random:seed = 7"], "pythia_seed": 7}


def fake_jets(n: int = 20, P: int = 30, seed: int = 0) -> dict[str, np.ndarray]:
    """Random jets in the generate_jets layout with a realistic padding pattern."""
    rng = np.random.default_rng(seed)
    n_const = rng.integers(1, 2 * P, size=n)
    kept = np.minimum(n_const, P)
    mask = (np.arange(P)[None, :] < kept[:, None]).astype(np.float32)
    cons = rng.normal(size=(n, P, 4)).astype(np.float32) * mask[..., None]
    cons[..., 3] = mask
    feats = np.stack(
        [rng.uniform(800, 1200, n), rng.uniform(-2.5, 2.5, n), rng.uniform(0, 300, n), n_const], 1
    ).astype(np.float32)
    return {
        "constituents": cons,
        "jet_features": feats,
        "sd_mass": rng.uniform(0, 200, n).astype(np.float32),
        "event_id": np.arange(100, 100 + n, dtype=np.int64),
        "event_index": np.arange(n, dtype=np.int64) // 2,
    }


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].tobytes() == b[key].tobytes(), key


@pytest.mark.parametrize("suffix", ["h5", "parquet"])
def test_round_trip_is_lossless(tmp_path, suffix):
    data = fake_jets()
    url = str(tmp_path / f"jets.{suffix}")
    jf.write_jets(url, data, META)
    back, meta = jf.read_jets_file(url)
    assert_same(back, data)
    assert meta["generator"] == META and meta["n_particles"] == 30
    assert meta["jet_units"] == ["GeV", "1", "GeV", "1"]
    url2 = str(tmp_path / f"again.{suffix}")
    jf.write_jets(url2, back, meta["generator"])
    assert_same(jf.read_jets_file(url2)[0], data)
    assert sorted(os.listdir(tmp_path)) == sorted([f"jets.{suffix}", f"again.{suffix}"])


def test_h5_is_jetnet_layout_for_h5py_alone(tmp_path):
    data = fake_jets(n=9, P=150)
    path = tmp_path / "j.h5"
    jf.write_jets_h5(str(path), data, META)
    with h5py.File(path, "r") as f:
        assert f["particle_features"].shape == (9, 150, 4)
        assert f["particle_features"].dtype == np.float32
        assert f["jet_features"].shape == (9, 4) and f["jet_features"].dtype == np.float32
        assert f["particle_features"].compression == "gzip"
        assert list(f["particle_features"].attrs["feature_names"]) == [
            "eta_rel", "phi_rel", "pt_rel", "mask"
        ]  # fmt: skip
        assert list(f["jet_features"].attrs["feature_names"]) == [
            "pt", "eta", "mass", "n_constituents"
        ]  # fmt: skip
        assert list(f["jet_features"].attrs["units"]) == ["GeV", "1", "GeV", "1"]
        assert f.attrs["energy_unit"] == "GeV"
        assert f["sd_mass"].attrs["units"] == "GeV"
        assert np.array_equal(f["particle_features"][:], data["constituents"])


def test_parquet_reads_with_pyarrow_pandas_and_awkward_alone(tmp_path):
    data = fake_jets(n=12)
    path = tmp_path / "j.parquet"
    jf.write_jets_parquet(str(path), data, META)
    table = pq.read_table(path)
    assert table.column_names == [
        "event_id", "jet_pt", "jet_eta", "jet_mass", "n_constituents", "jet_sd_mass",
        "event_index", "eta_rel", "phi_rel", "pt_rel", "mask",
    ]  # fmt: skip
    pt_rel = table.schema.field("pt_rel").type
    assert pa.types.is_fixed_size_list(pt_rel) and pt_rel.list_size == 30
    assert pt_rel.value_type == pa.float32()
    assert table.schema.field("jet_pt").metadata == {b"unit": b"GeV"}
    assert b"farm.jets" in table.schema.metadata

    import pandas as pd

    df = pd.read_parquet(path)
    assert len(df) == 12 and df["n_constituents"].dtype == np.int32
    assert np.array_equal(df["jet_pt"].to_numpy(), data["jet_features"][:, 0])
    assert np.array_equal(np.stack(df["pt_rel"].to_numpy()), data["constituents"][..., 2])

    import awkward as ak

    arr = ak.from_parquet(path)
    assert ak.to_numpy(arr["eta_rel"]).shape == (12, 30)
    assert np.array_equal(ak.to_numpy(arr["mask"]), data["constituents"][..., 3] == 1)


def test_streaming_by_row_group_batch_and_chunk(tmp_path):
    data = fake_jets(n=20)
    pq_url, h5_url = str(tmp_path / "j.parquet"), str(tmp_path / "j.h5")
    jf.write_jets_parquet(pq_url, data, row_group_size=7)
    jf.write_jets_h5(h5_url, data)
    assert pq.ParquetFile(pq_url).num_row_groups == 3
    for parts, sizes in [
        (list(jf.iter_jets_parquet(pq_url)), [7, 7, 6]),
        (list(jf.iter_jets_parquet(pq_url, batch_size=5)), [5, 5, 5, 5]),
        (list(jf.iter_jets_h5(h5_url, chunk_size=8)), [8, 8, 4]),
    ]:
        assert [len(p["jet_features"]) for p in parts] == sizes
        joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        assert_same(joined, data)


def test_parquet_without_event_ids_numbers_rows(tmp_path):
    data = fake_jets(n=4)
    del data["event_id"], data["event_index"], data["sd_mass"]
    url = str(tmp_path / "j.parquet")
    jf.write_jets_parquet(url, data)
    back, _ = jf.read_jets_parquet(url)
    assert np.array_equal(back["event_id"], np.arange(4)) and "sd_mass" not in back


def test_s3_round_trip(s3_bucket):
    data = fake_jets(n=15)
    for suffix in ("h5", "parquet"):
        url = f"{s3_bucket}/jets/sample.{suffix}"
        jf.write_jets(url, data, META)
        back, meta = jf.read_jets_file(url)
        assert_same(back, data)
        assert meta["generator"] == META
    chunks = list(jf.iter_jets_h5(f"{s3_bucket}/jets/sample.h5", chunk_size=10))
    assert [len(c["jet_features"]) for c in chunks] == [10, 5]


@pytest.mark.parametrize("suffix", ["h5", "parquet"])
def test_truncated_file_is_a_farm_error_naming_it(tmp_path, suffix):
    url = str(tmp_path / f"jets.{suffix}")
    jf.write_jets(url, fake_jets(n=50), META)
    with open(url, "rb") as f:
        blob = f.read()
    with open(url, "wb") as f:
        f.write(blob[: len(blob) // 2])
    with pytest.raises(FarmError, match=f"jets.{suffix}.*(truncated|corrupt)"):
        jf.read_jets_file(url)


def test_missing_dataset_file_or_column_is_named(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["particle_features"] = np.zeros((2, 30, 4), np.float32)
    with pytest.raises(FarmError, match=r"other\.h5: missing dataset 'jet_features'"):
        jf.read_jets_h5(str(path))
    with pytest.raises(FarmError, match=r"nope\.parquet: file not found"):
        jf.read_jets_parquet(str(tmp_path / "nope.parquet"))
    table = jf.jets_to_arrow(fake_jets(n=3)).drop_columns(["mask"])
    pq.write_table(table, tmp_path / "nomask.parquet")
    with pytest.raises(FarmError, match=r"nomask.parquet: missing Parquet column\(s\) \['mask'\]"):
        jf.read_jets_parquet(str(tmp_path / "nomask.parquet"))
    with pytest.raises(FarmError, match=r"expected \.h5, \.hdf5 or \.parquet"):
        jf.read_jets_file(str(tmp_path / "jets.csv"))


def test_bad_arrays_are_refused_and_nothing_is_written(tmp_path, monkeypatch):
    data = fake_jets(n=5)
    url = str(tmp_path / "j.parquet")
    with pytest.raises(FarmError, match=r"jet_features must have shape \(5, 4\)"):
        jf.write_jets_parquet(url, {**data, "jet_features": data["jet_features"][:4]})
    with pytest.raises(FarmError, match="mask must be 0 or 1"):
        bad = data["constituents"].copy()
        bad[0, 0, 3] = 0.5
        jf.write_jets_parquet(url, {**data, "constituents": bad})
    with pytest.raises(FarmError, match="unknown jet array"):
        jf.write_jets_h5(str(tmp_path / "j.h5"), {**data, "labels": np.zeros(5)})

    def crash(table, where, **kwargs):
        with open(where, "wb") as f:
            f.write(b"PAR1 half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        jf.write_jets_parquet(url, data)
    assert os.listdir(tmp_path) == []
