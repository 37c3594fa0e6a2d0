"""Truth-only conditions files: `farm generate --conditions` reads the truth lists alone (docs/events.md)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny_kinds import SET_SLOTS, register_model, tiny_set_model

from farm.cli import main
from farm.errors import FarmError
from farm.formats.events import read_events_parquet, write_events_parquet
from farm.samples import EventSample


def _events(n: int = 12, seed: int = 3) -> EventSample:
    """Synthetic full events of 1..SET_SLOTS truth particles (reco = truth, class 0)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, SET_SLOTS + 1, n)
    m = int(counts.sum())
    truth = {
        "pt": (1 + 20 * rng.random(m)).astype(np.float32),
        "eta": rng.normal(size=m).astype(np.float32),
        "phi": (np.pi * (2 * rng.random(m) - 1)).astype(np.float32),
        "pdg": rng.choice([211, -211, 22], m).astype(np.int32),
    }
    truth["charge"] = np.sign(truth["pdg"]).astype(np.int8) * (np.abs(truth["pdg"]) != 22)
    reco = {k: truth[k].copy() for k in ("pt", "eta", "phi", "charge")}
    reco["class"] = np.zeros(m, np.int8)
    z = np.zeros(n, np.float32)
    event = {"event_index": np.arange(n), "met_x": z, "met_y": z, "ht": z}
    event |= {"truth_met_x": z, "truth_met_y": z, "truth_ht": z}
    return EventSample(truth, counts, reco, counts.copy(), event, np.arange(100, 100 + n))


def _truth_only(full: str, out: str, drop: tuple[str, ...] = ()) -> str:
    """The truth list columns (and event_id) of a full events file, nothing else."""
    table = pq.read_table(full)
    keep = [c for c in table.schema.names if c.startswith("truth_") or c == "event_id"]
    keep = [
        c for c in keep if c not in drop and c not in ("truth_met_x", "truth_met_y", "truth_ht")
    ]
    pq.write_table(table.select(keep), out)
    return out


def test_truth_only_file_generates_like_the_full_file(farm_home, tmp_path):
    register_model("tiny-sets", tiny_set_model(), "events", tmp_path)
    full = write_events_parquet(str(tmp_path / "full.parquet"), _events())
    truth = _truth_only(full, str(tmp_path / "truth.parquet"))
    read = read_events_parquet(truth)
    assert read.reco_counts.sum() == 0 and len(read) == 12
    outs = []
    for name, cond in (("a", full), ("b", truth)):
        out = str(tmp_path / f"gen-{name}.parquet")
        args = ["generate", "tiny-sets@candidate", "--conditions", cond, "--out", out]
        assert main([*args, "--seed", "5"]) == 0
        outs.append(pq.read_table(out))
    for col in ("event_id", "truth_pt", "truth_pdg", "reco_pt", "reco_eta", "reco_class", "n_reco"):
        assert outs[0].column(col).equals(outs[1].column(col)), col
    assert outs[1].column("n_reco").to_numpy().sum() > 0


def test_truth_only_missing_column_is_named(tmp_path):
    full = write_events_parquet(str(tmp_path / "full.parquet"), _events())
    truth = _truth_only(full, str(tmp_path / "truth.parquet"), drop=("truth_pdg",))
    with pytest.raises(FarmError, match=r"missing column\(s\) \['truth_pdg'\] \(required") as exc:
        read_events_parquet(truth)
    assert "\n" not in str(exc.value)


def test_truth_only_refuses_unknown_pdg_and_empty_events(tmp_path):
    url = str(tmp_path / "bad.parquet")
    lists = {k: pa.array([[1.0, 2.0]], pa.list_(pa.float32())) for k in ("pt", "eta", "phi")}
    cols = {f"truth_{k}": v for k, v in lists.items()}
    cols["truth_charge"] = pa.array([[0, 0]], pa.list_(pa.int8()))
    pq.write_table(pa.table(cols | {"truth_pdg": pa.array([[22, 999]], pa.list_(pa.int32()))}), url)
    with pytest.raises(FarmError, match="unknown pdg id 999"):
        read_events_parquet(url)
    empty = {k: pa.array([[]], v.type) for k, v in cols.items()}
    pq.write_table(pa.table(empty | {"truth_pdg": pa.array([[]], pa.list_(pa.int32()))}), url)
    with pytest.raises(FarmError, match="without truth particles"):
        read_events_parquet(url)


def test_a_partial_reco_file_is_still_a_full_events_file(tmp_path):
    full = write_events_parquet(str(tmp_path / "full.parquet"), _events())
    table = pq.read_table(full)
    pq.write_table(table.drop(["reco_class"]), str(tmp_path / "partial.parquet"))
    with pytest.raises(
        FarmError, match=r"not a farm events file: missing column\(s\) \['reco_class'\]"
    ):
        read_events_parquet(str(tmp_path / "partial.parquet"))


def test_truth_only_file_is_no_reference(farm_home, tmp_path, capsys):
    register_model("tiny-sets", tiny_set_model(), "events", tmp_path)
    full = write_events_parquet(str(tmp_path / "full.parquet"), _events())
    truth = _truth_only(full, str(tmp_path / "truth.parquet"))
    args = ["generate", "tiny-sets@candidate", "--conditions", truth, "--out"]
    out, ref = str(tmp_path / "gen.parquet"), str(tmp_path / "ref.parquet")
    assert main([*args, out, "--reference-out", ref]) != 0
    err = capsys.readouterr().err.strip()
    assert "no reco set to write as --reference-out" in err and "\n" not in err
    assert not (tmp_path / "gen.parquet").exists() and not (tmp_path / "ref.parquet").exists()


def test_write_truth_only_keeps_the_truth_alone(tmp_path):
    sample = _events()
    url = write_events_parquet(str(tmp_path / "t.parquet"), sample, {"x": 1}, truth_only=True)
    names = pq.read_schema(url).names
    assert not [c for c in names if c.startswith("reco_") or c in ("n_reco", "met_x", "ht")]
    back = read_events_parquet(url)
    assert np.array_equal(back.truth_counts, sample.truth_counts)
    assert np.array_equal(back.event_id, sample.event_id)
    for k, v in sample.truth.items():
        assert np.array_equal(back.truth[k], v), k


def test_sharded_pythia_truth_only_matches_the_full_files(ray_session, tmp_path):
    from farm.data.events import EventGenConfig, generate_events_sharded

    config = EventGenConfig("qcd", 6)
    full = generate_events_sharded(config, 5, str(tmp_path / "full"), 3, progress=False)
    truth = generate_events_sharded(
        config, 5, str(tmp_path / "truth"), 3, progress=False, truth_only=True
    )
    for a, b in zip(full, truth, strict=True):
        assert "reco_pt" not in pq.read_schema(b).names
        fa, fb = read_events_parquet(a), read_events_parquet(b)
        assert np.array_equal(fa.event_id, fb.event_id)
        for k in fa.truth:
            assert np.array_equal(fa.truth[k], fb.truth[k]), k


def test_campaign_over_a_truth_only_file(ray_session, farm_home, tmp_path):
    from farm.campaign.run import execute, submit
    from farm.formats.reader import read_sample
    from farm.specs import parse_job

    register_model("tiny-sets", tiny_set_model(), "events", tmp_path)
    events = _events()
    full = write_events_parquet(str(tmp_path / "full.parquet"), events)
    truth = _truth_only(full, str(tmp_path / "truth.parquet"))
    doc = {
        "kind": "campaign",
        "name": "truth-only-campaign",
        "model": "tiny-sets@candidate",
        "events": 16,
        "shard_size": 8,
        "seed": 4,
        "conditions": {"distribution": "event-truth", "url": truth},
        "resources": {"actors": 1, "batch_size": 64},
    }
    campaign = submit(parse_job(doc, "test", kind="campaign"))
    assert execute(campaign.id).events == 16
    data = read_sample(campaign.id)
    order = np.argsort(data.event_id)
    expect = events.subset(np.arange(16) % 12)
    np.testing.assert_array_equal(data.subset(order).truth["pt"], expect.truth["pt"])
    assert data.reco_counts.sum() > 0
