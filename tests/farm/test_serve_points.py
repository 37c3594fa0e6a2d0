"""`farm serve` for point-cloud shower models: real HTTP, seeds equal to `farm generate`."""

import json
import socket

import numpy as np
import pyarrow as pa
import pytest
import requests
from tiny_kinds import POINT_ENERGIES, register_model, tiny_point_model

from farm.cli import main
from farm.data.hit_sim import simulate_hits
from farm.formats.points_parquet import write_points_parquet
from farm.formats.reader import read_points
from farm.geometry import load_cell_geometry
from farm.samples import PointSample
from farm.serve import ServeOptions, start
from farm.serve.api import ARROW_STREAM

GEO = load_cell_geometry("ild-ecal-like")
ENERGIES = [1e4, 1.5e4, 2e4]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(ray_session, farm_home, tmp_path):
    from ray import serve

    register_model("tiny-points", tiny_point_model(), "points", tmp_path)
    options = ServeOptions(
        port=_free_port(), cpus_per_replica=0, batch_wait_ms=50, max_events=50, poll_seconds=60
    )
    url = start(["tiny-points@candidate"], options)
    try:
        yield url, tmp_path
    finally:
        serve.shutdown()


def _post(url, body, **kw):
    return requests.post(f"{url}/v1/models/tiny-points/generate", json=body, timeout=60, **kw)


def _one_line_error(response, status, text):
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and text in body["error"] and "\n" not in body["error"]


def test_serve_point_clouds(served):
    url, tmp_path = served
    (info,) = requests.get(f"{url}/v1/models", timeout=10).json()["models"]
    assert info["kind"] == "points" and info["geometry"] == "ild-ecal-like"
    assert info["units"]["x"] == "mm" and info["units"]["e"] == "MeV"

    # seeded JSON and Arrow IPC are `farm generate --seed` on a points file of these energies
    rng = np.random.default_rng(0)
    h = simulate_hits(GEO, np.asarray(ENERGIES), rng)
    conditions = str(tmp_path / "cond.parquet")
    write_points_parquet(
        conditions, PointSample(h.counts, h.hits, h.layer, np.array(ENERGIES), GEO)
    )
    out = str(tmp_path / "gen.parquet")
    argv = ["generate", "tiny-points@candidate", "--conditions", conditions, "--out", out]
    assert main([*argv, "--seed", "7"]) == 0
    want = read_points(out)

    r = _post(url, {"energies": ENERGIES, "seed": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "points" and body["seed"] == 7 and body["energies"] == ENERGIES
    assert [e["n_hits"] for e in body["events"]] == want.counts.tolist()
    hits = np.concatenate([np.stack([e[k] for k in "xyz"] + [e["e"]], 1) for e in body["events"]])
    np.testing.assert_array_equal(hits.astype(np.float32), want.hits)
    layer = np.concatenate([e["layer"] for e in body["events"]])
    np.testing.assert_array_equal(layer, want.layer)
    assert (want.hits[:, 3] > 0).all() and GEO.contains(
        want.hits[:, 0], want.hits[:, 1], layer
    ).all()

    r = _post(url, {"energies": ENERGIES, "seed": 7}, headers={"Accept": ARROW_STREAM})
    assert r.status_code == 200 and r.headers["content-type"] == ARROW_STREAM
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.column("n_hits").to_pylist() == want.counts.tolist()
    np.testing.assert_array_equal(table.column("e").combine_chunks().flatten(), want.hits[:, 3])
    meta = json.loads(table.schema.metadata[b"farm"])
    assert meta["geometry"] == "ild-ecal-like" and json.loads(meta["served"])["seed"] == 7

    # one energy for several events; unseeded requests are served too
    r = _post(url, {"energies": [1.2e4], "events": 4})
    assert r.status_code == 200 and len(r.json()["events"]) == 4

    # conditions of another kind and energies outside the trained range: one-line 4xx
    _one_line_error(
        _post(url, {"jets": [{"pt": 300.0, "eta": 0.0, "n": 3}]}),
        400,
        "generates points: give 'energies', not 'jets'",
    )
    lo, hi = POINT_ENERGIES
    _one_line_error(_post(url, {"energies": [5e5]}), 400, f"trained on {lo:.4g}-{hi:.4g} MeV")
