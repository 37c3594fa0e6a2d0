"""Small dense fits that give the same bits run to run (least squares, correlation).

torch.linalg.lstsq and matmul on CPU call MKL, whose kernels may take different code paths in
two processes (buffer alignment), so the same data fitted to different last bits and seeded
trainings diverged. Here every sum over events is one of torch's own reductions, in a fixed
order, and only the tiny p x p normal equations go to LAPACK (numpy, minimum norm if singular).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_CHUNK_ELEMENTS = 1 << 22


def polynomial(b: Tensor, coef: Tensor) -> Tensor:
    """The product basis @ coef for b [N, p] and coef [p] or [p, K], summed term by term."""
    cols = b if coef.dim() == 1 else b.unsqueeze(-1)
    out = cols[:, 0] * coef[0]
    for j in range(1, b.shape[1]):
        out = out + cols[:, j] * coef[j]
    return out


def normal_equations(b: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    """(b^T b [p, p], b^T z [p] or [p, K]) for b [N, p] and z [N] or [N, K], in row chunks."""
    zz = z.reshape(z.shape[0], -1)
    rows = max(1, _CHUNK_ELEMENTS // max(zz.shape[1], b.shape[1] ** 2))
    gram = torch.zeros(b.shape[1], b.shape[1], dtype=b.dtype, device=b.device)
    moment = torch.zeros(b.shape[1], zz.shape[1], dtype=zz.dtype, device=zz.device)
    for s in range(0, b.shape[0], rows):
        bs, zs = b[s : s + rows], zz[s : s + rows]
        gram += (bs.unsqueeze(2) * bs.unsqueeze(1)).sum(0)
        moment += torch.stack([(bs[:, j : j + 1] * zs).sum(0) for j in range(b.shape[1])])
    return gram, moment.reshape(b.shape[1], *z.shape[1:])


def solve_normal(gram: Tensor, moment: Tensor) -> Tensor:
    """The least-squares coefficients from `normal_equations` (minimum norm if singular)."""
    m = moment.reshape(gram.shape[0], -1).cpu().numpy()
    sol = np.linalg.lstsq(gram.cpu().numpy(), m, rcond=None)[0]
    return torch.from_numpy(sol.reshape(moment.shape)).to(moment)


def least_squares(b: Tensor, z: Tensor) -> Tensor:
    """argmin_c |b c - z|^2 for b [N, p] and z [N] or [N, K]."""
    return solve_normal(*normal_equations(b, z))


def correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of two [N] samples (a scalar tensor)."""
    da, db = a - a.mean(), b - b.mean()
    return (da * db).sum() / torch.sqrt(da.pow(2).sum() * db.pow(2).sum()).clamp_min(1e-300)


__all__ = ["correlation", "least_squares", "normal_equations", "polynomial", "solve_normal"]
