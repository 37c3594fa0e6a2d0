"""EIC: DIS events store the scattered electron; a set model conditioned on it, through farm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from farm import registry
from farm.data.events import EventGenConfig, generate_events
from farm.errors import FarmError
from farm.formats.events import read_events_parquet, write_events_parquet
from farm.samples import ELECTRON_COLUMNS, EventSample
from farm.specs import load_job, parse_job
from farm.train import run_training

E_BEAM, P_BEAM, M_P = 18.0, 275.0, 0.938272


@pytest.fixture(scope="module")
def dis() -> EventSample:
    return generate_events(EventGenConfig("dis", 300), seed=4)


@pytest.fixture(scope="module")
def dis_file(tmp_path_factory, dis) -> str:
    return write_events_parquet(str(tmp_path_factory.mktemp("eic") / "dis.parquet"), dis)


def test_electron_columns_reproduce_the_stored_q2_and_y(dis):
    e, eta = dis.event["electron_e"], dis.event["electron_eta"]
    cos_theta = np.tanh(eta)  # theta from the proton (+z) direction; the electron beam is -z
    q2 = 2 * E_BEAM * e * (1 + cos_theta)
    y = 1 - e / (2 * E_BEAM) * (1 - cos_theta)
    p_z = np.sqrt(P_BEAM**2 - M_P**2)  # y = P.q / P.k with the proton's mass
    y_massive = 1 - e * (P_BEAM - p_z * cos_theta) / (E_BEAM * (P_BEAM + p_z))
    exact = np.isclose(q2, dis.event["q2"], rtol=1e-6, atol=0)
    exact &= np.isclose(y_massive, dis.event["y_inel"], rtol=0, atol=1e-6)
    # Q^2, y come from the hard process (k'), the electron is its final copy: they differ only
    # where the shower's recoil moved the lepton (1 of 500 events at seed 4, 0.3% in Q^2)
    assert exact.mean() >= 0.99, exact.mean()
    np.testing.assert_allclose(q2, dis.event["q2"], rtol=0.01)
    np.testing.assert_allclose(y[exact], dis.event["y_inel"][exact], atol=2e-5)  # massless beams
    np.testing.assert_allclose(dis.event["electron_pt"], e / np.cosh(eta), rtol=1e-6)
    assert (np.abs(dis.event["electron_phi"]) <= np.pi).all() and (eta < 0).all()


def test_electron_is_the_final_state_truth_electron(dis):
    off = EventSample.offsets(dis.truth_counts)
    inside = (np.abs(dis.event["electron_eta"]) < 4.5) & (dis.event["electron_pt"] > 0.05)
    assert inside.mean() > 0.95
    for i in np.flatnonzero(inside):
        sl = slice(off[i], off[i + 1])
        hit = (dis.truth["pdg"][sl] == 11) & (dis.truth["pt"][sl] == dis.event["electron_pt"][i])
        assert hit.sum() == 1, i  # the very particle of the record, not a guess by pT
        assert dis.truth["phi"][sl][hit][0] == dis.event["electron_phi"][i]


def test_same_seed_same_bytes_and_truth_only_files_keep_the_electron(tmp_path, dis, dis_file):
    fresh = generate_events(EventGenConfig("dis", 300), seed=4)  # the same seed, generated again
    again = write_events_parquet(str(tmp_path / "again.parquet"), fresh)
    assert Path(again).read_bytes() == Path(dis_file).read_bytes()
    assert set(ELECTRON_COLUMNS) <= set(pq.read_schema(dis_file).names)
    truth_only = write_events_parquet(str(tmp_path / "t.parquet"), dis, truth_only=True)
    back = read_events_parquet(truth_only)
    assert back.truth_only
    np.testing.assert_array_equal(
        back.electron_inputs(), read_events_parquet(dis_file).electron_inputs()
    )
    assert back.electron_inputs(dis_kinematics=True).shape == (len(dis), 7)


def old_file(tmp_path, dis_file) -> str:
    """A DIS file as farm wrote them before the electron columns."""
    table = pq.read_table(dis_file)
    url = str(tmp_path / "old.parquet")
    pq.write_table(table.drop_columns(list(ELECTRON_COLUMNS)), url)
    return url


def test_files_without_the_electron_are_one_clear_line(tmp_path, dis_file):
    url = old_file(tmp_path, dis_file)
    sample = read_events_parquet(url)  # still a valid events file for a truth-set model
    with pytest.raises(FarmError, match=rf"^{url}: no column\(s\) \['electron_e', .*regenerate"):
        sample.electron_inputs()


def tiny_job(url: str, dis_kinematics: bool = False):
    doc = load_job("jobs/train-events-eic-electron.yaml").model_dump(mode="json")
    doc.update(
        name="tiny-eic",
        data={"source": "events", "url": url, "truncate": True},  # max_reco: the default, 50
        model={"kind": "sets", "condition": "scattered_electron",
               "dis_kinematics": dis_kinematics, "width": 16, "heads": 2, "layers": 1,
               "sampler": {"name": "euler", "nfe": 2}},
        optim={"epochs": 2, "batch_size": 32, "lr": 2e-3, "warmup_steps": 2},
        resources={"workers": 1, "use_gpu": False},
    )  # fmt: skip
    return parse_job(doc, "test", kind="train")


def test_job_file_parses():
    job = load_job("jobs/train-events-eic-electron.yaml")
    assert job.model.condition == "scattered_electron" and job.data.process == "dis"
    assert job.data.max_reco == 50
    doc = job.model_dump(mode="json")
    for bad, match in (({"process": "qcd"}, "needs DIS events"), ({"max_truth": 8}, "no truth")):
        with pytest.raises(FarmError, match=match):
            parse_job({**doc, "data": {**doc["data"], **bad}}, "test", kind="train")


def test_train_and_generate_from_the_electron_columns(
    ray_session, farm_home, tmp_path, capsys, dis_file
):
    from farm.cli import main

    run_training(tiny_job(dis_file))
    card = registry.show("tiny-eic@candidate")["card"]
    assert card["config"]["condition"] == "scattered_electron" and card["cond_dim"] == 4
    sets = card["data"]["sets"]
    assert (sets["max_reco"], sets["condition"], sets["max_truth"]) == (50, "scattered_electron", 0)

    gen = tmp_path / "gen.parquet"
    argv = ["generate", "tiny-eic@candidate", "--conditions", dis_file, "--out", str(gen)]
    assert main([*argv, "--seed", "3"]) == 0, capsys.readouterr().err
    sample, truth = read_events_parquet(str(gen)), read_events_parquet(dis_file)
    assert len(sample) == len(truth) and (sample.reco_counts <= 50).all()
    assert (sample.reco["pt"] > 0).all() and sample.reco_counts.std() > 0
    np.testing.assert_array_equal(sample.truth["pt"], truth.truth["pt"])  # truth kept as is
    np.testing.assert_array_equal(sample.event["electron_e"], truth.event["electron_e"])
    # the reco sets are the model's for the file's electron columns, seed for seed
    model = registry.load("tiny-eic@candidate").model
    cond = torch.from_numpy(truth.electron_inputs())
    x = model.generate(cond, generator=torch.Generator().manual_seed(3)).numpy()
    x = x.reshape(len(truth), 50, 4)
    np.testing.assert_array_equal((x[..., 0] > 0).sum(1), sample.reco_counts)
    np.testing.assert_allclose(x[..., 0][x[..., 0] > 0], sample.reco["pt"], rtol=1e-6)

    # a conditions file without the electron columns: one line, nothing written
    bad, out = old_file(tmp_path, dis_file), tmp_path / "bad.parquet"
    assert main(["generate", "tiny-eic@candidate", "--conditions", bad, "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}: no column(s) ['electron_e'" in err[0], err
    assert not out.exists()
