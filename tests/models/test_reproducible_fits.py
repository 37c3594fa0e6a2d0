"""Seeded fits give the same bits in two processes (models.linalg), and the fits are right."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from models.linalg import correlation, least_squares, normal_equations, polynomial

SCRIPT = Path(__file__).with_name("reproducible_fits.py")


def _hashes() -> str:
    return subprocess.run(
        [sys.executable, str(SCRIPT)], check=True, capture_output=True, text=True
    ).stdout


def test_seeded_training_is_bit_reproducible_across_processes():
    first, second = _hashes(), _hashes()
    assert [line.split()[0] for line in first.splitlines()] == ["points", "voxel", "two_stage"]
    assert first == second


def test_least_squares_recovers_a_polynomial_and_matches_lapack():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(5000, generator=g, dtype=torch.float64)
    b = torch.stack([u**k for k in range(4)], dim=1)
    coef = torch.tensor([[1.0, -2.0], [0.5, 0.0], [-0.25, 3.0], [0.125, 1.0]], dtype=torch.float64)
    z = polynomial(b, coef) + 0.01 * torch.randn(5000, 2, generator=g, dtype=torch.float64)
    fitted = least_squares(b, z)
    torch.testing.assert_close(fitted, torch.linalg.lstsq(b, z).solution, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(fitted, coef, rtol=0, atol=2e-3)
    torch.testing.assert_close(least_squares(b, z[:, 1]), fitted[:, 1])
    torch.testing.assert_close(polynomial(b, coef), b @ coef)


def test_normal_equations_chunking_and_a_singular_basis():
    g = torch.Generator().manual_seed(1)
    b = torch.randn(3000, 3, generator=g, dtype=torch.float64)
    z = torch.randn(3000, 1500, generator=g, dtype=torch.float64)  # several row chunks
    gram, moment = normal_equations(b, z)
    torch.testing.assert_close(gram, b.T @ b)
    torch.testing.assert_close(moment, b.T @ z)
    ones = torch.ones(100, 2, dtype=torch.float64)  # one energy, two coefficients: minimum norm
    torch.testing.assert_close(
        least_squares(ones, torch.full((100,), 4.0, dtype=torch.float64)),
        torch.tensor([2.0, 2.0], dtype=torch.float64),
    )


def test_correlation_of_correlated_gaussians():
    g = torch.Generator().manual_seed(2)
    a, n = torch.randn(2, 200_000, generator=g, dtype=torch.float64)
    rho = correlation(a, 0.6 * a + 0.8 * n)
    assert abs(float(rho) - 0.6) < 0.005
    torch.testing.assert_close(rho, torch.corrcoef(torch.stack([a, 0.6 * a + 0.8 * n]))[0, 1])
