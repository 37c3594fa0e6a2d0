"""Pythia 8 events + synthetic particle flow: jet response, DIS kinematics, seeds, shards, CLI."""

from __future__ import annotations

import argparse
import dataclasses
import os

import numpy as np
import pytest

from farm.data.events import EventGenConfig, generate_events, generate_events_sharded
from farm.data.jets import _fastjet, cluster_antikt
from farm.errors import FarmError
from farm.formats.events import read_events_parquet, read_metadata
from farm.formats.reader import read_sample
from farm.samples import STABLE_PDG, EventSample
from farm.sharding import pythia_seed


@pytest.fixture(scope="module")
def qcd() -> EventSample:
    return generate_events(EventGenConfig("qcd", 120), seed=3)


@pytest.fixture(scope="module")
def dis() -> EventSample:
    return generate_events(EventGenConfig("dis", 200), seed=4)


def four_momenta(side: dict, counts: np.ndarray) -> list[np.ndarray]:
    """Per event (n, 4) massless [px, py, pz, E] of a flat set."""
    pt, eta, phi = side["pt"], side["eta"], side["phi"]
    p4 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], 1)
    return np.split(p4, np.cumsum(counts)[:-1])


def pt_eta_phi(p4: np.ndarray):
    pt = np.hypot(p4[:, 0], p4[:, 1])
    return pt, np.arcsinh(p4[:, 2] / pt), np.arctan2(p4[:, 1], p4[:, 0])


def test_reco_jet_response_is_near_one_for_charged_dominated_jets(qcd):
    fj = _fastjet()
    t_event, t_p4, t_index, t_offsets = cluster_antikt(
        fj, four_momenta(qcd.truth, qcd.truth_counts), 0.4, 20.0
    )
    r_event, r_p4, _, _ = cluster_antikt(fj, four_momenta(qcd.reco, qcd.reco_counts), 0.4, 5.0)
    t_pt, t_eta, t_phi = pt_eta_phi(t_p4)
    r_pt, r_eta, r_phi = pt_eta_phi(r_p4)
    start = EventSample.offsets(qcd.truth_counts)
    response = []
    for k in np.flatnonzero((t_pt > 50.0) & (np.abs(t_eta) < 2.0)):
        cons = t_index[t_offsets[k] : t_offsets[k + 1]] + start[t_event[k]]
        charged = qcd.truth["charge"][cons] != 0
        if qcd.truth["pt"][cons][charged].sum() < 0.7 * qcd.truth["pt"][cons].sum():
            continue
        m = np.flatnonzero(r_event == t_event[k])
        dr = np.hypot(r_eta[m] - t_eta[k], (r_phi[m] - t_phi[k] + np.pi) % (2 * np.pi) - np.pi)
        if len(m) and dr.min() < 0.2:
            response.append(r_pt[m[dr.argmin()]] / t_pt[k])
    assert len(response) > 40
    assert abs(np.median(response) - 1.0) < 0.03
    assert np.std(response) < 0.1


def test_truth_sets_are_stable_visible_particles_inside_the_cuts(qcd):
    assert len(qcd) == 120 and (qcd.truth_counts > 50).all()
    assert np.isin(np.abs(qcd.truth["pdg"]), list(STABLE_PDG)).all()
    assert (np.abs(qcd.truth["pdg"]) != 12).all() and (qcd.truth["pt"] > 0.1).all()
    assert (np.abs(qcd.truth["eta"]) < 5.0).all()
    # reco is smaller than truth (thresholds, acceptance, merging); every class appears
    assert (qcd.reco_counts < qcd.truth_counts).all()
    assert set(np.unique(qcd.reco["class"])) == {0, 1, 2, 3, 4}
    # event-level quantities are those of the sets
    owner = np.repeat(np.arange(len(qcd)), qcd.reco_counts)
    ht = np.bincount(owner, weights=qcd.reco["pt"], minlength=len(qcd))
    np.testing.assert_allclose(qcd.event["ht"], ht)
    mx = -np.bincount(owner, weights=qcd.reco["pt"] * np.cos(qcd.reco["phi"]), minlength=len(qcd))
    np.testing.assert_allclose(qcd.event["met_x"], mx)


def test_dis_events_pass_the_q2_cut_and_hold_the_scattered_electron(dis):
    q2, x, y = dis.event["q2"], dis.event["x_bj"], dis.event["y_inel"]
    assert (q2 > 10.0).all() and ((x > 0) & (x < 1)).all() and ((y > 0) & (y < 1)).all()
    s = 4 * 18.0 * 275.0
    np.testing.assert_allclose(q2, s * x * y, rtol=1e-3)  # Q^2 = s x y (massless beams)
    off = EventSample.offsets(dis.truth_counts)
    has_electron = [(dis.truth["pdg"][off[i] : off[i + 1]] == 11).any() for i in range(len(dis))]
    assert np.mean(has_electron) > 0.95  # outside |eta| < 4.5 only at the lowest Q^2
    assert dis.truth_counts.mean() < 40  # EIC events are small sets


def test_same_seed_same_bits_other_seed_other_events():
    config = EventGenConfig("ttbar", 6)
    a, b = generate_events(config, 21), generate_events(config, 21)
    c = generate_events(config, 22)
    for side in ("truth", "reco", "event"):
        for k, v in getattr(a, side).items():
            assert v.tobytes() == getattr(b, side)[k].tobytes(), (side, k)
    assert a.truth["pt"].tobytes() != c.truth["pt"].tobytes()


def test_bad_configs_are_one_clear_error():
    with pytest.raises(FarmError, match="unknown event process 'higgs'"):
        EventGenConfig("higgs", 1)
    with pytest.raises(FarmError, match="pT-hat window"):
        EventGenConfig("qcd", 1, pt_hat_min=300, pt_hat_max=200)
    with pytest.raises(FarmError, match="unknown detector"):
        EventGenConfig("dis", 1, detector="atlas")
    with pytest.raises(FarmError, match=r"seed must be in 1\.\.900000000"):
        generate_events(EventGenConfig("qcd", 1), 0)


def test_sharded_generation_reproduces_resumes_and_reads_back(ray_session, tmp_path):
    out = str(tmp_path / "events")
    config = EventGenConfig("dis", 25)
    urls = generate_events_sharded(config, 5, out, 10, progress=False)
    assert [os.path.basename(u) for u in urls] == [f"events-{k:05d}.parquet" for k in range(3)]
    got = read_events_parquet(urls[1])
    expected = generate_events(dataclasses.replace(config, n_events=10), pythia_seed(5, 1))
    for side in ("truth", "reco", "event"):
        for k, v in getattr(expected, side).items():
            assert (
                getattr(got, side)[k].tobytes() == v.astype(getattr(got, side)[k].dtype).tobytes()
            )
    assert np.array_equal(got.event_id, np.arange(10, 20))
    meta = read_metadata(urls[1])
    assert meta["shard_id"] == 1 and meta["pythia_seed"] == pythia_seed(5, 1)
    assert meta["detector"]["name"] == "eic-pf-synthetic"

    kept = {u: os.stat(u).st_mtime_ns for u in urls if "00001" not in u}
    os.remove(urls[1])
    assert generate_events_sharded(config, 5, out, 10, progress=False) == urls
    assert all(os.stat(u).st_mtime_ns == t for u, t in kept.items())
    with open(urls[1], "rb") as f:
        redone = f.read()
    generate_events_sharded(config, 5, str(tmp_path / "again"), 10, progress=False)
    with open(tmp_path / "again" / "events-00001.parquet", "rb") as f:
        assert f.read() == redone  # the same (seed, shard): the same file, byte for byte
    folder = read_sample(out)
    assert folder.kind == "events" and np.array_equal(folder.event_id, np.arange(25))
    with pytest.raises(FarmError, match="other settings"):
        generate_events_sharded(EventGenConfig("qcd", 25), 5, out, 10, progress=False)


def test_cli_writes_shards(ray_session, tmp_path):
    from farm.cli import data_events

    parser = argparse.ArgumentParser()
    data_events.register(parser.add_subparsers())
    out = tmp_path / "cli"
    args = parser.parse_args(
        ["events", "--process", "dis", "--n", "5", "--out", str(out), "--shard-size", "3",
         "--q2-min", "100", "--no-progress", "--seed", "2"]
    )  # fmt: skip
    assert args.handler(args) == 0
    got = read_events_parquet(str(out / "events-00001.parquet"))
    assert len(got) == 2 and (got.event["q2"] > 100).all()
    assert sorted(os.listdir(out)) == [
        "events-00000.parquet",
        "events-00001.parquet",
        "events-campaign.json",
    ]
    with pytest.raises(FarmError, match="names a file"):
        bad = parser.parse_args(["events", "--process", "qcd", "--n", "1", "--out", "x.parquet"])
        bad.handler(bad)
