"""Registration shared by `farm train` and `farm tune`: final checkpoint, validation, model version.

A registered version holds only what generation needs (weights.safetensors + model.json); its MLflow
run gets a validation sample's plots and metrics; its tags say what it generates, its job, its
promotion gates and any extra tags of the caller (teacher, search, trial).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import numpy as np
import torch

from farm import registry
from farm.evaluation.gates import dump_gates
from farm.generation import SamplerSettings, jet_sample, point_sample, shower_sample
from farm.samples import JetSample, PointSample, ShowerSample
from farm.specs import RegisteredJob
from farm.train.data import data_tags

TRAIN_STATE_FILES = ("train_state.safetensors", "train_state.json")


def final_checkpoint(checkpoint: Any) -> str:
    """A local copy of a Ray Train checkpoint without its resume state (what gets registered)."""
    local = tempfile.mkdtemp(prefix="farm-final-")
    with checkpoint.as_directory() as ckpt_dir:
        shutil.copytree(ckpt_dir, local, dirs_exist_ok=True)
    for name in TRAIN_STATE_FILES:
        path = os.path.join(local, name)
        if os.path.exists(path):
            os.remove(path)
    return local


def register_version(
    job: RegisteredJob,
    run_id: str,
    checkpoint_dir: str,
    dataset: ShowerSample | JetSample,
    *,
    run_name: str,
    aliases: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> Any:
    """Register a checkpoint folder as a new version of the job's model; returns the version."""
    all_tags = {
        "farm.job": job.name,
        "farm.run": run_name,
        **data_tags(dataset),
        **(tags or {}),
        "farm.gates": dump_gates(job.gates),
        **job.tags,
    }
    return registry.register(
        job.name,
        run_id,
        checkpoint_dir,
        aliases=job.aliases if aliases is None else aliases,
        tags=all_tags,
        description=job.description,
    )


def log_validation(
    client, run_id: str, ckpt_dir: str, val: ShowerSample | JetSample, n_events: int, seed: int
) -> None:
    """Generate for the first validation events' conditions; log plots and figures to the run."""
    if n_events <= 0 or val.kind == "events":  # events: `farm evaluate` (no training plots yet)
        return
    from models.loading import load_model

    model = load_model(ckpt_dir)
    reference = val.subset(np.arange(min(n_events, len(val))))
    generator = torch.Generator().manual_seed(seed)
    if reference.kind == "jets":
        _log_jets(client, run_id, model, reference, generator, seed)
    elif reference.kind == "points":
        _log_points(client, run_id, model, reference, generator, seed)
    else:
        _log_showers(client, run_id, model, reference, generator)


def _log_showers(client, run_id: str, model, reference: ShowerSample, generator) -> None:
    from farm.evaluation.plots import training_validation_figure

    generated = shower_sample(
        model, reference.e_inc, reference.geometry, generator=generator, settings=SamplerSettings()
    )
    history = {
        k: [m.value for m in sorted(client.get_metric_history(run_id, k), key=lambda m: m.step)]
        for k in ("train_loss", "val_loss")
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "validation.png")
        training_validation_figure(
            history,
            reference.showers,
            generated.showers,
            reference.e_inc,
            reference.geometry,
            path,
        )
        client.log_artifact(run_id, path)
    for name, sample in (("generated", generated), ("reference", reference)):
        ratio = sample.showers.sum(1) / sample.e_inc
        client.log_metric(run_id, f"val_mean_e_ratio_{name}", float(np.mean(ratio)))


def _log_jets(client, run_id: str, model, reference: JetSample, generator, seed: int) -> None:
    """JetNet metrics and plots of jets for the validation jets' (pT, eta, count)."""
    from farm.evaluation.evaluate import evaluate_jets
    from farm.kinematics import jet_kinematics

    generated = jet_sample(model, reference.truth(), generator=generator)
    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate_jets(
            reference.as_dict(), generated.as_dict(), out_url=tmp, seed=seed, classifier=False
        )
        client.log_artifacts(run_id, tmp, artifact_path="validation")
    for key in ("w1m", "w1p", "fpd", "sep/mass"):
        if key in result.metrics:
            client.log_metric(run_id, f"val_{key.replace('/', '_')}", result.metrics[key]["value"])
    for name, jets in (("generated", generated), ("reference", reference)):
        truth = jets.truth()
        mass = jet_kinematics(jets.constituents, None, truth.pt, truth.eta)["mass"]
        client.log_metric(run_id, f"val_median_mass_{name}", float(np.median(mass)))


def _log_points(client, run_id: str, model, reference: PointSample, generator, seed: int) -> None:
    """Point-cloud metrics and the projection's plots for the validation showers' E_inc.

    A quick look: no classifier, and FPD/KPD on few bootstrap batches (`farm evaluate` runs
    the full set).
    """
    from farm.evaluation.options import EvaluationOptions
    from farm.evaluation.points import evaluate_points

    generated = point_sample(model, reference.e_inc, reference.geometry, generator=generator)
    quick = {"fpd": {"num_batches": 2, "num_points": 3}, "kpd": {"num_batches": 2}}
    options = EvaluationOptions(seed=seed, classifier=False, metric_kwargs=quick)
    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate_points(reference, generated, out_url=tmp, options=options)
        client.log_artifacts(run_id, tmp, artifact_path="validation")
    for key in ("sep/n_hits", "sep/e_sum_ratio", "sep_mean"):
        if key in result.metrics:
            client.log_metric(run_id, f"val_{key.replace('/', '_')}", result.metrics[key]["value"])
    for name, sample in (("generated", generated), ("reference", reference)):
        ratio = sample.energy_sums() / sample.e_inc
        client.log_metric(run_id, f"val_mean_e_ratio_{name}", float(np.mean(ratio)))
