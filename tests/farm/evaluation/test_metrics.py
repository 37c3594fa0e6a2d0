"""Metric definitions on hand-computable cases, and sensitivity above the reference floor."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from eval_samples import make_showers

from farm.errors import FarmError
from farm.evaluation.metrics import (
    KPD_DEGREE,
    FeatureSummary,
    SmallSampleWarning,
    classifier_test,
    feature_edges,
    fpd,
    frechet_distance,
    kpd,
    mmd_poly_unbiased,
    normalise_features,
    roc_auc,
    separation_counts,
    separation_edges,
    separation_power,
    separation_power_counts,
    wasserstein_1,
)
from farm.evaluation.shower_features import (
    distance_inputs,
    high_level_inputs,
    low_level_inputs,
    shower_features,
)

pytestmark = pytest.mark.filterwarnings("ignore::farm.evaluation.checks.SmallSampleWarning")


def test_separation_power_is_zero_for_identical_and_one_for_disjoint_samples():
    x = np.random.default_rng(0).normal(size=5000)
    assert separation_power(x, x.copy())[0] == 0.0
    assert separation_power(np.zeros(100), np.ones(100), bins=np.array([-0.5, 0.5, 1.5]))[0] == 1.0
    # hand computed: p = (0.5, 0.5), q = (0.25, 0.75) -> ½ (0.0625/0.75 + 0.0625/1.25)
    value, _ = separation_power(
        [0, 1, 0, 1], [0, 1, 1, 1], bins=np.array([-0.5, 0.5, 1.5]), n_bootstrap=5
    )
    assert value == pytest.approx(0.5 * (0.0625 / 0.75 + 0.0625 / 1.25))


def test_separation_power_leaves_out_values_outside_the_reference_range_and_is_seeded():
    two_bins = np.array([-0.5, 0.5, 1.5])
    inside = 0.5 * (0.0625 / 0.75 + 0.0625 / 1.25)  # p = (1/2, 1/2), q = (1/4, 3/4)
    # as np.histogram (the challenge's): -3 and 5 fall outside the bins and are left out
    value, _ = separation_power([0, 1, 0, 1], [0, 1, 1, 1, 5, -3], bins=two_bins, n_bootstrap=5)
    assert value == pytest.approx(inside)
    assert separation_counts([-3, 0, 1, 1.5, 5], two_bins).tolist() == [1.0, 2.0]
    # a sample with no entry in the reference range is disjoint from it
    assert separation_power([0, 1], [7, 8], bins=two_bins) == (1.0, 0.0)
    assert separation_power_counts(np.array([3.0, 1.0]), np.zeros(2)) == (1.0, 0.0)
    ref = np.random.default_rng(1).normal(size=4000)
    gen = np.random.default_rng(2).normal(size=4000)
    assert separation_power(ref, gen, seed=3) == separation_power(ref, gen, seed=3)


def test_feature_edges_keep_zeros_apart_with_log_bins_for_energies():
    energies = FeatureSummary.of([0.0, 0.0, 0.0, 1.0, 10.0, 1000.0])
    assert (energies.n, energies.n_zero, energies.min_positive) == (6, 3, 1.0)
    edges = feature_edges(energies, "log", bins=3)
    assert np.allclose(edges, [0.0, 1.0, 10.0, 100.0, 1000.0])  # zero bin [0, 1), then decades
    assert np.allclose(feature_edges(energies, "linear", bins=3), [0.0, 1.0, 334.0, 667.0, 1000.0])
    assert np.allclose(feature_edges(energies, "auto", bins=3), edges)  # spans 1000x: log
    # signed features (centres) get linear bins over the range, no zero bin
    signed = FeatureSummary.of([-2.0, 0.0, 3.0])
    assert np.allclose(feature_edges(signed, "log", bins=5), [-2, -1, 0, 1, 2, 3])
    assert np.allclose(feature_edges(FeatureSummary.of([0.5, 2.0]), bins=3), [0.5, 1, 1.5, 2])
    assert np.allclose(feature_edges(FeatureSummary.of([4.0, 4.0]), bins=2), [3.5, 4.0, 4.5])
    assert np.allclose(feature_edges(FeatureSummary.of([0.0, 3.0, 3.0])), [0.0, 3.0, 6.0])
    with pytest.raises(FarmError, match="scale must be"):
        feature_edges(energies, "logarithmic")


def test_zeros_apart_show_a_mismodelled_energy_that_linear_bins_from_zero_hide():
    # half the showers leave a layer empty; the generated non-empty ones carry 2 MeV, not 1
    ref = np.array([0.0] * 50 + [1.0] * 25 + [100.0] * 25)
    gen = np.array([0.0] * 50 + [2.0] * 25 + [100.0] * 25)
    # bins: zeros [0, 1), then 50 log bins over [1, 100]: 1 and 2 fall in different bins, so
    # p and q differ by 1/4 in two bins holding 1/4 each: sep = ½ (2 x 0.25² / 0.25) = 0.25
    value, _ = separation_power(ref, gen, scale="log")
    assert value == pytest.approx(0.25)
    # 50 linear bins from 0 to 100 (the old binning) pack 0 and 1 into one bin: 0.15
    linear = np.linspace(0.0, 100.0, 51)
    assert separation_power(ref, gen, bins=linear)[0] == pytest.approx(0.5 * (0.05 + 0.25))


def test_streamed_summaries_give_the_in_memory_edges():
    rng = np.random.default_rng(7)
    x = np.where(rng.random(3000) < 0.3, 0.0, rng.lognormal(3.0, 2.0, 3000))
    merged = None
    for chunk in np.array_split(x, 7):
        merged = FeatureSummary.of(chunk).merge(merged)
    assert merged == FeatureSummary.of(x)
    for scale in ("auto", "log", "linear"):
        streamed = feature_edges(merged, scale)
        assert np.array_equal(streamed, separation_edges(x, scale=scale))
        counts = sum(separation_counts(c, streamed) for c in np.array_split(x, 7))
        assert np.array_equal(counts, separation_counts(x, streamed))


def test_wasserstein_of_shifted_gaussians_is_the_shift():
    rng = np.random.default_rng(2)
    value, err = wasserstein_1(rng.normal(size=20000), rng.normal(0.5, 1.0, size=20000))
    assert value == pytest.approx(0.5, abs=0.03)
    assert 0 < err < 0.03


def test_frechet_distance_of_shifted_unit_gaussians_is_shift_squared():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(30000, 3))
    gen = rng.normal(size=(30000, 3)) + np.array([0.5, 0.0, 0.0])
    value, _ = frechet_distance(ref, gen, n_bootstrap=3)
    assert value == pytest.approx(0.25, abs=0.02)
    value, err = fpd(ref, gen, min_samples=5000, max_samples=20000, num_batches=5, normalise=False)
    assert value == pytest.approx(0.25, abs=0.02)
    assert err < 0.02


def test_fpd_and_kpd_vanish_for_identical_samples_and_grow_with_a_shift():
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(20000, 4))
    value, err = fpd(ref, ref.copy(), min_samples=5000, max_samples=20000, num_batches=5)
    assert value < max(3 * err, 1e-4)
    k_same, k_err = kpd(ref, ref.copy(), num_batches=5, batch_size=1000)
    assert abs(k_same) < 3 * k_err + 1e-4
    k_shift, _ = kpd(ref, ref + 0.3, num_batches=5, batch_size=1000)
    assert k_shift > 10 * (abs(k_same) + k_err)


def test_features_constant_in_the_reference_are_dropped_from_fpd_and_kpd():
    rng = np.random.default_rng(6)
    ref, gen = rng.normal(size=(400, 2)), rng.normal(0.2, 1.0, size=(400, 2))
    # column 1 constant (5) in the reference; the generated one varies wildly around 1e6
    ref_c = np.column_stack([ref[:, 0], np.full(400, 5.0), ref[:, 1]])
    gen_c = np.column_stack([gen[:, 0], 1e6 * rng.normal(size=400), gen[:, 1]])
    a, g = normalise_features(ref_c, gen_c)
    scale = np.abs(ref).max(axis=0)  # hand: the two varying columns over their reference max |x|
    np.testing.assert_array_equal(a, ref / scale)
    np.testing.assert_array_equal(g, gen / scale)
    kw = dict(min_samples=200, max_samples=400, num_batches=3, num_points=4)
    assert fpd(ref_c, gen_c, **kw) == fpd(ref, gen, **kw)
    assert kpd(ref_c, gen_c, batch_size=200) == kpd(ref, gen, batch_size=200)
    # every feature constant (e.g. EFPs of identical jets): all kept, over max |x| (1 where 0)
    a, g = normalise_features(np.column_stack([np.full(4, 2.0), np.zeros(4)]), np.ones((4, 2)))
    assert a.tolist() == [[1.0, 0.0]] * 4 and g.tolist() == [[0.5, 1.0]] * 4


def test_fpd_extrapolation_scales_with_the_distance():
    # FD is quadratic in the features: x 1e8 multiplies FPD by 1e16 (curve_fit stayed at 1.0)
    rng = np.random.default_rng(7)
    ref, gen = rng.normal(size=(2000, 2)), rng.normal(0.5, 1.0, size=(2000, 2))
    kw = dict(min_samples=500, max_samples=2000, num_batches=3, num_points=4, normalise=False)
    value, err = fpd(ref, gen, **kw)
    big, big_err = fpd(1e8 * ref, 1e8 * gen, **kw)
    assert value == pytest.approx(0.5, abs=0.06)  # |mu_1 - mu_2|^2 = 2 x 0.5^2
    assert big == pytest.approx(1e16 * value, rel=1e-6)
    assert big_err == pytest.approx(1e16 * err, rel=1e-4)


def test_kpd_uses_jetnets_quartic_kernel():
    # k(a, b) = (a b + 1)^4 in D = 1: XX off-diagonal 3^4 = 81, YY 1, XY (1, 16, 1, 81) / 4
    x, y = np.array([[1.0], [2.0]]), np.array([[0.0], [1.0]])
    assert mmd_poly_unbiased(x, y) == pytest.approx(81 + 1 - 2 * 99 / 4)
    assert mmd_poly_unbiased(x, y, degree=3) == pytest.approx(27 + 1 - 2 * 37 / 4)
    assert KPD_DEGREE == 4


def test_roc_auc_hand_case():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_bad_inputs_raise_farm_errors_and_small_samples_warn():
    ref = np.random.default_rng(5).normal(size=(100, 3))
    gen = ref.copy()
    gen[3, 1] = np.nan
    with pytest.raises(FarmError, match="generated: 1 NaN/Inf values"):
        fpd(ref, gen)
    with pytest.raises(FarmError, match="generated: 1 NaN/Inf values"):
        wasserstein_1(ref[:, 0], [1.0, np.inf])
    with pytest.raises(FarmError, match="feature sets differ: reference has 3 features, generated"):
        kpd(ref, ref[:, :2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        separation_power(ref[:, 0], ref[:, 1])
    assert any(
        issubclass(w.category, SmallSampleWarning) and "10000 recommended" in str(w.message)
        for w in caught
    )


@pytest.fixture(scope="module")
def samples(geometry):
    """Reference, a second reference sample, and three distorted copies (3000 showers each)."""
    n = 3000
    return {
        "ref": make_showers(geometry, n, seed=0),
        "ref2": make_showers(geometry, n, seed=1),
        "scaled": make_showers(geometry, n, seed=1, scale=1.05),
        "moved": make_showers(geometry, n, seed=1, move_layer=1),
    }


def test_distorted_showers_score_clearly_above_the_reference_floor(geometry, samples):
    feats = {k: shower_features(s, e, geometry) for k, (s, e) in samples.items()}
    dist = {k: distance_inputs(feats[k], samples[k][1], geometry) for k in samples}
    sep = {k: separation_power(feats["ref"]["e_ratio"], feats[k]["e_ratio"])[0] for k in samples}
    assert sep["ref2"] < 0.02 and sep["scaled"] > 10 * sep["ref2"]
    moved_sep = separation_power(feats["ref"]["e_layer_2"], feats["moved"]["e_layer_2"])[0]
    floor_sep = separation_power(feats["ref"]["e_layer_2"], feats["ref2"]["e_layer_2"])[0]
    assert moved_sep > 10 * floor_sep
    kw = dict(min_samples=1000, max_samples=3000, num_batches=5)
    floor, floor_err = fpd(dist["ref"], dist["ref2"], **kw)
    for k in ("scaled", "moved"):
        value, err = fpd(dist["ref"], dist[k], **kw)
        assert value > floor + 5 * (err + floor_err), k
    k_floor, k_floor_err = kpd(dist["ref"], dist["ref2"], num_batches=5, batch_size=1000)
    k_scaled, _ = kpd(dist["ref"], dist["scaled"], num_batches=5, batch_size=1000)
    assert k_scaled > k_floor + 5 * k_floor_err


def test_classifier_auc_floor_and_sensitivity(geometry, samples):
    low = {k: low_level_inputs(s, e) for k, (s, e) in samples.items()}
    kw = dict(epochs=8, hidden=64, seed=0)
    floor = classifier_test(low["ref"], low["ref2"], **kw)
    assert floor.auc == pytest.approx(0.5, abs=0.05)
    assert 0 < floor.auc_error < 0.03
    assert abs(floor.jsd) < 0.05
    scaled = classifier_test(low["ref"], low["scaled"], **kw)
    assert scaled.auc > floor.auc + 0.15
    assert scaled.jsd > 0.1
    feats = {k: shower_features(*samples[k], geometry) for k in ("ref", "moved")}
    high = {k: high_level_inputs(feats[k], samples[k][1], geometry) for k in feats}
    moved = classifier_test(high["ref"], high["moved"], **kw)
    assert moved.auc > 0.9
    assert classifier_test(high["ref"], high["moved"], **kw) == moved  # seeded
    assert (moved.n_train, moved.n_validation, moved.n_test) == (3600, 1200, 1200)
