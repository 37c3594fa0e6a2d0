"""Campaign benchmark: events/s of the bare sampler against full campaigns (local disk and S3).

(a) the bare sampler: the registered model, loaded as an actor loads it, calls `generate` in a loop
    on the same shard and batch sizes as the campaign, one torch thread per actor's CPU, in a Ray
    actor started as generation actors are (Ray's worker niceness, their environment and
    farm.allocator's malloc settings; the baseline of every ratio) and in the driver (a row for
    comparison); both after a warm-up of two shards (generation actors warm up themselves: one
    batch of shard 0 before their first shard, farm.campaign.shards.ShardMaker.warm_up);
(b) full campaigns (`farm.campaign.run.submit` + `execute`) writing Parquet to local disk and to a
    moto S3 server on 127.0.0.1 (started here, stopped at the end), with 1 and 2 actors, and
    with 0, 1 or 2 writer slots per actor (`--writers`; 0: the sampler writes each shard itself),
    in the dense or sparse Parquet layout of shower shards (`--layouts`).
Campaign rates are the driver's rate (events / seconds from the driver's start, actor start-up
included, to "manifest.parquet and summary.json written") and the actors' busy rate (events /
seconds from the first shard's sampling start to the last shard's commit, from the shard records:
start-up and finalize excluded); campaign/bare uses the busy rate. It splits into two factors:
sampling/bare (how fast the sampler runs inside the campaign, from the shards' sampling seconds,
against the bare loop: below 1 when writers and Ray compete for its cores) times sampler busy (the
share of the busy interval the sampler spends sampling: below 1 when it waits on a writer slot or
on per-shard work outside sampling). Medians over --repeats. Tables only; nothing is asserted.

Question it answers: does the campaign machinery (conditions, sampling under the actor's lock,
Parquet encode, upload, manifest commit) keep each actor at the bare sampler's speed, and does a
second actor double the rate when the machine has the cores? With a deliberately fast model
(`--sampler euler --nfe 1`: one network evaluation per shower, the cost of a 1-step consistency
student) it shows whether writer slots keep the sampler from waiting on the writer
(`write/sample`: the shards' summed write seconds over their summed sample seconds).

    python bench/campaign.py                                   # trains a small DS1-photon model
    python bench/campaign.py --events 60000 --shard-size 10000 --nfe 10 --repeats 3
    FARM_HOME=... python bench/campaign.py --model jets-top-flow@candidate --jet-truth JETS.parquet
    FARM_HOME=./farm-home python bench/campaign.py --model ds1-photons-flow@candidate
    python bench/campaign.py --sampler euler --nfe 1 --actors 1 --writers 0 1 2 --no-s3
    python bench/campaign.py ... --allocator glibc      # actors and bare loop on glibc's defaults
    python bench/campaign.py ... --layouts dense sparse  # both Parquet layouts of shower shards
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

from farm.allocator import ALLOCATOR_VAR, ALLOCATORS, reexec_with
from farm.data.shower_sim import DS1_ENERGIES


def train_and_register(args: argparse.Namespace) -> str:
    """A small rectified-flow MLP on simulated showers, registered as bench-<geometry>@candidate."""
    import torch

    from farm import registry
    from farm.data.shower_sim import energy_range
    from farm.data.showers import simulate_in_memory
    from farm.geometry import load_geometry
    from models.checkpoint import save_model
    from models.config import ModelConfig, OptimConfig
    from models.training import TrainData, fit

    geometry = load_geometry(args.geometry)
    t0 = time.perf_counter()
    showers, e_inc = simulate_in_memory(geometry, args.n_train, seed=1)
    data = TrainData(torch.from_numpy(showers).float(), torch.from_numpy(e_inc).reshape(-1, 1))
    config = ModelConfig.model_validate(
        {
            "network": {"kind": "mlp", "width": args.width, "depth": args.depth},
            "process": {"kind": "flow_matching"},
            "preprocessing": {
                "kind": "shower",
                "layer_sizes": [layer.n_voxels for layer in geometry.active_layers],
            },
            "sampler": {"name": args.sampler, "nfe": args.nfe},
        }
    )
    model = fit(
        config,
        OptimConfig(epochs=args.epochs, batch_size=512, warmup_steps=10),
        data,
        data,
        lambda metrics, ckpt=None: None,
    )
    name = f"bench-{args.geometry}"
    with tempfile.TemporaryDirectory() as ckpt:
        card = {
            "data": {
                "geometry": args.geometry,
                "kind": "showers",
                "e_inc_range": list(energy_range(geometry)),
            }
        }
        save_model(model, ckpt, card=card)
        run = registry.client().create_run(registry.experiment_id(name))
        registry.register(name, run.info.run_id, ckpt, aliases=["candidate"])
    print(
        f"trained {name} ({geometry.n_voxels} voxels, {args.n_train} showers, "
        f"{args.epochs} epoch(s)) in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return f"{name}@candidate"


def conditions(geometry: str, jet_truth: str | None = None) -> dict:
    if jet_truth:
        return {"distribution": "jet-truth", "url": jet_truth}
    if geometry.startswith("ds1"):
        return {"distribution": "discrete", "values": list(DS1_ENERGIES)}
    return {"distribution": "log-uniform", "min": 1e3, "max": 1e6}


def campaign_doc(
    args: argparse.Namespace,
    model: str,
    output: str,
    actors: int,
    writers: int = 1,
    layout: str = "dense",
) -> dict:
    resources = {"actors": actors, "cpus_per_actor": 1, "batch_size": args.batch_size}
    return {
        "kind": "campaign",
        "name": f"bench-{actors}a-{writers}w-{layout}",
        "parquet_layout": layout,
        "model": model,
        "events": args.events,
        "shard_size": args.shard_size,
        "sampler": args.sampler,
        "nfe": args.nfe,
        "conditions": conditions(args.geometry, args.jet_truth),
        "formats": ["parquet"],
        "output": output,
        "seed": 1,
        "resources": {**resources, "writers": writers},
    }


class BareSampler:
    """The generation functions alone: the campaign's shards, batch size, sampler and NFE."""

    def __init__(self, args: argparse.Namespace, model_ref: str):
        import torch

        from farm import registry
        from farm.campaign.conditions import shard_energies, shard_jet_truth
        from farm.formats.reader import read_truth_jets
        from farm.generation import SamplerSettings
        from farm.geometry import load_geometry
        from farm.sharding import Plan
        from farm.specs import EnergyConditions

        torch.set_num_threads(1)
        self.args = args
        self.model = registry.load(model_ref, device="cpu").model
        self.settings = SamplerSettings(
            sampler=args.sampler, nfe=args.nfe, batch_size=args.batch_size
        )
        self.shards = list(Plan(args.events, args.shard_size, 1).shards())
        if args.jet_truth:
            truth = read_truth_jets(args.jet_truth)
            self.conds = [shard_jet_truth(truth, s) for s in self.shards]
        else:
            self.geometry = load_geometry(args.geometry)
            cond = EnergyConditions.model_validate(conditions(args.geometry))
            self.conds = [shard_energies(cond, s, None) for s in self.shards]
        self._generate(self.shards[0], self.conds[0], limit=64)  # warm-up

    def _generate(self, shard, cond, limit: int | None = None) -> None:
        """One shard as the actor generates it (through farm.generation, as the worker)."""
        import numpy as np
        import torch

        from farm.generation import jet_sample, shower_sample

        gen = torch.Generator().manual_seed(shard.seed)
        rows = np.arange(min(limit or len(cond), len(cond)))
        if self.args.jet_truth:
            jet_sample(self.model, cond.rows(rows), generator=gen, settings=self.settings)
        else:
            shower_sample(
                self.model, cond[rows], self.geometry, generator=gen, settings=self.settings
            )

    def rate(self, shards: int | None = None) -> float:
        """Events/s over the campaign's shards (the first `shards` of them: a warm-up)."""
        pairs = list(zip(self.shards, self.conds, strict=True))[:shards]
        t0 = time.perf_counter()
        for s, c in pairs:
            self._generate(s, c)
        return sum(s.n for s, _ in pairs) / (time.perf_counter() - t0)


def bare_actor(args: argparse.Namespace, model_ref: str):
    """BareSampler in a Ray actor started as generation actors are (nice, env, malloc settings).

    num_cpus 0: it holds no CPU while the campaigns run (it is idle then), so it never keeps a
    campaign's actors from being placed.
    """
    import ray

    from farm.campaign.pool import _actor_env

    options = {"num_cpus": 0, "runtime_env": {"env_vars": _actor_env()}}
    return ray.remote(BareSampler).options(**options).remote(args, model_ref)


def campaign_rate(args: argparse.Namespace, doc: dict) -> tuple[float, ...]:
    """(driver events/s, busy events/s, submit-to-start s, bytes per event, write/sample s,
    sampling events/s: events over the shards' summed sampling seconds, per actor)."""
    from farm import records
    from farm.campaign import manifest
    from farm.campaign.run import execute, submit
    from farm.specs import parse_job

    campaign = submit(parse_job(doc, "bench"))
    t_submit = time.time()
    summary = execute(campaign.id)
    status = records.read_status(campaign.id)
    assert summary.events == args.events
    write_share = summary.write_seconds / max(summary.sample_seconds, 1e-9)
    recs = manifest.read_records(campaign.output_url)
    first = min(r.committed_at - r.seconds_wait - r.seconds_sample - r.seconds_write for r in recs)
    busy = args.events / (max(r.committed_at for r in recs) - first)
    sampling_per_actor = args.events / sum(r.seconds_sample for r in recs)
    return (
        status.events_per_second,
        busy,
        status.started - t_submit,
        summary.bytes / args.events,
        write_share,
        sampling_per_actor,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3(timeout: float = 30) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 with a fresh bucket; sets the AWS variables; yields s3://."""
    import boto3

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.time() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            FARM_S3_ENDPOINT_URL=endpoint,
        )
        bucket = f"farm-bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        yield f"s3://{bucket}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="NAME@ALIAS or NAME/VERSION in FARM_HOME (default: train one)")
    p.add_argument("--geometry", default="ds1-photons", help="for the trained model")
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--sampler", default="midpoint")
    p.add_argument("--nfe", type=int, default=10)
    p.add_argument("--events", type=int, default=60_000)
    p.add_argument("--shard-size", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=5_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    p.add_argument(
        "--writers", type=int, nargs="+", default=[1], help="writer slots per actor to compare"
    )
    p.add_argument(
        "--layouts",
        nargs="+",
        default=["dense"],
        choices=["dense", "sparse"],
        help="Parquet layouts of the shower shards to compare (parquet_layout)",
    )
    p.add_argument("--no-s3", action="store_true", help="local disk only")
    p.add_argument(
        "--jet-truth",
        help="a jets file: benchmark a jet model (--model) conditioned on its rows (jet-truth)",
    )
    p.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="farm",
        help="malloc settings of the actors and the bare sampler (farm.allocator): farm or glibc",
    )
    args = p.parse_args(argv)
    if argv is None:  # a script: the bare loop runs under the actors' malloc settings
        reexec_with(args.allocator)
    os.environ[ALLOCATOR_VAR] = args.allocator
    if args.jet_truth and args.model is None:
        p.error("--jet-truth needs --model (a registered jet model)")

    from farm.ray_utils import ensure_ray

    home = None
    if args.model is None:
        home = tempfile.mkdtemp(prefix="farm-bench-")
        os.environ["FARM_HOME"] = home
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        model = train_and_register(args)
    else:
        model = args.model
    local = tempfile.mkdtemp(prefix="farm-bench-out-")
    ensure_ray()
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 0))
    print(
        f"model {model}, {args.events:,} events in shards of {args.shard_size:,}, batch "
        f"{args.batch_size:,}, {args.sampler} NFE {args.nfe}, Ray CPUs {cpus}, allocator "
        f"{args.allocator}, host cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    # Interleaved (bare, then every campaign) per repeat: on a shared machine the load drifts, so
    # ratios are taken within a repeat and their median reported.
    bare_sampler = BareSampler(args, model)
    in_actor = bare_actor(args, model)
    bare_sampler.rate(2)  # warm-up: the first shards page the sampler's heap in
    ray.get(in_actor.rate.remote(2))
    driver_bare: list[float] = []
    bare: list[float] = []  # in an actor: the baseline of every ratio
    runs: dict[tuple[str, int, int, str], list[tuple[float, ...]]] = {}
    with contextlib.ExitStack() as stack:
        targets = [("local", local)]
        if not args.no_s3:
            targets.append(("moto-S3", f"{stack.enter_context(moto_s3())}/campaigns"))
        for r in range(args.repeats):
            driver_bare.append(bare_sampler.rate())
            bare.append(ray.get(in_actor.rate.remote()))
            print(
                f"repeat {r + 1}: bare sampler {bare[-1]:,.0f} events/s in an actor, "
                f"{driver_bare[-1]:,.0f} in the driver",
                flush=True,
            )
            grid = itertools.product(targets, args.actors, args.writers, args.layouts)
            for (target, output), actors, writers, layout in grid:
                doc = campaign_doc(args, model, output, actors, writers, layout)
                result = campaign_rate(args, doc)
                runs.setdefault((target, actors, writers, layout), []).append(result)
                print(
                    f"  {target} {actors} actor(s), {writers} writer(s), {layout}: "
                    f"{result[0]:,.0f} events/s, busy {result[1]:,.0f} "
                    f"(load average {os.getloadavg()[0]:.1f})",
                    flush=True,
                )

    med = statistics.median
    print()
    print(
        f"| output | layout | actors | writers | driver events/s | busy events/s | busy per actor "
        f"| campaign/bare per actor | vs 1 actor | submit to start s | bytes/event "
        f"| write/sample | sampling/bare | sampler busy |   (medians of {args.repeats})"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| bare sampler, actor | - | (1 thread) | - | - | {med(bare):,.0f} | {med(bare):,.0f} | 1.00 "
        "| - | - | - | - | 1.00 | 1.00 |"
    )
    driver = med(d / b for d, b in zip(driver_bare, bare, strict=True))
    print(
        f"| bare sampler, driver | - | (1 thread) | - | - | {med(driver_bare):,.0f} "
        f"| {med(driver_bare):,.0f} | {driver:.2f} | - | - | - | - | {driver:.2f} | 1.00 |"
    )
    for (target, actors, writers, layout), rs in runs.items():
        rates = [x[1] for x in rs]
        per_actor = med(x / actors / b for x, b in zip(rates, bare, strict=True))
        one = runs.get((target, 1, writers, layout))
        scale = (
            f"{med(x / o[1] for x, o in zip(rates, one, strict=True)):.2f}x"
            if one and actors != 1
            else "-"
        )
        print(
            f"| {target} | {layout} | {actors} | {writers} | {med(x[0] for x in rs):,.0f} | "
            f"{med(rates):,.0f} | {med(rates) / actors:,.0f} | {per_actor:.2f} | {scale} | "
            f"{med(x[2] for x in rs):.1f} | {med(x[3] for x in rs):,.0f} | "
            f"{med(x[4] for x in rs):.2f} | "
            f"{med(x[5] / b for x, b in zip(rs, bare, strict=True)):.2f} | "
            f"{med(x[1] / actors / x[5] for x in rs):.2f} |"
        )
    ray.shutdown()
    if home:
        print(f"\n(store {home} and outputs {local} are temporary; remove them when done)")


if __name__ == "__main__":
    main()
