"""`farm serve MODEL...`: on-demand generation over HTTP (a Ray Serve application)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `farm serve` command and its options."""
    p = sub.add_parser(
        "serve",
        help="serve registered shower, point-cloud, jet and events models over HTTP (Ray Serve)",
        description="Serve registered shower, point-cloud shower, jet and events models over "
        "HTTP with Ray Serve: POST /v1/models/NAME/generate with {'energies': [MeV...], "
        "'events': N} (showers and point clouds), "
        "{'jets': [{'pt': GeV, 'eta': E, 'n': N}...]} (jets) or {'truth': [[{'pt', 'eta', "
        "'phi', 'pdg', 'charge'}...]...], 'truncate': false} (events), plus 'sampler', 'nfe' "
        "and 'seed', answers showers (MeV), hits (x, y, z mm, layer, e MeV), jets or reco "
        "events (GeV) as JSON, or Arrow IPC "
        "with Accept: application/vnd.apache.arrow.stream; GET /v1/models, GET /healthz; "
        "OpenAPI at /docs. "
        "Concurrent requests share sampler calls (Serve's dynamic batching); a seeded request "
        "is sampled on its own and equals `farm generate --seed` bit for bit. An alias that "
        "moves (`farm registry promote`) is picked up within --poll-seconds. Binds 127.0.0.1 "
        "unless --host says otherwise; Serve has no authentication of its own (docs/serving.md).",
    )
    p.add_argument("models", nargs="+", help="NAME@ALIAS, NAME/VERSION or NAME (latest)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--replicas", type=int, default=1, help="replicas per model (default 1)")
    p.add_argument(
        "--gpus-per-replica", type=float, default=0.0, help="GPUs per replica (default 0: CPU)"
    )
    p.add_argument(
        "--cpus-per-replica", type=float, default=1.0, help="CPUs per replica (default 1)"
    )
    p.add_argument(
        "--max-batch-size", type=int, default=16, help="requests per sampler call (default 16)"
    )
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=10.0,
        help="how long a batch waits to fill (default 10 ms)",
    )
    p.add_argument(
        "--max-events", type=int, default=100_000, help="events per request (default 100,000)"
    )
    p.add_argument(
        "--poll-seconds", type=float, default=5.0, help="alias polling period (default 5 s)"
    )
    p.add_argument("--ssl-keyfile", default=None, help="TLS key file: serve HTTPS (with cert)")
    p.add_argument("--ssl-certfile", default=None, help="TLS certificate file (with key)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start the app and serve until Ctrl-C or SIGTERM; Serve is shut down on the way out."""
    import time

    from ray import serve

    from farm.cli.progress import out
    from farm.serve import ServeOptions, start

    options = ServeOptions(
        host=args.host,
        port=args.port,
        replicas=args.replicas,
        gpus_per_replica=args.gpus_per_replica,
        cpus_per_replica=args.cpus_per_replica,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        max_events=args.max_events,
        poll_seconds=args.poll_seconds,
        ssl_keyfile=args.ssl_keyfile,
        ssl_certfile=args.ssl_certfile,
    )
    url = start(args.models, options)
    out.print(f"serving {', '.join(args.models)} at {url} (API docs: {url}/docs); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
