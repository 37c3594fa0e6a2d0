"""Every sampler, given the exact field of a Gaussian, reproduces its mean and covariance."""

from __future__ import annotations

import math

import pytest
import torch

from models.processes.consistency import ConsistencyModel
from models.processes.edm import EDM
from models.processes.flow_matching import RectifiedFlow
from models.processes.sde import VESDE, VPSDE, SubVPSDE
from models.samplers.diffusion import get_sigmas_karras
from models.samplers.ode import rk45_solve

N = 20_000
# Nominal NFE: where each sampler's discretisation error in the covariance of this 2-D Gaussian
# is below ~5% (the sampling noise floor at N = 20k is ~1%). Karras grids (rho = 7,
# sigma_min = 0.002) spend most steps at tiny sigma, so these exceed the image-domain numbers.

CASES = [
    # (process factory, sampler, nfe)
    *[
        (VPSDE, s, n)
        for s, n in [
            ("euler_maruyama", 1000),
            ("pc", 1000),
            ("ode_euler", 500),
            ("ode_heun", 100),
            ("ode_rk45", 1),
            ("euler", 200),
            ("heun", 79),
            ("stochastic_heun", 199),
            ("restart", 79),
            ("dpmpp_2m", 40),
            ("rk45", 1),
        ]
    ],
    *[(SubVPSDE, s, n) for s, n in [("heun", 79), ("dpmpp_2m", 40)]],
    *[
        (VESDE, s, n)
        for s, n in [
            ("ode_heun", 200),
            ("heun", 79),
            ("dpmpp_2m", 40),
        ]
    ],
    *[
        (EDM, s, n)
        for s, n in [
            ("euler", 200),
            ("heun", 79),
            ("stochastic_heun", 199),
            ("restart", 79),
            ("dpmpp_2m", 40),
            ("rk45", 1),
        ]
    ],
    *[
        (RectifiedFlow, s, n)
        for s, n in [("euler", 100), ("midpoint", 20), ("heun", 20), ("dpmpp_2m", 20), ("rk45", 1)]
    ],
    (ConsistencyModel, "consistency", 1),
    (ConsistencyModel, "consistency", 2),
]


def _check_moments(x: torch.Tensor, gaussian, mean_tol: float = 0.04, cov_tol: float = 0.06):
    x = x.double()
    assert torch.isfinite(x).all()
    mean_err = (x.mean(0) - gaussian.mu).abs().max().item()
    cov_err = (torch.cov(x.T) - gaussian.cov).abs().max().item()
    assert mean_err < mean_tol, f"mean error {mean_err:.3f}"
    assert cov_err < cov_tol, f"covariance error {cov_err:.3f}"


@pytest.mark.parametrize(
    ("factory", "sampler", "nfe"), CASES, ids=[f"{f.__name__}-{s}-{n}" for f, s, n in CASES]
)
def test_sampler_reproduces_gaussian(gaussian, factory, sampler, nfe):
    process = factory()
    assert sampler in process.samplers
    gen = torch.Generator().manual_seed(1)
    x = process.sample(
        gaussian.exact_net(process), (N, 2), None, sampler=sampler, nfe=nfe, generator=gen
    )
    _check_moments(x, gaussian)


SLOW_CASES = [(f, s, 1000) for f in (SubVPSDE, VESDE) for s in ("euler_maruyama", "pc")]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("factory", "sampler", "nfe"),
    SLOW_CASES,
    ids=[f"{f.__name__}-{s}-{n}" for f, s, n in SLOW_CASES],
)
def test_sde_samplers_reproduce_gaussian_slow(gaussian, factory, sampler, nfe):
    """The 1000-step SDE samplers of sub-VP and VE (VP's run in the fast suite)."""
    test_sampler_reproduces_gaussian(gaussian, factory, sampler, nfe)


def test_same_seed_same_samples_bit_for_bit(gaussian):
    for process, sampler in [
        (VPSDE(), "pc"),
        (VPSDE(), "euler_maruyama"),
        (EDM(), "stochastic_heun"),
        (EDM(), "restart"),
        (RectifiedFlow(), "dpmpp_2m"),
        (ConsistencyModel(), "consistency"),
    ]:
        net = gaussian.exact_net(process)
        runs = [
            process.sample(
                net,
                (64, 2),
                None,
                sampler=sampler,
                nfe=12,
                generator=torch.Generator().manual_seed(seed),
            )
            for seed in (7, 7, 8)
        ]
        assert torch.equal(runs[0], runs[1]), sampler
        assert not torch.equal(runs[0], runs[2]), sampler


def test_unknown_sampler_and_bad_nfe_are_refused(gaussian):
    process = EDM()
    with pytest.raises(ValueError, match="not available"):
        process.sample(
            gaussian.exact_net(process), (4, 2), None, sampler="pc", nfe=10, generator=None
        )
    with pytest.raises(ValueError, match="nfe"):
        process.sample(
            gaussian.exact_net(process), (4, 2), None, sampler="heun", nfe=0, generator=None
        )


def test_second_order_beats_first_order_at_equal_nfe(gaussian):
    """At 8 NFE, DPM-Solver++(2M) is closer than Euler to the RK45 reference (same noise)."""
    flow = RectifiedFlow()
    net = gaussian.velocity_net()

    def run(sampler, nfe):
        return flow.sample(
            net,
            (2000, 2),
            None,
            sampler=sampler,
            nfe=nfe,
            generator=torch.Generator().manual_seed(3),
        )

    ref = run("rk45", 1)
    err_euler = (run("euler", 8) - ref).abs().mean()
    err_dpm = (run("dpmpp_2m", 8) - ref).abs().mean()
    assert err_dpm < 0.5 * err_euler


def test_karras_sigmas():
    s = get_sigmas_karras(18, 0.002, 80.0, 7.0)
    assert s.dtype == torch.float64 and len(s) == 19
    assert s[0].item() == pytest.approx(80.0) and s[-2].item() == pytest.approx(0.002)
    assert s[-1].item() == 0.0 and bool((s[:-1].diff() < 0).all())


def test_rk45_linear_ode():
    x0 = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    x1, nfe = rk45_solve(lambda x, t: -x * (1 + t), x0, 0.0, 1.0, rtol=1e-8, atol=1e-10)
    assert torch.allclose(x1, x0 * math.exp(-1.5), rtol=1e-7)
    assert nfe < 300
    back, _ = rk45_solve(lambda x, t: -x * (1 + t), x1, 1.0, 0.0, rtol=1e-8, atol=1e-10)
    assert torch.allclose(back, x0, rtol=1e-6)
