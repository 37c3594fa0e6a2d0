"""The comparison core every evaluation shares: split, per-metric value and floor, summaries.

The reference is split (seeded) into two disjoint halves A and B. Each metric is computed for
(A, G) and, as its noise floor, for (A, B), with G the generated sample cut to the size of B:
value and floor then share sample sizes and reference events, and compare directly. In-memory
(farm.evaluation.showers, .jets) and streamed (farm.evaluation.streaming) evaluations build their
parts differently and hand them to the same functions here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from farm.errors import FarmError
from farm.evaluation import metrics as M
from farm.evaluation import shower_features as sf
from farm.evaluation.options import EvaluationOptions
from farm.evaluation.report import EvaluationResult
from farm.evaluation.thresholds import default_threshold
from farm.geometry import CaloGeometry

PARTS = ("a", "b", "g")
Parts = dict[str, tuple[np.ndarray, np.ndarray]]
"""Reference halves a, b and generated g: (showers (N, V) MeV, e_inc (N,) MeV) each."""


def halves(n_ref: int, n_gen: int, rng: np.random.Generator):
    """Index arrays (A, B, G): disjoint reference halves and a generated subset of size |B|."""
    if n_ref < 4 or n_gen < 2:
        raise FarmError(f"too few events to evaluate: {n_ref} reference, {n_gen} generated")
    perm = rng.permutation(n_ref)
    half = n_ref // 2
    size = min(n_ref - half, n_gen)
    return perm[:half], perm[half : half + size], rng.permutation(n_gen)[:size]


def limit(n: int, max_events: int | None, rng: np.random.Generator) -> np.ndarray:
    """All n indices, or a sorted seeded subset of max_events of them."""
    idx = np.arange(n)
    if max_events is not None and n > max_events:
        idx = np.sort(rng.choice(n, max_events, replace=False))
    return idx


def threshold_of(geometry: CaloGeometry, options: EvaluationOptions) -> float:
    """The per-voxel threshold of an evaluation: the option, else the challenge's."""
    given = options.threshold_mev
    return default_threshold(geometry) if given is None else float(given)


def spectrum_edges(a_min: float, a_max: float, threshold: float) -> np.ndarray:
    """50 log bins of the voxel spectrum over reference half A's range (above the threshold)."""
    lo = max(threshold, a_min, 1e-6)
    return np.geomspace(lo, max(a_max, lo * 10), 51)


def add_pair(
    result: EvaluationResult,
    name: str,
    metric: Callable[..., tuple[float, float]],
    a,
    b,
    g,
    **kwargs,
) -> None:
    """metric(A, G) as the value and metric(A, B) as its floor."""
    result.add(name, metric(a, g, **kwargs), metric(a, b, **kwargs))


def add_feature_metrics(
    result: EvaluationResult,
    fa: dict[str, np.ndarray],
    fb: dict[str, np.ndarray],
    fg: dict[str, np.ndarray],
    seed: int,
) -> dict[str, tuple[float, float]]:
    """sep/<f> and w1/<f> for every feature, sep_mean and sep_max; name -> (sep, sep floor)."""
    seps = {}
    for key in fa:
        sep_kw = {"seed": seed, "scale": sf.histogram_scale(key)}
        add_pair(result, f"sep/{key}", M.separation_power, fa[key], fb[key], fg[key], **sep_kw)
        add_pair(result, f"w1/{key}", M.wasserstein_1, fa[key], fb[key], fg[key], seed=seed)
        m = result.metrics[f"sep/{key}"]
        seps[key] = (m["value"], m["floor"])
    summarise_seps(result, seps)
    return seps


def summarise_seps(result: EvaluationResult, seps: dict[str, tuple[float, float]]) -> None:
    """sep_mean and sep_max (with the feature) from name -> (sep value, sep floor); no errors."""
    vals = np.array([v for v, _ in seps.values()])
    floors = np.array([f for _, f in seps.values()])
    result.add_summary("sep_mean", vals.mean(), floors.mean())
    worst = int(np.argmax(vals))
    result.add_summary("sep_max", vals[worst], floors.max(), feature=list(seps)[worst])


def add_classifiers(
    result: EvaluationResult,
    inputs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    options: EvaluationOptions,
) -> None:
    """auc_<level> and jsd_<level> of the classifier telling G (value) or B (floor) from A."""
    kw = options.classifier_kwargs
    for level, (a, b, g) in inputs.items():
        value = M.classifier_test(a, g, seed=options.seed, **kw)
        floor = M.classifier_test(a, b, seed=options.seed, **kw)
        result.add(f"auc_{level}", (value.auc, value.auc_error), (floor.auc, floor.auc_error))
        result.add_summary(f"jsd_{level}", value.jsd, floor.jsd)
        result.details[f"classifier_{level}"] = {"value": value.to_dict(), "floor": floor.to_dict()}


def add_shower_distances_and_classifiers(
    result: EvaluationResult,
    parts: Parts,
    feats: dict[str, dict[str, np.ndarray]],
    geometry: CaloGeometry,
    options: EvaluationOptions,
) -> None:
    """FPD and KPD on the physics features and the low/high-level classifier AUCs of the parts."""
    dist = {k: sf.distance_inputs(feats[k], parts[k][1], geometry) for k in PARTS}
    kw, seed = options.metric_kwargs, options.seed
    add_pair(result, "fpd", M.fpd, *dist.values(), seed=seed, **kw.get("fpd", {}))
    add_pair(result, "kpd", M.kpd, *dist.values(), seed=seed, **kw.get("kpd", {}))
    if options.classifier:
        low = {k: sf.low_level_inputs(*parts[k]) for k in PARTS}
        high = {k: sf.high_level_inputs(feats[k], parts[k][1], geometry) for k in PARTS}
        levels = {"low": tuple(low[k] for k in PARTS), "high": tuple(high[k] for k in PARTS)}
        add_classifiers(result, levels, options)


@contextlib.contextmanager
def small_sample_notes(result: EvaluationResult) -> Iterator[None]:
    """Record every SmallSampleWarning raised inside as a note of the result (once each)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", M.SmallSampleWarning)
        yield
    for w in caught:
        text = str(w.message)
        if text not in result.notes:
            result.notes.append(text)


def shower_details(
    result: EvaluationResult,
    geometry: CaloGeometry,
    threshold: float,
    n_reference: int,
    n_generated: int,
    n_compared: int,
    options: EvaluationOptions,
) -> None:
    """What every shower evaluation records about itself."""
    result.details.update(
        geometry=geometry.name,
        threshold_mev=threshold,
        n_reference=n_reference,
        n_generated=n_generated,
        n_compared=n_compared,
        seed=options.seed,
        **options.labels,
    )
