"""Fidelity metrics as pure functions (reference, generated, ..., seed) -> (value, error).

Separation power: CaloChallenge 2022 (arXiv:2410.21611, eq. 15 of arXiv:2009.03796).
Wasserstein-1, FPD and KPD: Kansal et al. 2023 (arXiv:2211.10295), as JetNet's gen_metrics.py.
Classifier AUC: farm.evaluation.classifier (re-exported here).
Errors are bootstrap standard deviations unless stated; every random draw comes from `seed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit
from scipy.stats import iqr, wasserstein_distance

from farm.errors import FarmError
from farm.evaluation.checks import SmallSampleWarning, check_pair, warn_small
from farm.evaluation.classifier import ClassifierResult, classifier_auc, classifier_test, roc_auc

# Recommended minimum events per sample (below: SmallSampleWarning).
MIN_N_HISTOGRAM = 10_000  # separation power with ~50 bins
MIN_N_W1 = 10_000  # JetNet evaluates W1 on 10k-event batches
MIN_N_FPD = 20_000  # JetNet's fpd min_samples
MIN_N_KPD = 5_000  # JetNet's kpd batch_size


# --------------------------------------------------------------------------- histograms

SEP_BINS = 50  # bins of a separation-power histogram, plus one for zeros where they are kept apart
LOG_SPAN = 100.0  # "auto" scale: log bins for positive values spanning more than this factor


@dataclass(frozen=True)
class FeatureSummary:
    """What one pass over a reference feature knows: count, range, zeros, smallest positive value.

    Built from an array (`of`) or from chunks (`of` each, then `merge`), so streamed and in-memory
    evaluations derive the same histogram bins (feature_edges) from reference half A.
    """

    n: int
    lo: float
    hi: float
    n_zero: int
    min_positive: float  # inf without positive values

    @classmethod
    def of(cls, values: np.ndarray) -> FeatureSummary:
        """Summary of the values of one array (any shape)."""
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        if x.size == 0:
            return cls(0, math.inf, -math.inf, 0, math.inf)
        positive = x[x > 0]
        return cls(
            n=int(x.size),
            lo=float(x.min()),
            hi=float(x.max()),
            n_zero=int(np.count_nonzero(x == 0)),
            min_positive=float(positive.min()) if positive.size else math.inf,
        )

    def merge(self, other: FeatureSummary | None) -> FeatureSummary:
        """Summary of both samples together (other None: this one)."""
        if other is None:
            return self
        return FeatureSummary(
            n=self.n + other.n,
            lo=min(self.lo, other.lo),
            hi=max(self.hi, other.hi),
            n_zero=self.n_zero + other.n_zero,
            min_positive=min(self.min_positive, other.min_positive),
        )


def feature_edges(summary: FeatureSummary, scale: str = "auto", bins: int = SEP_BINS) -> np.ndarray:
    """Separation-power bin edges of a feature from its reference summary (CaloChallenge-like).

    A non-negative feature with zeros keeps them apart: a first bin [0, x_min+) (x_min+ the
    smallest positive reference value; generated values below it count there too), then `bins`
    bins over [x_min+, max] ([0, x, 2x] when x is the only positive value). Otherwise `bins`
    bins over [min, max]. The bins are log-spaced for scale "log" (energies, as the challenge's
    E_layer histograms) and for "auto" when the binned values are positive and span more than
    LOG_SPAN; linear for "linear" (centres and widths, as the challenge's) and for signed values.
    A constant feature gets `bins` bins over [x - 0.5, x + 0.5].
    """
    if summary.n == 0:
        raise FarmError("histogram bins: the reference sample is empty")
    if scale not in ("auto", "log", "linear"):
        raise FarmError(f"histogram scale must be 'auto', 'log' or 'linear', not {scale!r}")
    lo, hi = summary.lo, summary.hi
    if hi <= lo:
        return np.linspace(lo - 0.5, hi + 0.5, bins + 1)
    zeros_apart = lo == 0.0 and summary.n_zero > 0
    start = summary.min_positive if zeros_apart else lo
    if start >= hi:  # zeros and a single positive value
        return np.array([0.0, start, 2.0 * start])
    log = start > 0 and (scale == "log" or (scale == "auto" and hi / start > LOG_SPAN))
    body = np.geomspace(start, hi, bins + 1) if log else np.linspace(start, hi, bins + 1)
    return np.concatenate([[0.0], body]) if zeros_apart else body


def separation_edges(
    reference: np.ndarray, bins: int | np.ndarray | None = None, scale: str = "auto"
) -> np.ndarray:
    """Separation-power bin edges: explicit edges, or feature_edges of the reference's summary."""
    if bins is not None and np.ndim(bins) == 1:
        return _checked_edges(bins)
    n_bins = SEP_BINS if bins is None else int(bins)
    return feature_edges(FeatureSummary.of(reference), scale, n_bins)


def histogram_edges(reference: np.ndarray, bins: int | np.ndarray | None = None) -> np.ndarray:
    """Plot bin edges from the reference: explicit edges, or `bins` (default 50) over its range.

    With `bins` None and a strictly positive reference spanning more than two decades, the
    bins are log-spaced. (Separation powers bin with separation_edges.)
    """
    if bins is not None and np.ndim(bins) == 1:
        return _checked_edges(bins)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    return edges_from_range(float(ref.min()), float(ref.max()), bins)


def _checked_edges(bins: np.ndarray) -> np.ndarray:
    """Explicit edges as float64; FarmError unless at least two increasing values."""
    edges = np.asarray(bins, dtype=np.float64)
    if edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise FarmError("histogram bins must be at least two increasing edges")
    return edges


def edges_from_range(lo: float, hi: float, bins: int | None = None) -> np.ndarray:
    """histogram_edges for a reference whose minimum and maximum are lo and hi."""
    n_bins = SEP_BINS if bins is None else int(bins)
    if hi <= lo:
        return np.linspace(lo - 0.5, hi + 0.5, n_bins + 1)
    if bins is None and lo > 0 and hi / lo > LOG_SPAN:
        return np.geomspace(lo, hi, n_bins + 1)
    return np.linspace(lo, hi, n_bins + 1)


def separation_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in the bins; values outside [edges[0], edges[-1]] are left out (np.histogram)."""
    values = np.asarray(x, dtype=np.float64).reshape(-1)
    return np.histogram(values, bins=edges)[0].astype(np.float64)


def histogram_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts with values outside the edges put into the first/last bin.

    For plots, where an excess beyond the reference range stays visible; separation powers
    leave such values out (separation_counts).
    """
    clipped = np.clip(x, edges[0], edges[-1])
    return np.histogram(clipped, bins=edges)[0].astype(np.float64)


def _sep(h_ref: np.ndarray, h_gen: np.ndarray) -> np.ndarray:
    """Separation power of normalised histograms along the last axis."""
    p = h_ref / h_ref.sum(axis=-1, keepdims=True)
    q = h_gen / h_gen.sum(axis=-1, keepdims=True)
    return 0.5 * ((p - q) ** 2 / (p + q + 1e-16)).sum(axis=-1)


def separation_power(
    reference: np.ndarray,
    generated: np.ndarray,
    bins: int | np.ndarray | None = None,
    seed: int = 0,
    n_bootstrap: int = 50,
    scale: str = "auto",
) -> tuple[float, float]:
    """Separation power ½ Σ (p − q)² / (p + q) of normalised histograms (CaloChallenge eq. 15).

    reference (N,), generated (M,); bins from the reference (separation_edges with `scale`: log
    bins for energies, zeros kept apart, see feature_edges). As the challenge's np.histogram,
    values outside the reference range are left out and each histogram is normalised over its
    entries in range; a sample with no entry in range scores 1. 0 for identical histograms, 1 for
    disjoint ones. Error: bootstrap std (multinomial resampling of both histograms).
    Recommended N, M >= 10,000.
    """
    ref, gen = check_pair(reference, generated, ndim=1)
    warn_small(min(ref.size, gen.size), MIN_N_HISTOGRAM, "separation power")
    edges = separation_edges(ref, bins, scale)
    h_ref, h_gen = separation_counts(ref, edges), separation_counts(gen, edges)
    return separation_power_counts(h_ref, h_gen, seed, n_bootstrap)


def separation_power_counts(
    h_ref: np.ndarray, h_gen: np.ndarray, seed: int = 0, n_bootstrap: int = 50
) -> tuple[float, float]:
    """separation_power from two histograms with the same bins (counts; streaming evaluation)."""
    h_ref, h_gen = np.asarray(h_ref, np.float64), np.asarray(h_gen, np.float64)
    if h_ref.sum() == 0 or h_gen.sum() == 0:
        return 1.0, 0.0
    value = float(_sep(h_ref, h_gen))
    rng = np.random.default_rng(seed)
    boot_ref = rng.multinomial(int(h_ref.sum()), h_ref / h_ref.sum(), size=n_bootstrap)
    boot_gen = rng.multinomial(int(h_gen.sum()), h_gen / h_gen.sum(), size=n_bootstrap)
    return value, float(np.std(_sep(boot_ref.astype(float), boot_gen.astype(float))))


# --------------------------------------------------------------------------- Wasserstein


def wasserstein_1(
    reference: np.ndarray,
    generated: np.ndarray,
    seed: int = 0,
    n_bootstrap: int = 10,
    max_bootstrap_events: int = 200_000,
) -> tuple[float, float]:
    """1-D Wasserstein-1 distance (Kansal et al. 2023, arXiv:2211.10295), in the data's units.

    reference (N,), generated (M,). Value on the full samples; error = bootstrap std
    (on at most `max_bootstrap_events` per sample, scaled by sqrt(m/N)). Recommended N >= 10,000.
    """
    ref, gen = check_pair(reference, generated, ndim=1)
    warn_small(min(ref.size, gen.size), MIN_N_W1, "Wasserstein-1")
    value = float(wasserstein_distance(ref, gen))
    rng = np.random.default_rng(seed)
    m_ref, m_gen = min(ref.size, max_bootstrap_events), min(gen.size, max_bootstrap_events)
    boots = [
        wasserstein_distance(
            ref[rng.integers(0, ref.size, m_ref)], gen[rng.integers(0, gen.size, m_gen)]
        )
        for _ in range(n_bootstrap)
    ]
    scale = np.sqrt(min(m_ref / ref.size, m_gen / gen.size))
    return value, float(np.std(boots) * scale)


W1_BINS = 4096  # fine bins of the streamed Wasserstein-1 (see wasserstein_1_binned)


def binned_moments(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(3, K) per-bin count, Σ (x - left edge) and Σ (x - left edge)² of clipped values.

    Values are clipped to the edges (K + 1,); this is what wasserstein_1_binned needs. Add the
    arrays of several chunks.
    """
    x = np.clip(np.asarray(values, np.float64).reshape(-1), edges[0], edges[-1])
    k = len(edges) - 1
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, k - 1)
    d = x - edges[idx]
    return np.stack(
        [
            np.bincount(idx, minlength=k).astype(np.float64),
            np.bincount(idx, weights=d, minlength=k),
            np.bincount(idx, weights=d * d, minlength=k),
        ]
    )


def _bin_means(moments: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the values in each bin (0 for empty bins)."""
    n = np.maximum(moments[0], 1.0)
    mean = moments[1] / n
    return edges[:-1] + mean, np.sqrt(np.clip(moments[2] / n - mean * mean, 0.0, None))


def _w1_discrete(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """W1 of signed weights w (..., L) (p at its points minus q at its points) at positions x (L,)."""
    order = np.argsort(x, kind="stable")
    cdf = np.cumsum(w[..., order], axis=-1)[..., :-1]
    return np.abs(cdf) @ np.diff(x[order])


def wasserstein_1_binned(
    reference: np.ndarray,
    generated: np.ndarray,
    edges: np.ndarray,
    tail: float = 0.0,
    seed: int = 0,
    n_bootstrap: int = 10,
) -> tuple[float, float, float]:
    """Wasserstein-1 from fine binned moments, for samples streamed from files beyond memory.

    reference, generated: binned_moments (3, K) over the bins `edges` (K + 1,), which cover the
    whole reference; generated values beyond them were clipped to the edges and `tail` is their
    mean overshoot mean((lo - x)+ + (x - hi)+) over the generated sample, added exactly. Each value
    is moved to the mean of its bin (of its own sample), which changes the distribution by at
    most the mean absolute deviation within the bin, <= its standard deviation, in W1. So
    |value - exact W1| <= binning_error = Σ_k (p_k σ_k^ref + q_k σ_k^gen) (p, q the bin
    fractions), 0 for values that sit on a few points. Returns (value, error, binning_error);
    error: bootstrap std with multinomial resampling of both histograms (the tail held fixed).
    """
    ref, gen = np.asarray(reference, np.float64), np.asarray(generated, np.float64)
    edges = np.asarray(edges, np.float64)
    (x_ref, sd_ref), (x_gen, sd_gen) = _bin_means(ref, edges), _bin_means(gen, edges)
    p, q = ref[0] / ref[0].sum(), gen[0] / gen[0].sum()
    keep_p, keep_q = p > 0, q > 0
    x = np.concatenate([x_ref[keep_p], x_gen[keep_q]])
    value = float(_w1_discrete(x, np.concatenate([p[keep_p], -q[keep_q]]))) + float(tail)
    bound = float(p @ sd_ref + q @ sd_gen)
    rng = np.random.default_rng(seed)
    boot_p = rng.multinomial(int(ref[0].sum()), p, size=n_bootstrap) / ref[0].sum()
    boot_q = rng.multinomial(int(gen[0].sum()), q, size=n_bootstrap) / gen[0].sum()
    boots = _w1_discrete(x, np.concatenate([boot_p[:, keep_p], -boot_q[:, keep_q]], axis=1))
    return value, float(np.std(boots)), bound


def fine_edges(lo: float, hi: float, quantiles: np.ndarray | None = None, bins: int = W1_BINS):
    """Fine W1 bins over [lo, hi]: half evenly spaced, half at quantiles of a reference subsample.

    The quantile half puts narrow bins where the events are; duplicates are removed.
    """
    if hi <= lo:
        return np.array([lo - 0.5, hi + 0.5])
    edges = np.linspace(lo, hi, bins // 2 + 1)
    if quantiles is not None and len(quantiles):
        q = np.quantile(np.asarray(quantiles, np.float64), np.linspace(0, 1, bins // 2 + 1))
        edges = np.concatenate([edges, np.clip(q, lo, hi)])
    edges = np.unique(edges)
    return edges


# --------------------------------------------------------------------------- Fréchet


def _cov(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Unbiased sample covariance (D, D) of x (N, D) (np.cov without its copies and checks)."""
    xc = x - mean
    return xc.T @ xc / max(len(x) - 1, 1)


def _gaussian_fd(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to x (N, D) and y (M, D)."""
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    s1, s2 = _cov(x, mu1), _cov(y, mu2)
    # Tr sqrt(S1 S2) = Σ sqrt(eig(S1^½ S2 S1^½)), symmetric PSD: stable where sqrtm is not.
    w, v = np.linalg.eigh(s1)
    s1_half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(s1_half @ s2 @ s1_half)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def normalise_features(
    reference: np.ndarray, generated: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Divide both by the reference's per-feature max |x| (JetNet's FPD/KPD normalisation).

    Features constant in the reference (zero spread, e.g. an empty layer's energy) are dropped
    from both first: they have no scale, and the generated values would enter in raw units.
    When every feature is constant, all are kept (divided by max |x|, 1 where that is 0).
    """
    keep = np.ptp(reference, axis=0) > 0
    if not keep.any():
        keep[:] = True
    ref, gen = reference[:, keep], generated[:, keep]
    scale = np.abs(ref).max(axis=0)
    scale[scale == 0] = 1.0
    return ref / scale, gen / scale


def frechet_distance(
    reference: np.ndarray,
    generated: np.ndarray,
    seed: int = 0,
    n_bootstrap: int = 10,
) -> tuple[float, float]:
    """Fréchet (2-Wasserstein between fitted Gaussians) distance of (N, D) and (M, D) features.

    No normalisation and no extrapolation (biased upwards by O(D/N)); see fpd for the
    N-independent physics distance. Error: bootstrap std. Recommended N >= 20,000.
    """
    ref, gen = check_pair(reference, generated, ndim=2)
    warn_small(min(len(ref), len(gen)), MIN_N_FPD, "Fréchet distance")
    value = _gaussian_fd(ref, gen)
    rng = np.random.default_rng(seed)
    boots = [
        _gaussian_fd(
            ref[rng.integers(0, len(ref), len(ref))], gen[rng.integers(0, len(gen), len(gen))]
        )
        for _ in range(n_bootstrap)
    ]
    return value, float(np.std(boots))


def _linear(x, intercept, slope):
    return intercept + slope * x


def fpd(
    reference: np.ndarray,
    generated: np.ndarray,
    min_samples: int = 20_000,
    max_samples: int = 50_000,
    num_batches: int = 20,
    num_points: int = 10,
    normalise: bool = True,
    seed: int = 0,
) -> tuple[float, float]:
    """Fréchet physics distance extrapolated to infinite N (Kansal et al. 2023, arXiv:2211.10295).

    reference (N, D), generated (M, D) features (EFPs for jets, high-level features for showers).
    The Fréchet distance is averaged over `num_batches` random (with replacement) subsamples at
    `num_points` sizes n spaced evenly in 1/n between min_samples and max_samples, then a line
    FD(n) = FPD + k / n (both >= 0) is fitted; FPD is its intercept and the error its fit std.
    Sizes above the smaller sample are clamped to it. Recommended N, M >= 20,000 (JetNet's
    default evaluates at 20k to 50k); features normalised by the reference's max |x| first
    (normalise_features: features constant in the reference dropped).
    """
    ref, gen = check_pair(reference, generated, ndim=2)
    n_avail = min(len(ref), len(gen))
    warn_small(n_avail, min_samples, "FPD")
    if normalise:
        ref, gen = normalise_features(ref, gen)
    max_samples = min(max_samples, n_avail)
    min_samples = min(min_samples, max(max_samples // 2, 2))
    ns = (1.0 / np.linspace(1.0 / min_samples, 1.0 / max_samples, num_points)).astype(np.int64)
    rng = np.random.default_rng(seed)
    vals = []
    for n in ns:
        batch = [
            _gaussian_fd(ref[rng.integers(0, len(ref), n)], gen[rng.integers(0, len(gen), n)])
            for _ in range(num_batches)
        ]
        vals.append(np.mean(batch))
    return _extrapolate(ns, np.asarray(vals))


def _extrapolate(ns: np.ndarray, vals: np.ndarray) -> tuple[float, float]:
    """Intercept of FD(n) = FPD + k / n (FPD, k >= 0) and its fit std (JetNet's curve_fit).

    Fitted on O(1) scales (vals / max |vals| against min(ns) / n, then scaled back: the same
    least-squares line), as curve_fit stays at its start (1, 1) with zero covariance when the
    values are ~1e15.
    """
    y_scale = float(np.abs(vals).max()) or 1.0
    x = ns.min() / ns
    params, covs = curve_fit(_linear, x, vals / y_scale, bounds=([0, 0], [np.inf, np.inf]))
    return float(params[0] * y_scale), float(np.sqrt(covs[0, 0]) * y_scale)


# --------------------------------------------------------------------------- KPD


def _int_power(k: np.ndarray, degree: int) -> np.ndarray:
    """k**degree by repeated multiplication (np.power with a float path is ~10x slower)."""
    out = k.copy()
    for _ in range(degree - 1):
        out *= k
    return out


def _poly_kernel_sum(x: np.ndarray, y: np.ndarray, degree: int, chunk: int = 1024) -> float:
    """Σ_ij (x_i·y_j / D + 1)^degree, computed in row chunks to bound memory."""
    d, total = x.shape[1], 0.0
    for i in range(0, len(x), chunk):
        k = x[i : i + chunk] @ y.T
        k /= d
        k += 1.0
        total += float(_int_power(k, degree).sum())
    return total


KPD_DEGREE = 4  # JetNet's kpd kernel degree


def mmd_poly_unbiased(x: np.ndarray, y: np.ndarray, degree: int = KPD_DEGREE) -> float:
    """Unbiased MMD² with the polynomial kernel k(a, b) = (a·b / D + 1)^degree."""
    d, m, n = x.shape[1], len(x), len(y)
    diag_x = float((((x * x).sum(axis=1) / d + 1.0) ** degree).sum())
    diag_y = float((((y * y).sum(axis=1) / d + 1.0) ** degree).sum())
    term_x = (_poly_kernel_sum(x, x, degree) - diag_x) / (m * (m - 1))
    term_y = (_poly_kernel_sum(y, y, degree) - diag_y) / (n * (n - 1))
    return float(term_x + term_y - 2.0 * _poly_kernel_sum(x, y, degree) / (m * n))


def kpd(
    reference: np.ndarray,
    generated: np.ndarray,
    num_batches: int = 10,
    batch_size: int = 5_000,
    normalise: bool = True,
    seed: int = 0,
    degree: int = KPD_DEGREE,
) -> tuple[float, float]:
    """Kernel physics distance (Kansal et al. 2023, arXiv:2211.10295), as JetNet's kpd.

    reference (N, D), generated (M, D). Unbiased MMD² with the polynomial kernel
    (x·y / D + 1)^degree (JetNet's degree 4) on `num_batches` random (with replacement) batches
    of `batch_size` (clamped to the smaller sample); returns the median and half the 16th-84th
    percentile range. Can be slightly negative when the samples agree. Recommended N, M >= 5,000.
    Features are normalised as fpd's (normalise_features).
    """
    ref, gen = check_pair(reference, generated, ndim=2)
    n_avail = min(len(ref), len(gen))
    warn_small(n_avail, batch_size, "KPD")
    if normalise:
        ref, gen = normalise_features(ref, gen)
    size = max(min(batch_size, n_avail), 2)
    rng = np.random.default_rng(seed)
    vals = [
        mmd_poly_unbiased(
            ref[rng.integers(0, len(ref), size)], gen[rng.integers(0, len(gen), size)], degree
        )
        for _ in range(num_batches)
    ]
    return float(np.median(vals)), float(iqr(vals, rng=(16.275, 83.725)) / 2)


__all__ = [
    "MIN_N_FPD",
    "MIN_N_HISTOGRAM",
    "MIN_N_KPD",
    "MIN_N_W1",
    "SEP_BINS",
    "ClassifierResult",
    "FeatureSummary",
    "SmallSampleWarning",
    "binned_moments",
    "classifier_auc",
    "classifier_test",
    "edges_from_range",
    "feature_edges",
    "fine_edges",
    "fpd",
    "frechet_distance",
    "histogram_edges",
    "kpd",
    "normalise_features",
    "roc_auc",
    "separation_counts",
    "separation_edges",
    "separation_power",
    "separation_power_counts",
    "wasserstein_1",
    "wasserstein_1_binned",
]
