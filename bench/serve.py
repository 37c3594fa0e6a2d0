"""Serving benchmark: `farm serve` over HTTP against the bare sampler, and ONNX Runtime against torch.

(a) The bare sampler: the registered model, loaded as a replica loads it, calls
    `farm.generation.SamplerSettings.generate` on 1 and 100 events (one torch thread, as a
    1-CPU replica runs).
(b) `farm serve` on a local Ray (one replica, 1 CPU): closed-loop clients at concurrency 1, 8 and
    32 post unseeded requests of 1 event (JSON) and 100 events (Arrow IPC); requests/s, p50 and
    p99 latency, events/s and its ratio to the bare sampler on the request's own size, and the
    mean number of requests the deployment merged into one sampler call.
(c) ONNX Runtime against eager torch (both one thread) for the exported 1-step consistency
    student (`farm export --format onnx`): events/s on batches of 1 and 1000.
The model is the quickstart's DS1-photon recipe (patch transformer, quantile-Gaussianised voxels,
rectified flow, midpoint --nfe) with preprocessing fitted on simulated showers and untrained
(perturbed) weights: speed does not depend on training. Medians over --repeats; nothing asserted.

    python bench/serve.py
    python bench/serve.py --nfe 8 --seconds 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time

ENERGY = 4096.0
"""Incident energy (MeV) of every benchmarked shower: the bare sampler's and the served ones."""


def build_models(args: argparse.Namespace, tmp: str) -> dict[str, object]:
    """The quickstart flow and a 1-step consistency student (same network), registered."""
    import torch

    from farm import registry
    from farm.data.showers import simulate_in_memory
    from farm.geometry import load_geometry
    from farm.quickstart import MODEL
    from farm.train.data import complete_model_config
    from models.checkpoint import save_model
    from models.config import ModelConfig
    from models.generative import GenerativeModel

    geometry = load_geometry("ds1-photons")
    showers, e_inc = simulate_in_memory(geometry, args.n_fit, seed=1)
    shapes = [(layer.n_alpha, layer.n_radial) for layer in geometry.active_layers]
    sizes = [layer.n_voxels for layer in geometry.active_layers]
    x, e = torch.from_numpy(showers).float(), torch.from_numpy(e_inc).float().reshape(-1)
    models = {}
    for name, process, sampler in (
        ("bench-serve-flow", {"kind": "flow_matching"}, {"name": "midpoint", "nfe": args.nfe}),
        ("bench-serve-student", {"kind": "consistency"}, {"name": "consistency", "nfe": 1}),
    ):
        doc = {**MODEL, "process": process, "sampler": sampler}
        doc["preprocessing"] = {**MODEL["preprocessing"], "layer_sizes": sizes}
        config = complete_model_config(ModelConfig.model_validate(doc), shapes)
        torch.manual_seed(0)
        model = GenerativeModel(config, x.shape[1], 1)
        model.preprocessing.fit(x, e, torch.Generator().manual_seed(2))
        with torch.no_grad():  # adaLN-Zero starts as the identity: move the weights off zero
            for p in model.net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        ckpt = os.path.join(tmp, name)
        card = {
            "data": {"geometry": "ds1-photons", "e_inc_range": [float(e.min()), float(e.max())]}
        }
        save_model(model.eval(), ckpt, card=card)
        run = registry.client().create_run(registry.experiment_id(name))
        registry.register(name, run.info.run_id, ckpt, aliases=["candidate"])
        models[name] = registry.load(f"{name}@candidate").model
    return models


def rate(fn, events: int, seconds: float, repeats: int) -> float:
    """Median events/s of fn() (events each) over repeats of about `seconds` each."""
    fn()  # warm-up
    rates = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            n += 1
        rates.append(n * events / (time.perf_counter() - t0))
    return statistics.median(rates)


def bare_sampler(model, events: int, args: argparse.Namespace) -> float:
    """Events/s of farm.generation's sampler call on `events` events (DS1 energies)."""
    import torch

    from farm.generation import SamplerSettings

    cond = torch.full((events, 1), ENERGY)  # the served requests' energy
    gen = torch.Generator().manual_seed(0)
    return rate(
        lambda: SamplerSettings().generate(model, cond, gen), events, args.seconds, args.repeats
    )


def load(url: str, events: int, concurrency: int, seconds: float) -> dict[str, float]:
    """Closed-loop clients for `seconds`: requests/s, p50/p99 latency (ms), events/s."""
    import numpy as np
    import requests

    from farm.serve.api import ARROW_STREAM

    headers = {"Accept": ARROW_STREAM} if events > 1 else {}
    body = {"energies": [ENERGY], "events": events}
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client() -> None:
        session = requests.Session()
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = session.post(
                f"{url}/v1/models/bench-serve-flow/generate", json=body, headers=headers
            )
            r.raise_for_status()
            with lock:
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000
    return {
        "rps": len(lat) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "eps": len(lat) * events / wall,
    }


def serve_table(models, args: argparse.Namespace) -> None:
    """(a) and (b): the bare sampler, then farm serve at each concurrency and request size."""
    import torch
    from ray import serve

    from farm.ray_utils import ensure_ray
    from farm.serve import ServeOptions, start

    torch.set_num_threads(1)
    flow = models["bench-serve-flow"]
    bare = {n: bare_sampler(flow, n, args) for n in (1, 100)}
    print(f"\n(a) bare sampler (midpoint, nfe {args.nfe}, 1 thread)")
    for n, r in bare.items():
        print(f"  {n:>4} events per call: {r:10.1f} events/s")
    ensure_ray(num_cpus=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = ServeOptions(port=port, max_batch_size=32, batch_wait_ms=args.wait_ms)
    url = start(["bench-serve-flow@candidate"], options)
    try:
        print(f"\n(b) farm serve, 1 replica (1 CPU), max batch 32, wait {args.wait_ms} ms")
        print(
            f"  {'events/req':>10} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'events/s':>10} {'vs bare':>7} {'merged':>6}"
        )
        for events in (1, 100):
            for concurrency in (1, 8, 32):
                before = len(_batches(url))
                rows = [load(url, events, concurrency, args.seconds) for _ in range(args.repeats)]
                sizes = _batches(url)[before:]
                row = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                merged = statistics.mean(sizes) if sizes else float("nan")
                print(
                    f"  {events:>10} {concurrency:>7} {row['rps']:8.1f} {row['p50']:8.1f} "
                    f"{row['p99']:8.1f} {row['eps']:10.1f} {row['eps'] / bare[events]:7.2f} "
                    f"{merged:6.1f}"
                )
    finally:
        serve.shutdown()


def _batches(url: str) -> list[int]:
    import requests

    return requests.get(f"{url}/v1/models", timeout=30).json()["models"][0]["batch_sizes"]


def onnx_table(models, args: argparse.Namespace, tmp: str) -> None:
    """(c): the exported 1-step student, ONNX Runtime vs eager torch (one thread each)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from farm.export import export_model
    from models.unrolled import UnrolledSampler

    torch.set_num_threads(1)
    out = os.path.join(tmp, "student-onnx")
    export_model("bench-serve-student@candidate", "onnx", out)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(
        os.path.join(out, "model.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    module = UnrolledSampler(models["bench-serve-student"])
    print("\n(c) exported 1-step consistency student, CPU, 1 thread")
    print(f"  {'batch':>6} {'torch ev/s':>11} {'onnxrt ev/s':>12} {'ratio':>6}")
    for n in (1, 1000):
        z = np.random.default_rng(0).standard_normal((n, module.noise_dim)).astype(np.float32)
        c = np.geomspace(256.0, 4.19e6, n).astype(np.float32).reshape(-1, 1)
        zt, ct = torch.from_numpy(z), torch.from_numpy(c)
        t = rate(lambda zt=zt, ct=ct: module(zt, ct), n, args.seconds, args.repeats)
        feed = {"noise": z, "conditions": c}
        o = rate(lambda feed=feed: session.run(None, feed), n, args.seconds, args.repeats)
        print(f"  {n:>6} {t:11.1f} {o:12.1f} {o / t:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nfe", type=int, default=8)
    parser.add_argument("--n-fit", type=int, default=3000, help="simulated showers to fit on")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wait-ms", type=float, default=5.0, help="batch wait")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        os.environ["FARM_HOME"] = os.path.join(tmp, "farm-home")
        models = build_models(args, tmp)
        serve_table(models, args)
        onnx_table(models, args, tmp)


if __name__ == "__main__":
    main()
