"""Campaign throughput without Ray or MLflow: farm's shard path with plain writer threads.

Runs what a generation actor runs (farm.campaign.shards.ShardMaker: sample under a lock, encode
and write each shard in one of `--writers` writer slots, commit the manifest record last) from a
concurrent.futures thread pool of `--max-in-flight` threads, with at most that many shards in
flight, on a model folder (model.json + weights.safetensors, loaded with models.loading). It needs
torch, numpy, pyarrow, h5py, safetensors, fsspec, PyYAML and pydantic (models' configs), never
Ray or MLflow, so it runs on a GPU machine without them. With `--device cuda` it samples in bf16
autocast (resources.bf16), else float32 on the CPU.

Per case and repeat: the bare sampler (ShardMaker.sample on every shard, nothing written) and
the campaign (every shard sampled, written and committed), showers/s end to end; then a table of
medians and campaign/bare ratios. Run as a script it re-executes itself under farm.allocator's
malloc settings (those generation actors get), or under glibc's defaults with `--allocator
glibc`. Without `--model-dir` each case is a seeded, untrained MLP (preprocessing fitted on
simulated showers): throughput does not depend on the weights. Cases:
`student` (consistency process, 1 step: a 1-step consistency student) and `flow20` (flow
matching, midpoint, 20 network evaluations).

    python bench/gpu_campaign.py --device cuda --geometry ds1-photons ds2
    python bench/gpu_campaign.py --events 60000 --shard-size 15000 --writers 0 1 2 --threads 1
    python bench/gpu_campaign.py --model-dir CHECKPOINT --sampler euler --nfe 1
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: farm and models from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    import torch

    from farm.allocator import ALLOCATORS, reexec_with
    from farm.campaign import manifest
    from farm.campaign.shards import ShardMaker
    from farm.records import CampaignRecord, ModelVersionRef
    from farm.sharding import Plan
    from farm.specs import CampaignJob
    from models.checkpoint import read_card, save_model
    from models.config import parse_model_config
    from models.loading import build_model, load_model
except ImportError as exc:
    sys.exit(f"bench/gpu_campaign.py needs {exc.name} (pip install {exc.name}): {exc}")

CASES = {
    "student": ({"kind": "consistency"}, "consistency", 1),
    "flow20": ({"kind": "flow_matching"}, "midpoint", 20),
}


def make_checkpoint(folder: Path, geometry: str, case: str, width: int, depth: int) -> Path:
    """A seeded, untrained MLP of one case (preprocessing fitted on 2,000 simulated showers)."""
    from farm.data.shower_sim import energy_range
    from farm.data.showers import simulate_in_memory
    from farm.geometry import load_geometry

    geo = load_geometry(geometry)
    process, sampler, nfe = CASES[case]
    config = parse_model_config(
        {
            "network": {"kind": "mlp", "width": width, "depth": depth},
            "process": process,
            "preprocessing": {
                "kind": "shower",
                "layer_sizes": [layer.n_voxels for layer in geo.active_layers],
            },
            "sampler": {"name": sampler, "nfe": nfe},
        }
    )
    torch.manual_seed(0)
    model = build_model(config, geo.n_voxels, 1)
    showers, e_inc = simulate_in_memory(geo, 2000, seed=1)
    model.preprocessing.fit(
        torch.from_numpy(showers).float(), torch.from_numpy(e_inc).reshape(-1, 1).float()
    )
    card = {"data": {"geometry": geometry, "kind": "showers", "e_inc_range": energy_range(geo)}}
    out = folder / f"{geometry}-{case}"
    save_model(model, out, card=card)
    return out


def conditions(geometry: str) -> dict:
    """DS1: the 15 discrete CaloChallenge energies; otherwise log-uniform 1 GeV to 1 TeV."""
    if geometry.startswith("ds1"):
        from farm.data.shower_sim import DS1_ENERGIES

        return {"distribution": "discrete", "values": list(DS1_ENERGIES)}
    return {"distribution": "log-uniform", "min": 1e3, "max": 1e6}


def campaign_record(
    args: argparse.Namespace, model_dir: Path, output: Path, run: str, writers: int = 1
):
    """The CampaignRecord a submit would store, for a local model folder (no registry)."""
    card = read_card(model_dir)
    config = parse_model_config(card["config"])
    geometry = card.get("data", {}).get("geometry")
    if card.get("data", {}).get("kind", "showers") != "showers" or not geometry:
        sys.exit(f"{model_dir}/model.json: data.kind showers with data.geometry needed")
    job = CampaignJob.model_validate(
        {
            "name": "gpu-bench",
            "model": f"{model_dir.name}/local",
            "events": args.events,
            "shard_size": args.shard_size,
            "sampler": args.sampler or config.sampler.name,
            "nfe": args.nfe or config.sampler.nfe,
            "conditions": conditions(geometry),
            "formats": args.formats,
            "output": str(output),
            "seed": 1,
            "resources": {
                "actors": 1,
                "batch_size": args.batch_size,
                "writers": writers,
                "max_in_flight": args.max_in_flight or writers + 1,
                "bf16": not args.no_bf16,
            },
        }
    )
    process = config.process.build()
    process.check_sampler(job.sampler or process.default_sampler, job.nfe)
    ref = ModelVersionRef(
        ref=job.model, name=model_dir.name, version="local", source=str(model_dir)
    )
    return CampaignRecord(
        id=run,
        job=job,
        output=str(output / run),
        kind="showers",
        geometry=geometry,
        model=ref,
        plan=Plan(job.events, job.shard_size, job.seed),
        created=time.time(),
    )


def bare_rate(maker: ShardMaker, plan: Plan) -> float:
    """Showers/s of ShardMaker.sample alone over every shard (nothing encoded or written)."""
    sync()
    t0 = time.perf_counter()
    for shard in plan.shards():
        maker.sample(shard)
    sync()
    return plan.events / (time.perf_counter() - t0)


def campaign_rate(maker: ShardMaker, plan: Plan, in_flight: int) -> tuple[float, float, int]:
    """(showers/s, write/sample seconds, bytes/shower): every shard run, at most in_flight at once."""
    t0 = time.perf_counter()
    shards, pending, recs = list(plan.shards()), set(), []
    with cf.ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="shard") as pool:
        while shards or pending:
            while shards and len(pending) < in_flight:
                pending.add(pool.submit(maker.run, shards.pop(0)))
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            recs += [f.result() for f in done]
    seconds = time.perf_counter() - t0
    committed = manifest.committed_ids(maker.campaign.output_url)
    if committed != set(range(plan.n_shards)):
        raise SystemExit(f"committed shards {sorted(committed)} != 0..{plan.n_shards - 1}")
    write = sum(r.seconds_write for r in recs) / max(sum(r.seconds_sample for r in recs), 1e-9)
    return plan.events / seconds, write, sum(r.bytes for r in recs) // plan.events


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, help="a checkpoint folder (default: build the cases)")
    p.add_argument("--case", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--geometry", nargs="+", default=["ds1-photons"], help="for built cases")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--sampler", help="override the checkpoint's sampler")
    p.add_argument("--nfe", type=int, help="override the checkpoint's NFE")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-bf16", action="store_true", help="float32 on cuda too")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--events", type=int, default=60_000)
    p.add_argument("--shard-size", type=int, default=15_000)
    p.add_argument("--batch-size", type=int, default=15_000)
    p.add_argument(
        "--writers", type=int, nargs="+", default=[1], help="writer slots to compare (0: none)"
    )
    p.add_argument("--max-in-flight", type=int, help="shards in flight (default writers + 1)")
    p.add_argument("--formats", nargs="+", default=["parquet"], choices=["parquet", "h5"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--output", type=Path, help="shard output folder (default: temporary)")
    p.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="farm",
        help="malloc settings of this process: farm's (as generation actors get), or glibc's",
    )
    args = p.parse_args(argv)
    if argv is None:  # a script: bare sampler and campaign under the actors' malloc settings
        reexec_with(args.allocator)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="farm-gpu-bench-"))
    output = args.output or work / "out"
    if args.model_dir:
        dirs = [args.model_dir]
    else:
        dirs = [
            make_checkpoint(work, g, c, args.width, args.depth)
            for g in args.geometry
            for c in args.case
        ]
    print(
        f"device {args.device}, {args.events:,} showers in shards of {args.shard_size:,}, batch "
        f"{args.batch_size:,}, in flight {args.max_in_flight or 'writers + 1'}, torch threads "
        f"{args.threads}, formats {' '.join(args.formats)}, allocator {args.allocator}, host cores "
        f"{os.cpu_count()}",
        flush=True,
    )
    rows = []
    try:
        for model_dir in dirs:
            model = load_model(model_dir, device=args.device)
            record = campaign_record(args, model_dir, output, f"{model_dir.name}-warmup")
            maker = ShardMaker(record, model, args.device)
            maker.run(record.plan.shard(0))  # warm-up: kernels, allocator, writer imports
            shutil.rmtree(output / record.id, ignore_errors=True)
            # interleaved per repeat (bare, then each writer count): ratios within a repeat
            bare: list[float] = []
            full: dict[int, list[tuple[float, float, int]]] = {w: [] for w in args.writers}
            for r in range(args.repeats):
                bare.append(bare_rate(maker, record.plan))
                for w in args.writers:
                    run = f"{model_dir.name}-{w}w-{r + 1}"
                    record = campaign_record(args, model_dir, output, run, w)
                    maker = ShardMaker(record, model, args.device)
                    maker.warm_up()  # as a generation actor does before its first shard
                    in_flight = record.job.resources.max_in_flight
                    full[w].append(campaign_rate(maker, record.plan, in_flight))
                    shutil.rmtree(output / record.id, ignore_errors=True)
                    print(
                        f"{model_dir.name} repeat {r + 1}: bare {bare[-1]:,.0f}/s, {w} writer(s) "
                        f"{full[w][-1][0]:,.0f}/s",
                        flush=True,
                    )
            med = statistics.median
            for w, runs in full.items():
                rows.append(
                    {
                        "model": model_dir.name,
                        "sampler": f"{record.sampler} NFE {record.nfe}",
                        "writers": w,
                        "bare": med(bare),
                        "campaign": med(x[0] for x in runs),
                        "ratio": med(x[0] / b for x, b in zip(runs, bare, strict=True)),
                        "write/sample": med(x[1] for x in runs),
                        "bytes": int(med(x[2] for x in runs)),
                    }
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n| model | sampler | writers | bare showers/s | campaign showers/s | campaign/bare "
        f"| write/sample | bytes/shower |   (medians of {args.repeats})"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['sampler']} | {row['writers']} | {row['bare']:,.0f} "
            f"| {row['campaign']:,.0f} "
            f"| {row['ratio']:.2f} | {row['write/sample']:.2f} | {row['bytes']:,} |"
        )
    return rows


if __name__ == "__main__":
    main()
