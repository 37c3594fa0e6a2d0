"""Probability-flow ODE likelihood of a Gaussian against the closed form."""

from __future__ import annotations

import pytest
import torch

from models.likelihood import log_likelihood, process_log_likelihood
from models.processes.edm import EDM
from models.processes.flow_matching import RectifiedFlow
from models.processes.sde import VESDE, VPSDE, SubVPSDE


@pytest.mark.parametrize(
    "factory", [RectifiedFlow, VPSDE, SubVPSDE, VESDE, EDM], ids=lambda f: f.__name__
)
def test_exact_divergence_matches_closed_form(gaussian, factory):
    process = factory()
    if factory in (VESDE, EDM):  # their N(0, sigma_max^2) priors ignore the data mean: centre it
        gaussian = type(gaussian)([0.0, 0.0], gaussian.cov.tolist())
    x = gaussian.sample(64, torch.Generator().manual_seed(0))
    logp = process_log_likelihood(
        process, gaussian.exact_net(process), x, divergence="exact", rtol=1e-6, atol=1e-6
    )
    expected = gaussian.log_prob(x)
    worst = (logp - expected).abs().max().item()
    assert worst < 0.01 * expected.abs().mean().item(), worst
    assert logp.mean().item() == pytest.approx(expected.mean().item(), rel=0.005)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_and_seeded(gaussian, probe):
    flow = RectifiedFlow()
    pf = flow.probability_flow(gaussian.velocity_net())
    x = gaussian.sample(512, torch.Generator().manual_seed(0))

    def run(seed):
        return log_likelihood(
            pf,
            x,
            divergence="hutchinson",
            probe=probe,
            n_probes=4,
            generator=torch.Generator().manual_seed(seed),
            rtol=1e-5,
            atol=1e-5,
        )

    a, b = run(3), run(3)
    assert torch.equal(a, b)
    assert not torch.equal(a, run(4))
    exact = log_likelihood(pf, x, divergence="exact", rtol=1e-5, atol=1e-5)
    diff = a - exact
    # unbiased: the mean difference is within 4 standard errors of zero
    assert diff.mean().abs().item() < 4 * diff.std().item() / len(diff) ** 0.5
    assert a.mean().item() == pytest.approx(gaussian.log_prob(x).mean().item(), rel=0.03)


def test_likelihood_ranks_in_and_out_of_distribution(gaussian):
    edm = EDM()
    net = gaussian.exact_net(edm)
    near = gaussian.mu.unsqueeze(0).float()
    far = (gaussian.mu + 4.0).unsqueeze(0).float()
    lp = process_log_likelihood(edm, net, torch.cat([near, far]))
    assert lp[0] > lp[1] + 5
