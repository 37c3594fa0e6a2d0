"""Physics of a trained jet model: generated top jets have the reference's mass peak (slow)."""

import numpy as np
import pytest
import torch

from farm import registry
from farm.data.sources import reference_sample
from farm.generation import SamplerSettings, sample_like
from farm.kinematics import jet_kinematics
from farm.specs import parse_job
from farm.train import run_training


@pytest.mark.slow
def test_generated_top_jets_peak_at_the_reference_mass(ray_session, farm_home):
    job = parse_job(
        {
            "name": "top-jets",
            "data": {"source": "simulated_jets", "process": "top", "events": 3000},
            "model": {
                "network": {"kind": "epic", "n_features": 3, "width": 96, "depth": 3},
                "preprocessing": {"kind": "pointcloud", "n_features": 3},
                "sampler": {"name": "midpoint", "nfe": 10},
            },
            "optim": {"epochs": 25, "batch_size": 128, "warmup_steps": 50},
            "resources": {"workers": 2, "use_gpu": False},
            "validation_events": 0,
        },
        "test",
        kind="train",
    )
    run_training(job)
    loaded = registry.load("top-jets@candidate")
    reference = reference_sample(loaded.card, loaded.key, "test", None, seed=0)
    generated = sample_like(
        loaded.model,
        reference,
        generator=torch.Generator().manual_seed(1),
        settings=SamplerSettings(),
    )

    def masses(sample):
        jets = sample.as_dict()
        pt, eta = jets["jet_features"][:, 0], jets["jet_features"][:, 1]
        return jet_kinematics(jets["constituents"], None, pt, eta)["mass"]

    m_ref, m_gen = masses(reference), masses(generated)
    # the 30 hardest constituents of fully merged tops: a peak near 145 GeV (see docs/models.md)
    assert 125.0 < np.median(m_ref) < 165.0
    assert abs(np.median(m_gen) / np.median(m_ref) - 1.0) < 0.08
    width = lambda m: np.subtract(*np.percentile(m, [84, 16]))  # noqa: E731
    assert 0.6 < width(m_gen) / width(m_ref) < 2.2  # small CPU model: broader than the reference
    # the full-jet mass of the reference is the top mass (plus underlying event)
    assert 160.0 < np.median(reference.jet_features[:, 2]) < 200.0
