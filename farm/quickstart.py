"""`farm quickstart`: the whole path on one machine with embedded defaults.

reference showers (DS1 photons) -> Ray Train (2 workers) -> MLflow registry -> campaign (2 actors,
Parquet + CaloChallenge HDF5) -> evaluation against the held-out reference -> summary.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from farm import registry, store
from farm.data.shower_sim import DS1_ENERGIES
from farm.specs import CampaignJob, TrainJob, parse_job

MODEL_NAME = "quickstart-ds1-photons"

MODEL = {
    "network": {
        "kind": "voxel_transformer",
        "patch": [5, 4],
        "width": 64,
        "depth": 2,
        "heads": 4,
        "embed_dim": 64,
    },
    "process": {"kind": "flow_matching"},
    "preprocessing": {"kind": "shower", "threshold_mev": 1.0, "voxel_quantiles": 64},
}
"""The best small recipe of the fidelity ladder (docs/fidelity.md): rectified flow with a patch
transformer (5 x 4 voxels per token) on quantile-Gaussianised DS1-photon voxels."""

GATES = {"auc_low": {"max": 0.85}, "sep_mean": {"max": 0.05}, "sep_max": {"max": 0.15}}
"""Promotion gates of the quickstart model: the low-level classifier and the separation powers."""


@dataclass(frozen=True)
class QuickstartSizes:
    """Sizes of each stage; CI uses smaller ones through the same code path."""

    reference_events: int = 100_000
    epochs: int = 10
    campaign_events: int = 50_000
    shard_size: int = 5_000
    nfe: int = 20
    evaluate_events: int = 20_000
    """At most this many events of each sample: the held-out reference splits into halves A and
    B, so 20,000 compares 10,000 generated with 10,000 reference showers (the field's size)."""

    @classmethod
    def for_environment(cls) -> QuickstartSizes:
        """The default sizes, or smaller ones when CI is set (1, true or yes)."""
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            return cls(reference_events=24_000, epochs=10, evaluate_events=4_800)
        return cls()


@dataclass
class Stage:
    """One stage of the quickstart: its name, wall time in seconds and what it produced."""

    name: str
    seconds: float
    detail: str = ""


@dataclass
class QuickstartResult:
    """What the quickstart produced: stage timings, reference, model, campaign and evaluation."""

    stages: list[Stage] = field(default_factory=list)
    reference_url: str = ""
    model: str = ""
    version: str = ""
    campaign: Any = None  # farm.records.CampaignRecord
    summary: Any = None  # farm.records.CampaignSummary
    evaluation: Any = None
    evaluation_url: str = ""


def train_job(reference_url: str, sizes: QuickstartSizes) -> TrainJob:
    """The quickstart's training job: rectified flow + patch transformer on DS1-photon voxels."""
    return parse_job(
        {
            "kind": "train",
            "name": MODEL_NAME,
            "description": "farm quickstart: rectified-flow patch transformer on DS1 photons",
            "data": {
                "source": "calochallenge",
                "url": reference_url,
                "geometry": "ds1-photons",
                "split": {"train": 0.7, "val": 0.1, "seed": 0},
            },
            "model": {**MODEL, "sampler": {"name": "midpoint", "nfe": sizes.nfe}},
            "optim": {
                "epochs": sizes.epochs,
                "batch_size": 256,
                "lr": 1e-3,
                "warmup_steps": 100,
                "ema_decay": 0.999,
                "seed": 0,
            },
            "resources": {"workers": 2, "use_gpu": "auto"},
            "aliases": ["candidate"],
            "gates": GATES,
        },
        "quickstart",
        kind="train",
    )


def campaign_job(sizes: QuickstartSizes) -> CampaignJob:
    """The quickstart's campaign: @candidate on DS1 energies, Parquet + HDF5, over 2 actors."""
    return parse_job(
        {
            "kind": "campaign",
            "name": "quickstart",
            "model": f"{MODEL_NAME}@candidate",
            "events": sizes.campaign_events,
            "shard_size": sizes.shard_size,
            "sampler": "midpoint",
            "nfe": sizes.nfe,
            "conditions": {"distribution": "discrete", "values": list(DS1_ENERGIES)},
            "formats": ["parquet", "h5"],
            "seed": 7,
            "resources": {"actors": 2, "cpus_per_actor": 1, "batch_size": 2500},
        },
        "quickstart",
        kind="campaign",
    )


def compared_sizes(details: dict[str, Any]) -> str:
    """What an evaluation compared, in the words of its report."""
    n = details["n_compared"]
    return (
        f"{n:,} generated vs {n:,} reference showers "
        f"(drawn from {details['n_generated']:,} generated and {details['n_reference']:,} held-out)"
    )


def run_quickstart(
    sizes: QuickstartSizes,
    *,
    on_stage: Callable[[str], None] | None = None,
    training_progress=None,
    campaign_progress=None,
) -> QuickstartResult:
    """Run every stage for real; returns timings and where everything went."""
    from farm.campaign.run import execute, submit
    from farm.data.showers import simulate_in_memory
    from farm.data.splits import split_indices
    from farm.evaluation.gates import judge
    from farm.evaluation.options import EvaluationOptions
    from farm.evaluation.showers import evaluate_showers
    from farm.formats.calochallenge import read_calochallenge, write_calochallenge
    from farm.formats.reader import read_showers
    from farm.geometry import load_geometry
    from farm.ray_utils import ensure_ray
    from farm.train import run_training

    result = QuickstartResult()
    home = store.home()
    store.check_writable(home)
    geometry = load_geometry("ds1-photons")
    say = on_stage or (lambda _: None)

    def timed(name: str, fn: Callable[[], str]) -> None:
        say(name)
        t0 = time.perf_counter()
        detail = fn()
        result.stages.append(Stage(name, time.perf_counter() - t0, detail))

    result.reference_url = store.join(
        home, "datasets", f"quickstart-ds1-photons-{sizes.reference_events}.h5"
    )

    def make_reference() -> str:
        ensure_ray()
        if store.exists(result.reference_url):
            return f"{sizes.reference_events:,} showers (reused {result.reference_url})"
        showers, e_inc = simulate_in_memory(
            geometry, sizes.reference_events, seed=2022, energies=DS1_ENERGIES
        )
        write_calochallenge(result.reference_url, showers, e_inc, geometry)
        return f"{sizes.reference_events:,} showers -> {result.reference_url}"

    def train() -> str:
        job = train_job(result.reference_url, sizes)
        with training_progress() if training_progress else contextlib.nullcontext() as on_start:
            trained = run_training(job, new=True, on_start=on_start)
        result.model, result.version = trained.name, str(trained.version)
        return (
            f"{sizes.epochs} epochs on 2 Ray Train workers, val_loss "
            f"{trained.metrics.get('val_loss', float('nan')):.4f} -> {trained.name}/{trained.version}"
        )

    def campaign() -> str:
        result.campaign = submit(campaign_job(sizes))
        progress = (
            campaign_progress(sizes.campaign_events)
            if campaign_progress
            else contextlib.nullcontext()
        )
        with progress as on_progress:
            result.summary = execute(result.campaign.id, on_progress=on_progress)
        return (
            f"{result.summary.events:,} showers, {result.summary.shards} shards, "
            f"2 actors, Parquet + HDF5 ({result.summary.bytes / 1e6:.0f} MB)"
        )

    def evaluate() -> str:
        job = train_job(result.reference_url, sizes)
        showers, e_inc = read_calochallenge(result.reference_url, geometry)
        test = split_indices(
            len(e_inc), job.data.split.train, job.data.split.val, job.data.split.seed
        )["test"]
        generated = read_showers(result.campaign.id, geometry)
        result.evaluation_url = store.join(home, "evaluations", result.campaign.id)
        model = f"{result.model}/{result.version}"
        labels = {
            "model": model,
            "campaign": result.campaign.id,
            "reference": f"held-out test split of {result.reference_url}",
            "generated": f"campaign {result.campaign.id}",
        }
        options = EvaluationOptions(seed=0, max_events=sizes.evaluate_events, labels=labels)
        result.evaluation = evaluate_showers(
            (showers[test], e_inc[test]),
            generated,
            geometry,
            out_url=result.evaluation_url,
            options=options,
        )
        mv = registry.log_evaluation(model, result.evaluation.metrics, result.evaluation_url)
        judge(result.evaluation, registry.gates(mv))
        result.evaluation.write(result.evaluation_url)
        return f"{compared_sizes(result.evaluation.details)} -> {result.evaluation_url}"

    timed("reference data", make_reference)
    timed("train (Ray Train)", train)
    timed("campaign (Ray actors)", campaign)
    timed("evaluate", evaluate)
    return result
