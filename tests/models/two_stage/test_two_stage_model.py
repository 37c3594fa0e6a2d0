"""The two-stage model: one checkpoint round trip bit for bit with every process on either stage,
exact generated showers, and the interface farm uses (config, net, sampler override)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from two_stage_toys import LAYER_SHAPES, THRESHOLD, tiny_config, toy_showers

from models.checkpoint import read_card, save_model
from models.config import ModelConfig, TwoStageConfig, parse_model_config, with_geometry
from models.loading import build_model, load_model
from models.two_stage.model import TwoStageModel

VP = {"kind": "vp_sde", "beta_max": 10.0}
PAIRS = {
    "flow-edm": (
        {"process": {"kind": "flow_matching"}, "sampler": {"name": "midpoint", "nfe": 4}},
        {"process": {"kind": "edm"}, "sampler": {"name": "heun", "nfe": 5}},
    ),
    "edm-vp": (
        {"process": {"kind": "edm"}, "sampler": {"name": "dpmpp_2m", "nfe": 4}},
        {"process": VP, "sampler": {"name": "pc", "nfe": 4, "options": {"snr": 0.16}}},
    ),
    "vp-flow": (
        {"process": VP, "sampler": {"name": "heun", "nfe": 3}},
        {"process": {"kind": "flow_matching"}, "sampler": {"name": "dpmpp_2m", "nfe": 4}},
    ),
}


def _model(config: TwoStageConfig, seed: int = 0) -> TwoStageModel:
    """An untrained model with fitted preprocessing (random networks stress the rebuild)."""
    torch.manual_seed(seed)
    model = TwoStageModel(config, 20, 1)
    energy, shape = model.stage_data(toy_showers(400, seed))
    model.energy.preprocessing.fit(energy.x, energy.cond, torch.Generator().manual_seed(1))
    model.shape.preprocessing.fit(shape.x, shape.cond, torch.Generator().manual_seed(2))
    return model.eval()


def _e_inc(n: int) -> torch.Tensor:
    return torch.logspace(3, 5, n).reshape(-1, 1)


@pytest.mark.parametrize("pair", list(PAIRS))
def test_one_checkpoint_round_trip(tmp_path, pair):
    energy, shape = PAIRS[pair]
    config = tiny_config(energy, shape)
    model = _model(config)
    save_model(model, tmp_path, card={"data": {"geometry": "toy"}})
    card = read_card(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "weights.safetensors"]
    assert card["dim"] == 20 and card["cond_dim"] == 1 and card["data"] == {"geometry": "toy"}
    for stage, doc in (("energy", energy), ("shape", shape)):
        assert card["config"][stage]["process"]["kind"] == doc["process"]["kind"]
        assert card["config"][stage]["sampler"]["name"] == doc["sampler"]["name"]
        assert card["config"][stage]["sampler"]["nfe"] == doc["sampler"]["nfe"]
    loaded = load_model(tmp_path)
    assert isinstance(loaded, TwoStageModel) and loaded.config == config
    state = model.state_dict()
    assert state.keys() == loaded.state_dict().keys()
    assert {k.split(".")[0] for k in state} == {"energy", "shape"}
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    a = model.generate(_e_inc(7), generator=torch.Generator().manual_seed(3))
    b = loaded.generate(_e_inc(7), generator=torch.Generator().manual_seed(3))
    assert a.shape == (7, 20) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b)


def test_generated_showers_are_exact_and_reproducible():
    model = _model(tiny_config({"process": {"kind": "edm"}}, {"process": {"kind": "edm"}}))
    e_inc = _e_inc(300)
    parts = model.generate_parts(e_inc, generator=torch.Generator().manual_seed(0), batch_size=128)
    assert parts.voxels.dtype == torch.float64 and parts.voxels.shape == (300, 20)
    per_layer = torch.stack(
        [v.sum(1) for v in parts.voxels.split([a * r for a, r in LAYER_SHAPES], dim=1)], dim=1
    )
    assert torch.equal(per_layer, parts.layer_energies)
    assert torch.equal(parts.layer_energies.sum(1), parts.e_tot)
    assert torch.equal(parts.voxels.sum(1), parts.e_tot)
    assert bool(((parts.voxels == 0) | (parts.voxels >= THRESHOLD)).all())
    assert bool((parts.e_tot > 0).any())
    again = model.generate(e_inc, generator=torch.Generator().manual_seed(0), batch_size=128)
    assert torch.equal(again, parts.voxels.float())


class _Counting(nn.Module):
    """Wraps a network and counts its calls (as torch.compile wraps it in a campaign actor)."""

    def __init__(self, net: nn.Module, value: float | None = None):
        super().__init__()
        self.inner, self.value, self.calls = net, value, 0

    def forward(self, x, t, cond=None):
        self.calls += 1
        out = self.inner(x, t, cond)
        return out if self.value is None else torch.full_like(out, self.value)


def test_the_interface_farm_uses():
    config = tiny_config(
        {"process": {"kind": "flow_matching"}, "sampler": {"name": "midpoint"}},
        {"process": {"kind": "edm"}, "sampler": {"name": "heun", "nfe": 5}},
    )
    model = _model(config)
    assert model.dim == 20 and model.cond_dim == 1
    assert model.config.process.kind == "edm" and model.config.sampler.nfe == 5
    assert model.config.network.kind == "voxel_transformer"
    assert model.default_sampler == "heun"
    model.config.process.build().check_sampler("stochastic_heun", 7)
    wrapper = _Counting(model.net)
    model.net = wrapper  # what `model.net = torch.compile(model.net)` does
    assert model.net is wrapper and model.shape.net is wrapper
    # a campaign's sampler applies to the shape stage (the flow energy stage has no
    # stochastic_heun), with options
    out = model.generate(
        _e_inc(5),
        sampler="stochastic_heun",
        nfe=5,
        options={"s_churn": 10.0},
        generator=torch.Generator().manual_seed(0),
    )
    assert out.shape == (5, 20) and wrapper.calls == 5
    with pytest.raises(ValueError, match="not available"):
        model.generate(_e_inc(2), sampler="pc", nfe=4)


def test_non_finite_generation_comes_back_as_nan():
    model = _model(tiny_config())
    model.net = _Counting(model.net, value=float("nan"))
    out = model.generate(_e_inc(4), generator=torch.Generator().manual_seed(0))
    assert bool(torch.isnan(out).all())


def test_stage_data_uses_thresholded_layer_sums():
    model = _model(tiny_config())
    data = toy_showers(50, 9)
    data.x[0, 0] = 0.5 * THRESHOLD  # below threshold: not part of the layer energy
    energy, shape = model.stage_data(data)
    sums = torch.stack([v.double().sum(1) for v in data.x.split([6, 12, 2], dim=1)], dim=1)
    sums[0, 0] -= data.x[0, 0].double()
    assert torch.allclose(energy.x, sums, rtol=0, atol=1e-9)
    assert torch.equal(shape.cond[:, 1:], energy.x) and torch.equal(shape.x, data.x)


def test_layer_hits_fix_the_number_of_hits_per_layer(monkeypatch):
    model = _model(tiny_config(preprocessing={"layer_hits": True}))
    data = toy_showers(50, 9)
    energy, shape = model.stage_data(data)
    assert energy.x.shape == (50, 6) and model.energy.dim == 6
    # the shape stage is conditioned on [E_inc, E_l ..., n_l ...]
    assert model.shape.cond_dim == 7 and torch.equal(shape.cond[:, 1:], energy.x)
    hits = torch.stack([(v >= THRESHOLD).sum(1) for v in data.x.split([6, 12, 2], dim=1)], 1)
    assert torch.equal(energy.x[:, 3:], hits.double())
    e_inc = torch.full((4, 1), 1e5)
    # energies of 3 layers, then the hits asked of each: 25 MeV allows two 10 MeV hits in layer 3
    asked = torch.tensor([[2.0, 5.0, 2.0], [6.0, 12.0, 1.0], [1.0, 1.0, 2.0], [3.0, 0.0, 9.0]])
    energies = torch.tensor([[3e4, 5e4, 25.0]]).double().expand(4, 3)
    monkeypatch.setattr(
        model.energy, "generate", lambda *a, **k: torch.cat([energies, asked.double()], 1)
    )
    parts = model.generate_parts(e_inc, generator=torch.Generator().manual_seed(0))
    hits = torch.stack(
        [(v > 0).sum(1) for v in parts.voxels.split([a * r for a, r in LAYER_SHAPES], dim=1)], 1
    )
    assert hits.tolist() == [[2, 5, 2], [6, 12, 1], [1, 1, 2], [3, 1, 2]]
    assert torch.equal(parts.voxels.sum(1), parts.e_tot)
    assert bool(((parts.voxels == 0) | (parts.voxels >= THRESHOLD)).all())


def test_model_kinds_parse_and_fill_geometry():
    single = parse_model_config({"network": {"kind": "mlp"}})
    assert isinstance(single, ModelConfig) and "kind" not in single.model_dump()
    assert isinstance(parse_model_config({"kind": "single_stage"}), ModelConfig)
    two = parse_model_config(
        {"kind": "two_stage", "shape": {"network": {"kind": "voxel_transformer"}}}
    )
    assert isinstance(two, TwoStageConfig)
    assert parse_model_config(two.model_dump(mode="json")) == two
    with pytest.raises(ValueError, match="layer_sizes"):
        build_model(two, 20, 1)
    filled = with_geometry(two, LAYER_SHAPES)
    assert filled.preprocessing.layer_sizes == [6, 12, 2]
    assert filled.shape.network.layer_shapes == LAYER_SHAPES
    assert two.preprocessing.layer_sizes is None  # a copy
    kept = with_geometry(filled, [(1, 20)])  # fields already set are kept
    assert kept == filled
    plain = with_geometry(
        parse_model_config({"network": {"kind": "voxel_transformer"}}), LAYER_SHAPES
    )
    assert plain.preprocessing.layer_sizes == [6, 12, 2]
    assert plain.network.layer_shapes == LAYER_SHAPES
    assert isinstance(build_model(filled, 20, 1), TwoStageModel)
