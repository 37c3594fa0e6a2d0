"""`farm serve` for jets and events on the shared Ray: real HTTP, seeds equal to `farm generate`."""

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest
import requests
from tiny_kinds import (
    JET_SLOTS,
    SET_SLOTS,
    register_model,
    tiny_electron_model,
    tiny_jet_model,
    tiny_set_model,
)

from farm.cli import main
from farm.formats.events import arrow_to_events, write_events_parquet
from farm.formats.jets import arrow_to_jets, write_jets
from farm.formats.reader import read_events, read_jets
from farm.samples import EVENT_CLASSES
from farm.serve import ServeOptions, start
from farm.serve.api import ARROW_STREAM, Particle, ScatteredElectron, event_electrons, event_truth

JETS = [{"pt": 350.0, "eta": 0.2, "n": 3}, {"pt": 420.0, "eta": -1.1, "n": JET_SLOTS}]
TRUTH = [
    [
        {"pt": 12.0, "eta": 0.1, "phi": 0.3, "pdg": 211, "charge": 1},
        {"pt": 4.0, "eta": -0.7, "phi": 2.0, "pdg": 22, "charge": 0},
    ],
    [{"pt": 30.0, "eta": 1.2, "phi": -1.0, "pdg": 11, "charge": -1}],
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(ray_session, farm_home, tmp_path):
    from ray import serve

    register_model("tiny-jets", tiny_jet_model(), "jets", tmp_path)
    register_model("tiny-sets", tiny_set_model(), "events", tmp_path)
    register_model("tiny-eic", tiny_electron_model(), "events", tmp_path)
    options = ServeOptions(
        port=_free_port(), cpus_per_replica=0, batch_wait_ms=150, max_events=50, poll_seconds=60
    )
    url = start(["tiny-jets@candidate", "tiny-sets@candidate", "tiny-eic@candidate"], options)
    try:
        yield url, tmp_path
    finally:
        serve.shutdown()


def _post(url, name, body, **kw):
    return requests.post(f"{url}/v1/models/{name}/generate", json=body, timeout=60, **kw)


def _arrow(response) -> pa.Table:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW_STREAM
    return pa.ipc.open_stream(response.content).read_all()


def _one_line_error(response, status, text):
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and text in body["error"] and "\n" not in body["error"]


def _farm_generate(model, conditions, out, *extra):
    assert main(["generate", model, "--conditions", conditions, "--out", out, *extra]) == 0


def test_serve_jets_and_events(served):
    url, tmp_path = served
    listed = {m["name"]: m for m in requests.get(f"{url}/v1/models", timeout=10).json()["models"]}
    assert listed["tiny-jets"]["kind"] == "jets" and listed["tiny-jets"]["constituent_slots"] == 6
    assert (listed["tiny-sets"]["truth_slots"], listed["tiny-sets"]["units"]["pt"]) == (5, "GeV")

    # jets: seeded JSON and Arrow IPC are `farm generate --seed` on a jets file of this truth
    n = np.array([j["n"] for j in JETS])
    constituents = np.zeros((len(JETS), JET_SLOTS, 4), np.float32)
    constituents[..., 3] = np.arange(JET_SLOTS)[None, :] < n[:, None]
    features = np.array([[j["pt"], j["eta"], 0.0, j["n"]] for j in JETS], np.float32)
    truth_file = str(tmp_path / "jet-truth.parquet")
    write_jets(truth_file, {"constituents": constituents, "jet_features": features})
    _farm_generate("tiny-jets@candidate", truth_file, str(tmp_path / "jets.parquet"), "--seed", "7")
    want = read_jets(str(tmp_path / "jets.parquet"))
    body = _post(url, "tiny-jets", {"jets": JETS, "seed": 7}).json()
    assert (body["kind"], body["version"], body["units"]["pt"]) == ("jets", "1", "GeV")
    assert np.array_equal(np.asarray(body["constituents"], np.float32), want.constituents)
    assert [j["n"] for j in body["jets"]] == [3, JET_SLOTS] and (want.jet_features[:, 2] > 0).all()
    table = _arrow(
        _post(url, "tiny-jets", {"jets": JETS, "seed": 7}, headers={"Accept": ARROW_STREAM})
    )
    got = arrow_to_jets(table)
    assert np.array_equal(got["constituents"], want.constituents)
    assert np.array_equal(got["jet_features"], want.jet_features)
    description = json.loads(table.schema.metadata[b"farm.jets"])
    assert json.loads(description["generator"]["served"])["seed"] == 7

    # events: the reco sets of `farm generate --seed` on an events file of this truth
    truth_sets = [[Particle(**p) for p in event] for event in TRUTH]
    truth = event_truth(truth_sets)
    truth.event.update({k: np.zeros(len(truth)) for k in ("met_x", "met_y", "ht")})  # no reco
    events_file = write_events_parquet(str(tmp_path / "truth.parquet"), truth)
    _farm_generate(
        "tiny-sets@candidate", events_file, str(tmp_path / "reco.parquet"), "--seed", "3"
    )
    want = read_events(str(tmp_path / "reco.parquet"))
    reply = _post(url, "tiny-sets", {"truth": TRUTH, "seed": 3}, headers={"Accept": ARROW_STREAM})
    got = arrow_to_events(_arrow(reply))
    for k in ("pt", "eta", "phi", "class", "charge"):
        assert np.array_equal(got.reco[k], want.reco[k]), k
    assert np.array_equal(got.reco_counts, want.reco_counts) and want.reco_counts.sum() > 0
    body = _post(url, "tiny-sets", {"truth": TRUTH, "seed": 3}).json()
    assert body["classes"] == list(EVENT_CLASSES) and body["sets"]["truncated_events"] == 0
    reco = [p for event in body["events"] for p in event["reco"]]
    assert [p["class"] for p in reco] == [EVENT_CLASSES[c] for c in want.reco["class"]]
    assert np.array_equal(np.array([p["pt"] for p in reco], np.float32), want.reco["pt"])

    # events of the scattered-electron model: `farm generate --seed` on a DIS file of them
    electrons = [{"e": 12.0, "pt": 3.1, "eta": -1.9, "phi": 0.4},
                 {"e": 7.5, "pt": 2.2, "eta": -1.6, "phi": -2.8}]  # fmt: skip
    dis = event_electrons([ScatteredElectron(**e) for e in electrons], truth_sets)
    dis.event.update({k: np.zeros(len(dis)) for k in ("met_x", "met_y", "ht")})
    dis_file = write_events_parquet(str(tmp_path / "dis.parquet"), dis)
    _farm_generate("tiny-eic@candidate", dis_file, str(tmp_path / "eic.parquet"), "--seed", "5")
    want = read_events(str(tmp_path / "eic.parquet"))
    body = {"electrons": electrons, "truth": TRUTH, "seed": 5}
    got = arrow_to_events(_arrow(_post(url, "tiny-eic", body, headers={"Accept": ARROW_STREAM})))
    for k in ("pt", "eta", "phi", "class", "charge"):
        assert np.array_equal(got.reco[k], want.reco[k]), k
    assert np.array_equal(got.event["electron_e"], [12.0, 7.5])
    reply = _post(url, "tiny-eic", body).json()
    assert reply["sets"]["condition"] == "scattered_electron"
    assert [len(e["reco"]) for e in reply["events"]] == list(want.reco_counts)
    _one_line_error(_post(url, "tiny-eic", {"truth": TRUTH}), 400, "give 'electrons'")
    _one_line_error(_post(url, "tiny-sets", {"electrons": electrons}), 400, "give 'truth'")

    # oversize events: refused in one line, or truncated by pT (recorded) as farm generate does
    big = [[{"pt": 1.0 + i, "eta": 0.0, "phi": 0.1 * i, "pdg": 22, "charge": 0} for i in range(8)]]
    _one_line_error(_post(url, "tiny-sets", {"truth": big}), 400, "more than 5 truth particles")
    body = _post(url, "tiny-sets", {"truth": big, "truncate": True, "seed": 1}).json()
    assert body["sets"] == {"truth_slots": SET_SLOTS, "reco_slots": SET_SLOTS, "truncate": True,
                            "truncated_events": 1}  # fmt: skip

    # concurrent unseeded requests of one kind share sampler calls; each gets its own share
    jets = [[{"pt": 300.0 + 10 * k, "eta": 0.1 * k, "n": 1 + k % JET_SLOTS}] for k in range(6)]
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda j: _post(url, "tiny-jets", {"jets": j}).json(), jets))
        events = list(pool.map(lambda t: _post(url, "tiny-sets", {"truth": t}).json(), [TRUTH] * 4))
    assert [r["jets"][0]["n"] for r in replies] == [j[0]["n"] for j in jets]
    assert [r["jets"][0]["pt"] for r in replies] == [j[0]["pt"] for j in jets]
    assert max(r["merged_requests"] for r in replies + events) > 1
    assert all([e["n_truth"] for e in r["events"]] == [2, 1] for r in events)

    # bad requests: one-line JSON 4xx naming the field
    _one_line_error(_post(url, "tiny-jets", {"jets": [{"pt": 300, "eta": 0, "n": 9}]}), 400,
                    "field 'jets': n up to 9")  # fmt: skip
    _one_line_error(_post(url, "tiny-jets", {"jets": [{"pt": -3, "eta": 0, "n": 2}]}), 422,
                    "field 'jets.0.pt'")  # fmt: skip
    _one_line_error(_post(url, "tiny-jets", {"energies": [1e3]}), 400, "give 'jets'")
    _one_line_error(_post(url, "tiny-sets", {"jets": JETS}), 400, "generates events: give 'truth'")
    _one_line_error(_post(url, "tiny-jets", {"jets": JETS, "truth": TRUTH}), 422, "exactly one of")
    bad_pdg = [[{"pt": 2.0, "eta": 0.0, "phi": 0.0, "pdg": 99, "charge": 0}]]
    _one_line_error(_post(url, "tiny-sets", {"truth": bad_pdg}), 400, "unknown pdg id 99")
    _one_line_error(_post(url, "tiny-sets", {"truth": [[]]}), 422, "at least one truth particle")
    _one_line_error(_post(url, "tiny-jets", {"jets": JETS * 26}), 413, "exceeds the limit of 50")
