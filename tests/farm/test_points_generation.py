"""A tiny point-cloud shower model trained on reference hits: counts and energy sums track E_inc."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from farm.data.hit_sim import simulate_hits
from farm.errors import FarmError
from farm.generation import point_sample, shower_sample
from farm.generation.points import cells_from_points
from farm.geometry import load_cell_geometry, load_geometry
from farm.samples import PointSample
from models.config import OptimConfig, parse_model_config
from models.data import TrainData
from models.training import fit

GEO = load_cell_geometry("ild-ecal-like")
TINY = {
    "kind": "point_showers",
    "hits": {
        "network": {
            "kind": "epic",
            "n_features": 4,
            "width": 48,
            "global_dim": 12,
            "depth": 3,
            "embed_dim": 24,
        },
        "process": {"kind": "flow_matching"},
        "preprocessing": {"kind": "pointcloud", "n_features": 4, "log_features": [3]},
        "sampler": {"nfe": 8},
    },
}


def _reference(n: int, seed: int, energies=(1e4, 3e4)) -> PointSample:
    rng = np.random.default_rng(seed)
    e = rng.choice(np.asarray(energies), size=n)
    h = simulate_hits(GEO, e, rng)
    return PointSample(h.counts, h.hits, h.layer, e, GEO)


def _data(sample: PointSample, n_max: int) -> TrainData:
    x, c = sample.model_inputs(n_max)
    return TrainData(torch.from_numpy(x), torch.from_numpy(c))


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    ref = _reference(400, 1)
    n_max = int(ref.counts.max())
    optim = OptimConfig(epochs=8, batch_size=32, lr=2e-3, warmup_steps=10, ema_decay=0.9)
    model = fit(
        parse_model_config(TINY),
        optim,
        _data(ref, n_max),
        _data(_reference(32, 2), n_max),
        lambda m, d: None,
    )
    return model, ref


def test_hit_counts_and_energy_sums_track_the_incident_energy(trained):
    model, ref = trained
    e = np.repeat([1e4, 3e4], 60)
    gen = point_sample(model, e, GEO, generator=torch.Generator().manual_seed(0))
    assert GEO.contains(gen.hits[:, 0], gen.hits[:, 1], gen.layer).all()
    assert (gen.hits[:, 3] > 0).all()
    ratios = {}
    for energy in (1e4, 3e4):
        g, r = gen.subset(gen.e_inc == energy), ref.subset(ref.e_inc == energy)
        # counts after merging hits that share a cell, against the reference's
        assert g.counts.mean() == pytest.approx(r.counts.mean(), rel=0.2), energy
        g_frac, r_frac = g.energy_sums() / energy, r.energy_sums() / energy
        ratios[energy] = g_frac.mean()
        # E_sum / E_inc: the reference's sampling fraction within 5%, its spread within 40%
        assert g_frac.mean() == pytest.approx(r_frac.mean(), rel=0.05), energy
        assert g_frac.std() == pytest.approx(r_frac.std(), rel=0.4), energy
    assert ratios[3e4] == pytest.approx(ratios[1e4], rel=0.05)  # linear response


def test_cells_keep_every_hit_inside_the_grid_and_conserve_energy():
    pts = np.zeros((2, 4, 4), np.float32)
    pts[0, :3] = [[1.0, 1.0, 0.2, 2.0], [4.0, 0.5, -0.3, 3.0], [-1.0, 1.0, 4.0, 1.0]]
    pts[1, :2] = [[400.0, 0.0, 3.0, 5.0], [0.0, 0.0, 99.0, -1.0]]
    s = cells_from_points(pts, np.array([1e4, 2e4]), GEO)
    # hits 0 and 1 fall in the cell around (2.5, 2.5) of layer 0: hit 0, nearer its centre,
    # keeps it and hit 1 takes the nearest free cell to its position, (2.5, -2.5); hit 2 is
    # its own; shower 1's hits are outside the grid or without energy
    assert s.counts.tolist() == [3, 0]
    assert s.hits[:, 3].sum() == pytest.approx(6.0)
    by_energy = {
        float(h[3]): (h[0], h[1], int(lay)) for h, lay in zip(s.hits, s.layer, strict=True)
    }
    assert by_energy == {2.0: (2.5, 2.5, 0), 3.0: (2.5, -2.5, 0), 1.0: (-2.5, 2.5, 4)}


def test_the_hit_count_of_dense_clouds_survives_cell_assignment():
    rng = np.random.default_rng(3)
    n, hits = 20, 300
    pts = np.zeros((n, hits, 4), np.float32)
    pts[..., :2] = rng.normal(0.0, 6.0, (n, hits, 2))  # a core a few 5 mm cells wide
    pts[..., 2] = rng.integers(0, 10, (n, hits))
    pts[..., 3] = rng.exponential(1.0, (n, hits)) + 1e-3
    s = cells_from_points(pts, np.full(n, 1e4), GEO)
    assert s.counts.tolist() == [hits] * n  # snapping alone would have merged some away
    assert s.energy_sums() == pytest.approx(pts[..., 3].sum(axis=1), rel=1e-5)
    layer_cells = (np.repeat(np.arange(n), s.counts) * 100 + s.layer) * 10**6
    keys = layer_cells + np.rint(s.hits[:, 0] * 10) * 1000 + np.rint(s.hits[:, 1] * 10)
    assert np.unique(keys).size == keys.size  # one hit per cell


def test_wrong_kind_of_model_or_geometry_is_one_line(trained):
    model, _ = trained
    g = torch.Generator().manual_seed(0)
    with pytest.raises(FarmError, match=r"point-cloud showers.*not voxels of geometry .ds2."):
        shower_sample(model, np.array([1e4]), load_geometry("ds2"), generator=g)
    with pytest.raises(FarmError, match="this model generates voxels"):
        point_sample(torch.nn.Linear(1, 1), np.array([1e4]), GEO, generator=g)
