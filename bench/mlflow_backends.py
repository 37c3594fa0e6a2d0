"""MLflow over HTTP against SQLite: what farm pays per training epoch and per registration.

    python bench/mlflow_backends.py [--epochs 50] [--metrics 8] [--registrations 5]

Per epoch, farm train's rank 0 sends one log_batch of the epoch's metrics (farm.train.worker);
a registration logs the checkpoint folder and creates a model version with an alias
(farm.registry.register). Both are timed against a SQLite file (farm's default) and against a
real `mlflow server` on 127.0.0.1 (its own SQLite file, artifacts proxied to a local folder).
Prints a markdown table of medians in ms; never asserts.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow server` on a free loopback port; returns (process, URI) once /health answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/server.db"]
    cmd += ["--artifacts-destination", f"file://{folder}/server-artifacts"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=1):
                return proc, uri
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("mlflow server did not start")


def measure(uri: str, home: Path, ckpt: Path, epochs: int, n_metrics: int, n_reg: int) -> dict:
    """Median ms of one epoch's log_batch and of one registration on the backend at `uri`."""
    import numpy as np
    from mlflow.entities import Metric

    from farm import registry

    os.environ["FARM_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    c = registry.client()
    run_id = c.create_run(registry.experiment_id("bench")).info.run_id
    per_epoch = []
    for epoch in range(1, epochs + 1):
        now = int(time.time() * 1000)
        batch = [Metric(f"metric_{k}", float(k * epoch), now, epoch) for k in range(n_metrics)]
        t0 = time.perf_counter()
        c.log_batch(run_id, metrics=batch)
        per_epoch.append(time.perf_counter() - t0)
    per_registration = []
    for _ in range(n_reg):
        rid = c.create_run(registry.experiment_id("bench")).info.run_id
        t0 = time.perf_counter()
        registry.register("bench-model", rid, str(ckpt), aliases=["candidate"])
        per_registration.append(time.perf_counter() - t0)
    return {
        "epoch_ms": 1000 * float(np.median(per_epoch)),
        "register_ms": 1000 * float(np.median(per_registration)),
    }


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--metrics", type=int, default=8)
    ap.add_argument("--registrations", type=int, default=5)
    args = ap.parse_args()

    import torch

    from models.checkpoint import save_model
    from models.config import ModelConfig
    from models.generative import GenerativeModel

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        ckpt = folder / "ckpt"
        save_model(
            GenerativeModel(ModelConfig(), 368, 1), ckpt, card={"data": {"geometry": "ds1-photons"}}
        )
        size = sum(f.stat().st_size for f in ckpt.iterdir())
        proc, server = start_server(folder)
        try:
            rows = {
                "SQLite file": measure(
                    f"sqlite:///{folder}/local.db",
                    folder / "h1",
                    ckpt,
                    args.epochs,
                    args.metrics,
                    args.registrations,
                ),
                "HTTP server": measure(
                    server, folder / "h2", ckpt, args.epochs, args.metrics, args.registrations
                ),
            }
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
    print(
        f"# torch {torch.__version__}; {args.metrics} metrics per epoch (median of {args.epochs}); "
        f"registration of a {size / 1e6:.1f} MB checkpoint (median of {args.registrations})"
    )
    print("| backend | ms per epoch (log_batch) | ms per registration |\n| --- | ---: | ---: |")
    for name, r in rows.items():
        print(f"| {name} | {r['epoch_ms']:.1f} | {r['register_ms']:.0f} |")
    http, sqlite = rows["HTTP server"], rows["SQLite file"]
    print(
        f"HTTP / SQLite: {http['epoch_ms'] / sqlite['epoch_ms']:.2f}x per epoch, "
        f"{http['register_ms'] / sqlite['register_ms']:.2f}x per registration"
    )


if __name__ == "__main__":
    main()
