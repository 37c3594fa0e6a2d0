"""The classifier two-sample test follows the CaloChallenge protocol, on hand-computable cases."""

from __future__ import annotations

import numpy as np
import pytest

from farm.evaluation.classifier import _calibrate, _split, classifier_test

pytestmark = pytest.mark.filterwarnings("ignore::farm.evaluation.checks.SmallSampleWarning")


def test_split_is_balanced_60_20_20_with_reference_label_zero():
    ref, gen = np.zeros((100, 2)), np.ones((130, 2))
    parts = _split(ref, gen, (0.6, 0.2, 0.2), np.random.default_rng(0))
    assert [len(y) for _, y in parts] == [120, 40, 40]  # the larger class cut to 100
    for x, y in parts:
        assert y.sum() == len(y) / 2
        assert np.array_equal(x[:, 0], y)  # reference rows (zeros) carry label 0


def test_isotonic_calibration_on_the_validation_split():
    # isotonic fit of labels (0, 1, 0, 1) at scores (0.1, 0.2, 0.3, 0.4): (0, 1/2, 1/2, 1)
    p_val, y_val = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 1.0, 0.0, 1.0])
    calibrated = _calibrate(p_val, y_val, np.array([0.15, 0.25, 0.35, 0.9]))
    assert np.allclose(calibrated, [0.25, 0.5, 0.75, 1 - 1e-6])  # linear between, clipped


def test_separable_samples_score_one_and_identical_ones_stop_early():
    rng = np.random.default_rng(1)
    far = classifier_test(rng.normal(size=(2000, 2)), rng.normal(8.0, 1.0, (2000, 2)), epochs=5)
    assert far.auc == pytest.approx(1.0) and far.auc_raw == pytest.approx(1.0)
    assert far.jsd == pytest.approx(1.0, abs=1e-3)  # BCE -> 0: (ln 2 - BCE) / ln 2 -> 1 bit
    assert far.accuracy == 1.0
    same = classifier_test(
        rng.normal(size=(1000, 8)), rng.normal(size=(1000, 8)), epochs=40, patience=2
    )
    # noise: the validation loss stops improving, training stops `patience` epochs later
    assert same.epochs_trained < 40
    assert same.epochs_trained - same.best_epoch == 2
    # (isotonic calibration on 400 validation events overfits a little: the calibrated JSD of
    # identical samples comes out slightly negative, never clearly positive)
    assert abs(same.auc - 0.5) < 0.1 and same.jsd < 0.05
    raw = classifier_test(
        rng.normal(size=(500, 2)), rng.normal(size=(500, 2)), epochs=2, standardise=False
    )
    assert raw.n_train == 600 and raw.epochs_trained == 2
