"""Point-cloud preprocessing with log features: exact round trip, positive outputs, masks."""

from __future__ import annotations

import pytest
import torch

from models.preprocessing import PointCloudPreprocessingConfig


def test_log_feature_round_trips_and_generated_values_are_positive():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(500, 4, 3, generator=g)
    pts[..., 2] = torch.exp(-5 * torch.rand(500, 4, generator=g))
    counts = torch.randint(1, 5, (500, 1), generator=g).float()
    pts[torch.arange(4).unsqueeze(0) >= counts] = 0.0
    x, cond = pts.reshape(500, -1), torch.cat([torch.rand(500, 1, generator=g), counts], 1)
    prep = PointCloudPreprocessingConfig(n_features=3, log_features=[2]).build(12, 2)
    prep.fit(x, cond)
    z, _ = prep.transform(x, cond)
    valid = (torch.arange(4).unsqueeze(0) < counts).repeat_interleave(3, 1)
    assert abs(float(z[valid].reshape(-1, 3)[:, 2].std()) - 1) < 1e-3
    assert torch.allclose(prep.inverse(z, cond), x, rtol=1e-5, atol=1e-6)
    noise = prep.inverse(torch.randn(500, 12, generator=g) * 3, cond).reshape(500, 4, 3)
    assert bool((noise[..., 2][valid[:, ::3]] > 0).all())
    assert bool((noise[~valid[:, ::3]] == 0).all())


def test_log_features_outside_the_points_are_refused():
    with pytest.raises(ValueError, match="log_features"):
        PointCloudPreprocessingConfig(n_features=3, log_features=[3])


def test_default_dump_has_no_log_features():
    assert "log_features" not in PointCloudPreprocessingConfig(n_features=3).model_dump()
