"""`farm serve` on the shared Ray: a real Serve app over HTTP (batching, seeds, refusals, alias moves)."""

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest
import requests
import torch
from tiny_showers import register_tiny

from farm.generation import SamplerSettings, shower_sample
from farm.geometry import load_geometry
from farm.serve import ServeOptions, start
from farm.serve.api import ARROW_STREAM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def farm_generate(model, e_inc, seed):
    """What `farm generate --seed` computes for these energies (farm.generation.shower_sample)."""
    sample = shower_sample(
        model,
        np.asarray(e_inc),
        load_geometry("ds1-photons"),
        generator=torch.Generator().manual_seed(seed),
        settings=SamplerSettings(),
    )
    return sample.showers


@pytest.fixture
def served(ray_session, farm_home, tmp_path):
    from ray import serve

    model, _ = register_tiny("tiny-flow", "flow", tmp_path)
    options = ServeOptions(
        port=_free_port(),
        cpus_per_replica=0,
        max_batch_size=16,
        batch_wait_ms=300,
        max_events=500,
        poll_seconds=0.3,
    )
    url = start(["tiny-flow@candidate"], options)
    try:
        yield url, model, tmp_path
    finally:
        serve.shutdown()


def _post(url, body, **kw):
    return requests.post(f"{url}/v1/models/tiny-flow/generate", json=body, timeout=60, **kw)


def _one_line_error(response, status, text):
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and text in body["error"] and "\n" not in body["error"]


def test_serve(served):
    url, model, tmp_path = served
    assert requests.get(f"{url}/healthz", timeout=10).json() == {
        "status": "ok",
        "models": ["tiny-flow"],
    }
    listed = requests.get(f"{url}/v1/models", timeout=10).json()["models"]
    assert [(m["name"], m["version"], m["aliases"]) for m in listed] == [
        ("tiny-flow", "1", ["candidate"])
    ]
    openapi = requests.get(f"{url}/openapi.json", timeout=10)
    assert "/v1/models/{name}/generate" in openapi.json().get("paths", {}), openapi.text[:300]
    assert requests.get(f"{url}/docs", timeout=10).status_code == 200

    # a seeded request is farm generate's sample, bit for bit (JSON and Arrow IPC)
    e_inc = [300.0, 2500.0, 19000.0]
    body = _post(url, {"energies": e_inc, "seed": 7}).json()
    assert (body["model"], body["version"], body["seed"], body["units"]["events"]) == (
        "tiny-flow",
        "1",
        7,
        "MeV",
    )
    want = farm_generate(model, e_inc, 7)
    assert np.array_equal(np.asarray(body["events"], np.float32), want) and want.sum() > 0
    arrow = _post(
        url, {"energies": [4000.0], "events": 100, "seed": 3}, headers={"Accept": ARROW_STREAM}
    )
    assert arrow.headers["content-type"] == ARROW_STREAM
    table = pa.ipc.open_stream(arrow.content).read_all()
    showers = np.stack(table.column("showers").to_numpy(zero_copy_only=False))
    assert np.array_equal(showers, farm_generate(model, [4000.0] * 100, 3))
    assert json.loads(json.loads(table.schema.metadata[b"farm"])["served"])["version"] == "1"

    # concurrent unseeded requests share sampler calls (the batch sizes the deployment saw)
    with ThreadPoolExecutor(12) as pool:
        replies = list(
            pool.map(lambda e: _post(url, {"energies": [e], "events": 5}), range(1000, 13000, 1000))
        )
    assert all(r.status_code == 200 and len(r.json()["events"]) == 5 for r in replies)
    sizes = requests.get(f"{url}/v1/models", timeout=10).json()["models"][0]["batch_sizes"]
    assert sum(sizes) == 14 and max(sizes) > 1, sizes  # 2 seeded + 12 concurrent requests
    assert max(r.json()["merged_requests"] for r in replies) > 1

    # bad requests: one-line JSON 4xx each
    _one_line_error(
        requests.post(f"{url}/v1/models/nope/generate", json={"energies": [1e3]}, timeout=10),
        404,
        "model 'nope' is not served here",
    )
    _one_line_error(_post(url, {"energies": [1e3], "events": -4}), 422, "field 'events'")
    _one_line_error(_post(url, {"energies": [10.0, 1e3]}), 400, "trained on 200-2e+04 MeV")
    _one_line_error(_post(url, {"energies": [-5.0]}), 400, "energies must be positive")
    _one_line_error(_post(url, {"energies": [1e3], "events": 501}), 413, "exceeds the limit of 500")
    _one_line_error(
        _post(url, {"energies": [1e3, 2e3], "events": 3}), 400, "give one energy or one per event"
    )
    _one_line_error(
        _post(url, {"energies": [1e3], "sampler": "nope"}), 400, "sampler 'nope' is not available"
    )
    _one_line_error(_post(url, {"energies": [1e3], "colour": "red"}), 422, "field 'colour'")
    malformed = requests.post(
        f"{url}/v1/models/tiny-flow/generate",
        data=b'{"energies": [1000,',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    _one_line_error(malformed, 400, "malformed JSON body")
    form = requests.post(f"{url}/v1/models/tiny-flow/generate", data=b"energies=1", timeout=10)
    _one_line_error(form, 400, "the body must be a JSON object")

    # the alias moves to a new version: the deployment picks it up
    new_model, mv = register_tiny("tiny-flow", "flow", tmp_path, seed=1)
    assert str(mv.version) == "2"
    deadline = time.time() + 20
    while time.time() < deadline:
        body = _post(url, {"energies": e_inc, "seed": 7}).json()
        if body["version"] == "2":
            break
        time.sleep(0.3)
    assert body["version"] == "2" and body["served_by"] == "tiny-flow/2"
    assert np.array_equal(
        np.asarray(body["events"], np.float32), farm_generate(new_model, e_inc, 7)
    )


def test_serve_refuses_unknown_models_before_starting(farm_home, tmp_path, capsys):
    from farm.cli import main

    register_tiny("tiny-flow", "flow", tmp_path)
    assert main(["serve", "tiny-flow@nope", "--port", str(_free_port())]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "farm: error: model 'tiny-flow' has no alias 'nope' (aliases: candidate)"
