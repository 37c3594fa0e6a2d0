"""The unrolled sampler is generate's computation on given noise; samplers that draw noise refuse."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "farm"))
from tiny_showers import tiny_model

from models.noise import randn
from models.unrolled import UnrolledSampler


@pytest.mark.parametrize(
    ("kind", "sampler", "nfe"),
    [
        ("flow", None, None),
        ("flow", "heun", 4),
        ("flow", "dpmpp_2m", 3),
        ("student", None, None),
        ("edm", None, None),
        ("edm", "dpmpp_2m", 4),
        ("vp", None, None),
        ("vp", "heun", 5),
    ],
)
def test_unrolled_equals_generate_bit_for_bit(kind, sampler, nfe):
    model = tiny_model(kind)
    cond = torch.tensor([[300.0], [5000.0], [18000.0]])
    want = model.generate(
        cond, sampler=sampler, nfe=nfe, generator=torch.Generator().manual_seed(4)
    )
    module = UnrolledSampler(model, sampler, nfe)
    z = randn((3, module.noise_dim), torch.Generator().manual_seed(4))
    got = module(z, cond)
    assert torch.equal(got, want)
    assert got.shape == (3, 10) and bool((got >= 0).all()) and float(got.sum()) > 0


@pytest.mark.parametrize(
    ("kind", "sampler", "nfe", "message"),
    [
        ("flow", "rk45", 4, "sampler 'rk45' of process 'flow_matching' cannot be unrolled"),
        ("student", "consistency", 2, "consistency sampling with nfe=2 draws fresh noise"),
        ("edm", "stochastic_heun", 5, "sampler 'stochastic_heun' of process 'edm' cannot be"),
        ("vp", "pc", 4, "sampler 'pc' of process"),
    ],
)
def test_samplers_that_cannot_unroll_are_refused(kind, sampler, nfe, message):
    with pytest.raises(ValueError, match=message):
        UnrolledSampler(tiny_model(kind), sampler, nfe)
