"""Events as Parquet list columns: lossless round trip, read without farm, one line per bad file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from farm.data.detector import LHC
from farm.data.events import build_sample
from farm.errors import FarmError
from farm.formats.events import events_to_arrow, read_events_parquet, read_metadata
from farm.formats.reader import kind_of, read_sample, write_sample


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(1)
    truths = []
    for n in rng.integers(1, 40, 30):
        pdg = rng.choice([211, -211, 22, 130, 11, -13, 2212], n)
        charge = np.select(
            [pdg == 22, pdg == 130, pdg == 11, pdg == -13], [0, 0, -1, 1], np.sign(pdg)
        )
        cols = [rng.exponential(5.0, n) + 0.2, rng.uniform(-3, 3, n), rng.uniform(-3, 3, n)]
        truths.append(np.stack([*cols, pdg, charge], axis=1))
    s = build_sample(truths, np.arange(30) * 2, None, LHC, np.random.default_rng(2))
    s.event_id = np.arange(100, 130)
    return s


def test_lossless_round_trip_and_plain_readers(tmp_path, sample):
    url = str(tmp_path / "e.parquet")
    write_sample(url, sample, {"seed": 4})
    assert not list(tmp_path.glob(".*"))  # atomic: no temporary left beside the file
    assert kind_of(url) == "events"
    got = read_sample(str(tmp_path))
    assert got.kind == "events" and len(got) == 30
    assert np.array_equal(got.event_id, np.arange(100, 130))
    for side, spec in (("truth", got.truth), ("reco", got.reco)):
        for k, v in spec.items():
            want = getattr(sample, side)[k].astype(v.dtype)
            assert v.tobytes() == want.tobytes(), (side, k)
    np.testing.assert_array_equal(got.reco_counts, sample.reco_counts)
    np.testing.assert_allclose(got.event["met_x"], sample.event["met_x"], rtol=1e-6)
    meta = read_metadata(url)
    assert meta["seed"] == 4 and meta["units"]["reco_pt"] == "GeV"
    assert meta["classes"][4] == "photon"

    # without farm: pyarrow, pandas and awkward see one row per event with list columns
    import awkward as ak
    import pandas as pd

    table = pq.read_table(url)
    assert table.schema.field("truth_pt").metadata[b"unit"] == b"GeV"
    frame = pd.read_parquet(url)
    assert len(frame) == 30 and len(frame["reco_pt"][3]) == frame["n_reco"][3]
    arr = ak.from_parquet(url)
    assert ak.to_list(ak.num(arr["truth_pdg"])) == sample.truth_counts.tolist()
    with pytest.raises(FarmError, match="Parquet, not HDF5"):
        write_sample(str(tmp_path / "e.h5"), sample)


def _rewrite(tmp_path, sample, edit) -> str:
    table = edit(events_to_arrow(sample))
    url = str(tmp_path / "bad.parquet")
    pq.write_table(table, url)
    return url


def _replace_list(table: pa.Table, name: str, fn) -> pa.Table:
    col = table.column(name).combine_chunks()
    values = fn(col.flatten().to_numpy().copy())
    new = pa.ListArray.from_arrays(col.offsets, pa.array(values, type=col.type.value_type))
    return table.set_column(table.schema.get_field_index(name), name, new)


def test_bad_files_are_one_line_naming_the_file(tmp_path, sample):
    url = _rewrite(tmp_path, sample, lambda t: t.drop_columns(["truth_pdg"]))
    with pytest.raises(FarmError, match=r"bad\.parquet: not a farm events file: missing column"):
        read_events_parquet(url)

    def alien(values):
        values[5] = 9_999_999
        return values

    url = _rewrite(tmp_path, sample, lambda t: _replace_list(t, "truth_pdg", alien))
    with pytest.raises(FarmError, match=r"bad\.parquet: unknown pdg id 9999999"):
        read_sample(url)

    def wrong_count(t):
        counts = t.column("n_truth").to_numpy().copy()
        counts[2] += 1
        return t.set_column(t.schema.get_field_index("n_truth"), "n_truth", pa.array(counts))

    url = _rewrite(tmp_path, sample, wrong_count)
    with pytest.raises(FarmError, match="n_truth disagrees"):
        read_sample(url)

    def empty_first(t):
        counts = t.column("n_truth").to_numpy()
        cut = int(counts[0])
        off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        off[1:] -= cut
        off = np.maximum(off, 0)
        cols = {}
        for name in t.schema.names:
            if name.startswith("truth_") and pa.types.is_list(t.schema.field(name).type):
                flat = t.column(name).combine_chunks().flatten()[cut:]
                cols[name] = pa.ListArray.from_arrays(pa.array(off), flat)
        cols["n_truth"] = pa.array(np.diff(off).astype(np.int32))
        for name, arr in cols.items():
            t = t.set_column(t.schema.get_field_index(name), name, arr)
        return t

    url = _rewrite(tmp_path, sample, empty_first)
    with pytest.raises(
        FarmError, match=r"1 event\(s\) without truth particles \(first: event_id 100"
    ):
        read_sample(url)

    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(FarmError, match=r"junk\.parquet: not a readable Parquet file"):
        read_events_parquet(str(tmp_path / "junk.parquet"))


def test_a_sample_with_an_empty_event_is_never_written(tmp_path, sample):
    sample_empty = build_sample(
        [np.zeros((0, 5)), np.array([[5.0, 0.0, 0.0, 211, 1]])],
        np.arange(2),
        None,
        LHC,
        np.random.default_rng(0),
    )
    url = str(tmp_path / "empty.parquet")
    with pytest.raises(FarmError, match=r"empty\.parquet: 1 event"):
        write_sample(url, sample_empty, {"x": 1})
    assert not list(tmp_path.iterdir())
