"""Pythia 8 jets: physics checks on small samples, reproducibility, sharding, resume and CLI."""

from __future__ import annotations

import argparse
import dataclasses
import os

import numpy as np
import pytest

from farm.data import jets
from farm.data.jets import JetGenConfig, generate_jets, generate_jets_sharded
from farm.errors import FarmError
from farm.formats.jets import read_jets_h5, read_jets_parquet
from farm.sharding import pythia_seed


def mass_peak(masses: np.ndarray, width: float = 5.0, hi: float = 300.0) -> float:
    """Centre of the most populated bin after [1, 2, 1] smoothing."""
    counts, edges = np.histogram(masses, bins=int(hi / width), range=(0.0, hi))
    counts = np.convolve(counts, [1, 2, 1], mode="same")
    k = int(counts.argmax())
    return 0.5 * (edges[k] + edges[k + 1])


@pytest.fixture(scope="module")
def top():
    return generate_jets(JetGenConfig("top", 200), seed=11)


@pytest.fixture(scope="module")
def w():
    return generate_jets(JetGenConfig("w", 150), seed=12)


@pytest.fixture(scope="module")
def gluon():
    return generate_jets(JetGenConfig("gluon", 150, n_constituents=150), seed=13)


@pytest.fixture(scope="module")
def quark():
    return generate_jets(JetGenConfig("quark", 150, n_constituents=150), seed=14)


def test_top_jet_mass_peaks_at_the_top_mass(top):
    assert 160.0 <= mass_peak(top["sd_mass"]) <= 190.0
    # grooming only removes soft wide-angle radiation: never more mass than the plain jet
    assert np.all(top["sd_mass"] <= top["jet_features"][:, 2] + 1e-3)
    assert np.median(top["jet_features"][:, 2]) > 160.0


def test_w_jet_mass_peaks_at_the_w_mass(w):
    assert 65.0 <= mass_peak(w["sd_mass"]) <= 95.0
    assert np.median(w["sd_mass"]) < 120.0


def test_gluon_jets_have_more_constituents_than_quark_jets(gluon, quark):
    n_g, n_q = gluon["jet_features"][:, 3].mean(), quark["jet_features"][:, 3].mean()
    assert n_g > 1.2 * n_q, (n_g, n_q)
    assert np.median(quark["sd_mass"]) < 100.0  # light-quark jets carry no heavy mass scale


def test_pt_rel_sums_to_one_when_all_constituents_are_kept(gluon, quark):
    for sample in (gluon, quark):
        cons, feats = sample["constituents"], sample["jet_features"]
        complete = feats[:, 3] <= cons.shape[1]
        assert complete.mean() > 0.9
        sums = cons[complete, :, 2].sum(axis=1)
        # scalar sum over vector sum: >= 1, and close to 1 for a collimated jet
        assert np.all(sums >= 0.999) and np.all(sums < 1.1)
        assert abs(float(np.median(sums)) - 1.0) < 0.02


def test_jetnet_conventions(top):
    cons, feats = top["constituents"], top["jet_features"]
    assert cons.shape == (200, 30, 4) and cons.dtype == np.float32
    assert feats.shape == (200, 4) and feats.dtype == np.float32
    assert top["sd_mass"].shape == (200,) and top["event_index"].dtype == np.int64
    mask = cons[..., 3]
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert np.all(np.diff(mask, axis=1) <= 0)  # real constituents first, then padding
    assert np.all(cons[mask == 0] == 0)
    assert np.array_equal(mask.sum(1), np.minimum(feats[:, 3], 30))
    pt_rel = np.where(mask == 1, cons[..., 2], -1)
    assert np.all(np.diff(pt_rel, axis=1) <= 0)  # sorted by pT
    assert np.all(cons[..., 1] > -np.pi) and np.all(cons[..., 1] <= np.pi)
    assert np.all(np.hypot(cons[..., 0], cons[..., 1])[mask == 1] < 1.0)
    lo, hi = JetGenConfig("top", 1).pt_window
    assert np.all((feats[:, 0] >= lo) & (feats[:, 0] <= hi)) and np.all(np.abs(feats[:, 1]) < 2.5)
    assert np.all(np.diff(top["event_index"]) >= 0)


def test_wrap_phi_range():
    x = np.array([np.pi, -np.pi, 3 * np.pi, 0.1 - 2 * np.pi, 0.0])
    assert np.allclose(jets.wrap_phi(x), [np.pi, np.pi, np.pi, 0.1, 0.0])


def test_soft_drop_agrees_with_fastjet_contrib(top):
    """Our beta=0 soft drop equals fastjet-contrib SoftDrop on real top jets."""
    fj = jets._fastjet()
    config = JetGenConfig("top", 1)
    pythia = jets._make_pythia(config, 5)
    events = []
    while len(events) < 6:
        if pythia.next():
            events.append(jets._visible_final(pythia.event))
    jet_event, jet_p4, index, offsets = jets.cluster_antikt(fj, events, 0.8, 500.0)
    constituents = [
        events[jet_event[k]][index[offsets[k] : offsets[k + 1]]] for k in range(len(jet_p4))
    ]
    assert len(constituents) >= 6
    ours = np.array([jets.soft_drop_mass(fj, c, 0.8) for c in constituents])
    counts = np.array([len(c) for c in constituents])
    cs = fj.ClusterSequence(
        jets._momenta(np.concatenate(constituents), counts),
        fj.JetDefinition(fj.cambridge_algorithm, 1.6),
    )
    groomed = cs.exclusive_jets_softdrop_grooming(njets=1, beta=0.0, symmetry_cut=0.1, R0=0.8)
    assert np.allclose(ours, np.asarray(groomed.msoftdrop), rtol=1e-9, atol=1e-6)
    # and anti-kt jets carry the summed momentum of their constituents
    assert np.allclose([c.sum(0) for c in constituents], jet_p4, rtol=1e-9, atol=1e-6)


def test_same_seed_same_bits_other_seed_other_jets():
    config = JetGenConfig("gluon", 6)
    a, b, c = generate_jets(config, 3), generate_jets(config, 3), generate_jets(config, 4)
    assert a.keys() == b.keys() == {"constituents", "jet_features", "sd_mass", "event_index"}
    for key in a:
        assert a[key].tobytes() == b[key].tobytes()
    assert not np.array_equal(a["jet_features"], c["jet_features"])


def test_switches_reach_pythia():
    config = JetGenConfig("gluon", 10, mpi=False, hadronisation=False, n_constituents=150)
    settings = jets.pythia_settings(config, 9)
    assert "PartonLevel:MPI = off" in settings and "HadronLevel:all = off" in settings
    assert "Random:seed = 9" in settings and "PhaseSpace:pTHatMin = 900.0" in settings
    partons = generate_jets(config, 9)["jet_features"][:, 3]
    hadrons = generate_jets(dataclasses.replace(config, mpi=True, hadronisation=True), 9)
    assert partons.mean() < 0.5 * hadrons["jet_features"][:, 3].mean()
    meta = jets.generator_metadata(config, 9)
    assert meta["pythia_settings"] == settings and meta["config"]["process"] == "gluon"


def test_bad_input_is_one_clear_error():
    with pytest.raises(FarmError, match=r"process .higgs.; allowed: gluon, quark, top, w, z"):
        JetGenConfig("higgs", 10)
    with pytest.raises(FarmError, match="pT-hat window"):
        JetGenConfig("top", 10, pt_hat_min=1100, pt_hat_max=900)
    with pytest.raises(FarmError, match=r"seed must be in 1\.\.900000000"):
        generate_jets(JetGenConfig("top", 1), 0)
    with pytest.raises(FarmError, match="jet pT window is empty"):
        JetGenConfig("top", 1, jet_pt_min=2000)


def test_sharded_generation_reproduces_and_resumes(ray_session, tmp_path):
    out = str(tmp_path / "jets")
    config = JetGenConfig("gluon", 24)
    urls = generate_jets_sharded(config, 5, out, 10, formats=("parquet", "h5"), progress=False)
    assert [os.path.basename(u) for u in urls] == [
        f"jets-{k:05d}.{ext}" for k in range(3) for ext in ("parquet", "h5")
    ]
    data, meta = read_jets_parquet(urls[2])
    expected = generate_jets(dataclasses.replace(config, n_jets=10), pythia_seed(5, 1))
    for key in ("constituents", "jet_features", "sd_mass", "event_index"):
        assert np.array_equal(data[key], expected[key])
    assert np.array_equal(data["event_id"], np.arange(10, 20))
    assert meta["generator"]["shard_id"] == 1 and meta["generator"]["campaign_seed"] == 5
    assert meta["generator"]["pythia_seed"] == pythia_seed(5, 1)
    h5, _ = read_jets_h5(urls[3])
    assert np.array_equal(h5["constituents"], data["constituents"])

    # resume: only the missing shard is generated again, bit for bit the same
    kept = {u: os.stat(u).st_mtime_ns for u in urls if "00001" not in u}
    os.remove(urls[2])
    again = generate_jets_sharded(config, 5, out, 10, formats=("parquet", "h5"), progress=False)
    assert again == urls
    assert all(os.stat(u).st_mtime_ns == t for u, t in kept.items())
    redone, _ = read_jets_parquet(urls[2])
    assert redone["constituents"].tobytes() == data["constituents"].tobytes()
    ids = np.concatenate([read_jets_parquet(u)[0]["event_id"] for u in urls[::2]])
    assert np.array_equal(ids, np.arange(24))

    with pytest.raises(FarmError, match="other settings"):
        generate_jets_sharded(JetGenConfig("quark", 24), 5, out, 10, progress=False)


def test_cli_writes_shards(ray_session, tmp_path):
    from farm.cli import data_jets

    parser = argparse.ArgumentParser()
    data_jets.register(parser.add_subparsers())
    out = tmp_path / "cli"
    args = parser.parse_args(
        ["jets", "--process", "top", "--n", "6", "--out", str(out), "--shard-size", "4",
         "--constituents", "150", "--format", "h5", "--no-progress", "--seed", "2"]
    )  # fmt: skip
    assert args.handler(args) == 0
    data, meta = read_jets_h5(str(out / "jets-00001.h5"))
    assert data["constituents"].shape == (2, 150, 4)
    assert meta["generator"]["config"]["n_constituents"] == 150
    assert sorted(os.listdir(out)) == ["jets-00000.h5", "jets-00001.h5", "jets-campaign.json"]
    with pytest.raises(SystemExit):
        parser.parse_args(["jets", "--process", "higgs", "--n", "1", "--out", str(out)])


@pytest.mark.slow
def test_larger_samples_resolve_the_mass_peaks():
    top = generate_jets(JetGenConfig("top", 1000), seed=21)
    z = generate_jets(JetGenConfig("z", 600), seed=22)
    w = generate_jets(JetGenConfig("w", 600), seed=23)
    assert 165.0 <= mass_peak(top["sd_mass"]) <= 180.0
    assert 82.0 <= mass_peak(z["sd_mass"]) <= 100.0
    assert 72.0 <= mass_peak(w["sd_mass"]) <= 88.0
    assert mass_peak(z["sd_mass"]) > mass_peak(w["sd_mass"])
