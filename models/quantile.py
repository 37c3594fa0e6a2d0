"""Conditional quantile Gaussianisation: x = Phi^-1(F(z | E_inc)) per coordinate, invertible.

Each coordinate's empirical quantile function Q_k(u) is tabulated at `n_levels + 1` evenly
spaced levels u_j = j / n_levels (and, with `tail_levels` T, T more levels in each tail,
spaced evenly in Phi^-1(u) from Phi^-1(1 / n_levels) out to |x| = TAIL_X) at K knots l_k of
the condition l (standardised log E_inc): the knots are the distinct training energies when
there are at most K of them (CaloChallenge DS1), else K quantiles of l, each fitted on the
events nearest to it. Between knots the quantile
functions are averaged, Q(u | l) = (1 - w) Q_k(u) + w Q_k+1(u) (displacement interpolation),
and between levels Q is linear in u, so F = Q^-1 is exact up to the table's resolution.

Why: a voxel's log energy is a spike of empty voxels (dequantised a decade below the readout
threshold) far from a spread of hits, whose mode moves with E_inc and, when a shower has few
energy spots, sits one spot energy above the threshold with little in between. A flow or diffusion
model started from N(0, 1) smears mass into such gaps (spurious small hits; hits too soft). After
the Gaussianisation every coordinate is marginally N(0, 1) at every E_inc (the rank-Gaussian
transform of quantile normalisation, e.g. scikit-learn's QuantileTransformer; NFlows' and
CaloFlow's preprocessing serve the same purpose), and the generative model learns only the
dependences; the inverse maps any network output back into the training range.

Why tail levels: a voxel hit in a fraction p < 1 / n_levels of the showers has all its hits and
the top of its empty band inside the last level interval, where Q is linear in u from an empty
value to the largest hit. The round trip of the training data stays exact, but the pushforward
of N(0, 1) through the inverse does not: it puts hits wherever that line crosses the threshold,
so the voxel is hit in about 1 / n_levels of the generated showers however rare its hits are
(DS2's outer rings at the shower start: 1.1% against 0.13%; docs/fidelity.md). Levels spaced in
x resolve the tails down to p ~ 1 - Phi(TAIL_X), where the training sample has events there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

TABLE_ELEMENTS = 2**23
"""Elements of one interpolated table chunk [rows, coords, levels] in `transform` (about 64 MB)."""

U_EPS = 1e-6
"""Levels are clipped to [U_EPS, 1 - U_EPS] before Phi^-1 (|x| <= 4.75)."""

TAIL_X = 4.0
"""The outermost tail level sits at Phi(+-TAIL_X) (a tail probability of 3.2e-5)."""


def _std_normal_ppf(u: Tensor) -> Tensor:
    """Phi^-1(u), the standard normal quantile function."""
    return math.sqrt(2.0) * torch.erfinv(2.0 * u - 1.0)


def _std_normal_cdf(x: Tensor) -> Tensor:
    """Phi(x), the standard normal distribution function."""
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def quantile_levels(n_levels: int, tail_levels: int = 0) -> Tensor:
    """Sorted levels u in [0, 1]: j / n_levels, and `tail_levels` per tail spaced in Phi^-1(u)."""
    uniform = torch.linspace(0, 1, n_levels + 1, dtype=torch.float64)
    if not tail_levels:
        return uniform
    inner = -float(_std_normal_ppf(torch.tensor(1.0 / n_levels, dtype=torch.float64)))
    x = torch.linspace(inner, TAIL_X, tail_levels + 1, dtype=torch.float64)[1:]
    upper = _std_normal_cdf(x)
    return torch.sort(torch.cat([uniform, upper, 1.0 - upper])).values


def sorted_quantiles(z: Tensor, n_levels: int | Tensor) -> Tensor:
    """[C, L + 1] quantiles of z [N, C] at u_j = j / n_levels, or at the given levels [L + 1]."""
    s = torch.sort(z, dim=0).values
    levels = quantile_levels(n_levels) if isinstance(n_levels, int) else n_levels.double()
    pos = levels.to(z.device) * (len(s) - 1)
    lo = pos.floor().long()
    hi = torch.clamp(lo + 1, max=len(s) - 1)
    frac = (pos - lo).unsqueeze(1)
    return (s[lo] * (1 - frac) + s[hi] * frac).T.contiguous()


class ConditionalQuantiles(nn.Module):
    """x = Phi^-1(F(z | l)) for coordinates z [N, C] given the condition l [N] (float64 math)."""

    def __init__(self, n_coords: int, n_levels: int = 64, n_knots: int = 16, tail_levels: int = 0):
        """Tables of `n_levels + 1` quantiles (+ 2 `tail_levels`) per coordinate at `n_knots` l."""
        super().__init__()
        levels = quantile_levels(n_levels, tail_levels)
        self.uniform = not tail_levels
        self.n_levels, self.n_knots = len(levels) - 1, n_knots
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("knots", torch.arange(n_knots, dtype=torch.float64))
        self.register_buffer("table", torch.zeros(n_knots, n_coords, self.n_levels + 1))

    def _choose_knots(self, l: Tensor) -> Tensor:
        """The distinct values of l if at most K (padded above), else K quantiles of l."""
        distinct = torch.unique(l)
        if len(distinct) <= self.n_knots:
            pad = distinct[-1] + torch.arange(1, self.n_knots - len(distinct) + 1, dtype=l.dtype)
            return torch.cat([distinct, pad.to(l.device)])
        u = (torch.arange(self.n_knots, dtype=torch.float64, device=l.device) + 0.5) / self.n_knots
        return torch.quantile(l, u)

    def nearest_knot(self, l: Tensor) -> Tensor:
        """[N] index of the knot nearest to each l."""
        mid = 0.5 * (self.knots[1:] + self.knots[:-1])
        return torch.bucketize(l.double().reshape(-1).contiguous(), mid.to(l.device))

    @torch.no_grad()
    def fit(self, z: Tensor, l: Tensor) -> None:
        """Tabulate each knot's quantiles from the events nearest to it (z [N, C], l [N])."""
        l = l.double().reshape(-1)
        self.knots.copy_(self._choose_knots(l))
        nearest = self.nearest_knot(l)
        last = None
        for k in range(self.n_knots):
            rows = nearest == k
            if bool(rows.any()):
                last = sorted_quantiles(z[rows].double(), self.levels)
            if last is not None:
                self.table[k] = last.to(self.table.dtype)
        first = int(nearest.min())
        self.table[:first] = self.table[first]

    def _bracket(self, l: Tensor) -> tuple[Tensor, Tensor]:
        """(k, w): l lies between knots k and k + 1 with weight w on k + 1 (clamped to the range)."""
        l = l.double().reshape(-1).contiguous()
        knots = self.knots.to(l.device)
        # searchsorted (left) on the sorted knots, as a count so ONNX can express it
        k = ((knots.unsqueeze(0) < l.unsqueeze(1)).sum(1) - 1).clamp(0, self.n_knots - 2)
        w = ((l - knots[k]) / (knots[k + 1] - knots[k])).clamp(0.0, 1.0)
        return k, w

    def transform(self, z: Tensor, l: Tensor) -> Tensor:
        """Gaussianised coordinates x [N, C] (float64) of z [N, C] given l [N]."""
        k, w = self._bracket(l)
        out = torch.empty(z.shape, dtype=torch.float64, device=z.device)
        step = max(1, TABLE_ELEMENTS // max(z.shape[1] * (self.n_levels + 1), 1))
        for start in range(0, z.shape[0], step):
            rows = slice(start, start + step)
            wk = w[rows].view(-1, 1, 1)
            table = self.table.to(z.device).double()
            q = (1 - wk) * table[k[rows]] + wk * table[k[rows] + 1]  # [n, C, L + 1]
            zz = z[rows].double().unsqueeze(-1).contiguous()
            j = torch.searchsorted(q, zz).squeeze(-1).clamp(1, self.n_levels)
            lo = torch.gather(q, 2, (j - 1).unsqueeze(-1)).squeeze(-1)
            hi = torch.gather(q, 2, j.unsqueeze(-1)).squeeze(-1)
            frac = ((zz.squeeze(-1) - lo) / (hi - lo).clamp_min(1e-300)).clamp(0.0, 1.0)
            if self.uniform:
                u = ((j - 1) + frac) / self.n_levels
            else:
                levels = self.levels.to(z.device)
                u = levels[j - 1] + frac * (levels[j] - levels[j - 1])
            out[rows] = _std_normal_ppf(u.clamp(U_EPS, 1 - U_EPS))
        return out

    def inverse(self, x: Tensor, l: Tensor) -> Tensor:
        """Coordinates z [N, C] (float64) of Gaussianised x [N, C] given l [N]."""
        k, w = self._bracket(l)
        if self.uniform:  # the count form ONNX exports
            pos = _std_normal_cdf(x.double()) * self.n_levels
            j = pos.floor().long().clamp(0, self.n_levels - 1)
            frac = pos - j
        else:
            j, frac = self._level(_std_normal_cdf(x.double()))
        flat = self.table.to(x.device).reshape(-1)
        coord = torch.arange(x.shape[1], device=x.device).unsqueeze(0)

        def at(knot: Tensor, level: Tensor) -> Tensor:
            index = (knot.unsqueeze(1) * x.shape[1] + coord) * (self.n_levels + 1) + level
            return flat[index].double()

        def quantile(knot: Tensor) -> Tensor:
            return at(knot, j) * (1 - frac) + at(knot, j + 1) * frac

        wk = w.view(-1, 1)
        return (1 - wk) * quantile(k) + wk * quantile(k + 1)

    def _element_tables(self, l: Tensor, cols: Tensor) -> Tensor:
        """[M, L + 1] quantiles of coordinate cols[m] at condition l[m], interpolated in l."""
        k, w = self._bracket(l)
        table = self.table.to(l.device)
        wk = w.unsqueeze(1)
        return (1 - wk) * table[k, cols].double() + wk * table[k + 1, cols].double()

    def _level(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(j, frac): u lies in level interval j at fraction frac."""
        levels = self.levels.to(u.device)
        j = (torch.searchsorted(levels, u.contiguous(), right=True) - 1).clamp(0, self.n_levels - 1)
        return j, ((u - levels[j]) / (levels[j + 1] - levels[j])).clamp(0.0, 1.0)

    def transform_elements(self, z: Tensor, l: Tensor, cols: Tensor) -> Tensor:
        """`transform` of single elements: x [M] of z [M] in coordinate cols [M] given l [M]."""
        q = self._element_tables(l, cols)
        j = torch.searchsorted(q, z.double().unsqueeze(1).contiguous()).squeeze(1)
        j = j.clamp(1, self.n_levels)
        lo, hi = q.gather(1, (j - 1).unsqueeze(1)), q.gather(1, j.unsqueeze(1))
        frac = ((z.double() - lo[:, 0]) / (hi - lo)[:, 0].clamp_min(1e-300)).clamp(0.0, 1.0)
        levels = self.levels.to(z.device)
        u = levels[j - 1] + frac * (levels[j] - levels[j - 1])
        return _std_normal_ppf(u.clamp(U_EPS, 1 - U_EPS))

    def inverse_elements(self, x: Tensor, l: Tensor, cols: Tensor) -> Tensor:
        """`inverse` of single elements: z [M] of x [M] in coordinate cols [M] given l [M]."""
        q = self._element_tables(l, cols)
        j, frac = self._level(_std_normal_cdf(x.double()))
        lo, hi = q.gather(1, j.unsqueeze(1))[:, 0], q.gather(1, (j + 1).unsqueeze(1))[:, 0]
        return lo * (1 - frac) + hi * frac


__all__ = ["ConditionalQuantiles", "quantile_levels", "sorted_quantiles"]
