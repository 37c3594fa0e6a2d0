"""Processes: the exact field minimises each loss; SDE coefficients agree with their marginals."""

from __future__ import annotations

import pytest
import torch

from models.config import ModelConfig, SamplerConfig
from models.generative import GenerativeModel
from models.processes.consistency import ConsistencyModel
from models.processes.edm import EDM
from models.processes.flow_matching import RectifiedFlow
from models.processes.sde import VESDE, VPSDE, SubVPSDE

PROCESSES = [VESDE, VPSDE, SubVPSDE, EDM, RectifiedFlow]


@pytest.mark.parametrize("factory", PROCESSES, ids=lambda f: f.__name__)
def test_exact_field_minimises_loss(gaussian, factory):
    process = factory()
    x = gaussian.sample(8192, torch.Generator().manual_seed(0)).float()
    exact = gaussian.exact_net(process)

    def perturbed(scale, shift):
        return lambda x_, t, c=None: exact(x_, t, c) * scale + shift

    def mean_loss(net):
        return process.loss(net, x, None, torch.Generator().manual_seed(1)).mean().item()

    best = mean_loss(exact)
    loss = process.loss(exact, x, None, torch.Generator().manual_seed(1))
    assert loss.shape == (8192,) and torch.isfinite(loss).all()
    for scale, shift in [(1.1, 0.0), (0.9, 0.0), (1.0, 0.05), (1.0, -0.05)]:
        assert best < mean_loss(perturbed(scale, shift)), (scale, shift)


@pytest.mark.parametrize("factory", [VESDE, VPSDE, SubVPSDE], ids=lambda f: f.__name__)
def test_sde_coefficients_match_marginals(factory):
    """f = d log s / dt and g^2 = s^2 d sigma^2 / dt (Karras et al. 2022 eq. 4); t(sigma(t)) = t."""
    sde = factory()
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    s_p, sig_p = sde.marginal(t + h)
    s_m, sig_m = sde.marginal(t - h)
    s, sigma = sde.marginal(t)
    f_num = (s_p.log() - s_m.log()) / (2 * h)
    g2_num = s**2 * (sig_p**2 - sig_m**2) / (2 * h)
    assert torch.allclose(sde.f(t), f_num, rtol=1e-5, atol=1e-6)
    assert torch.allclose(sde.g2(t), g2_num, rtol=1e-5)
    assert torch.allclose(sde.sigma_to_t(sigma), t, rtol=1e-9)


def test_edm_preconditioning_identity():
    """Unit variance of the network input and of its training target (Karras et al. 2022)."""
    edm = EDM(sigma_data=0.5)
    sigma = torch.tensor([0.01, 0.5, 10.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm.precond(sigma)
    # unit variance of the network input and of the training target (Karras et al. 2022 App. B.6)
    assert torch.allclose(c_in**2 * (0.25 + sigma**2), torch.ones(3, dtype=torch.float64))
    target_var = (0.25 * (1 - c_skip) ** 2 + c_skip**2 * sigma**2) / c_out**2
    assert torch.allclose(target_var, torch.ones(3, dtype=torch.float64))
    assert torch.allclose(c_noise, sigma.log() / 4)


def test_consistency_boundary_condition():
    cm = ConsistencyModel()
    c_skip, c_out, _, _ = cm.precond(torch.tensor([cm.sigma_min], dtype=torch.float64))
    assert c_skip.item() == pytest.approx(1.0) and c_out.item() == pytest.approx(0.0)
    f = cm.consistency_fn(lambda x, t, c: torch.full_like(x, 123.0))
    x = torch.randn(4, 3)
    assert torch.allclose(f(x, cm.sigma_min), x)


@pytest.mark.parametrize(
    "kind", ["ve_sde", "vp_sde", "subvp_sde", "edm", "flow_matching", "consistency"]
)
def test_sampler_default_is_the_process_default(kind):
    config = ModelConfig.model_validate(
        {
            "process": {"kind": kind},
            "preprocessing": {"kind": "standard"},
            "network": {"kind": "mlp", "width": 8, "depth": 1},
        }
    )
    assert config.sampler.name is None
    model = GenerativeModel(config, 3, 1)
    assert model.default_sampler == model.process.default_sampler
    assert model.default_sampler in model.process.samplers
    out = model.generate(torch.ones(5, 1), nfe=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (5, 3) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="not available"):
        GenerativeModel(config.model_copy(update={"sampler": SamplerConfig(name="nope")}), 3, 1)
