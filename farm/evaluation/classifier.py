"""Classifier two-sample test as in the CaloChallenge 2022 (arXiv:2410.21611, code/evaluate.py).

An MLP learns to tell generated from reference events; its ROC AUC on held-out events is the
metric (0.5: indistinguishable). As in the challenge: equal class sizes, a fixed 60/20/20 split
into train / calibration (model selection by loss, isotonic calibration) / test, and the JSD
estimated from the test BCE, raw and after calibration. Inputs are standardised with train
statistics (the challenge fed raw inputs); the MLP is smaller by default (2 x 256).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.optimize import isotonic_regression
from scipy.stats import rankdata

from farm.evaluation.checks import check_pair, warn_small

MIN_N_CLASSIFIER = 10_000  # events per class for an AUC error below ~0.01


@dataclass(frozen=True)
class ClassifierResult:
    """Held-out test of a generated-vs-reference classifier."""

    auc: float
    auc_error: float
    auc_calibrated: float
    jsd: float
    jsd_calibrated: float
    accuracy: float
    best_epoch: int
    n_train: int
    n_test: int

    def to_dict(self) -> dict:
        return asdict(self)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank statistic (ties count one half)."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _bce(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _jsd(p: np.ndarray, y: np.ndarray) -> float:
    """JSD in bits from the BCE of a classifier (the challenge's (ln 2 - BCE) / ln 2)."""
    return (np.log(2.0) - _bce(p, y)) / np.log(2.0)


def _mlp(n_in: int, hidden: int, n_layers: int) -> torch.nn.Module:
    layers: list[torch.nn.Module] = [torch.nn.Linear(n_in, hidden), torch.nn.LeakyReLU()]
    for _ in range(n_layers - 1):
        layers += [torch.nn.Linear(hidden, hidden), torch.nn.LeakyReLU()]
    layers.append(torch.nn.Linear(hidden, 1))
    return torch.nn.Sequential(*layers)


def _predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 8192) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = [torch.sigmoid(model(x[i : i + batch])).squeeze(1) for i in range(0, len(x), batch)]
    return torch.cat(out).double().cpu().numpy()


def _calibrate(p_cal: np.ndarray, y_cal: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Isotonic regression of labels on scores fitted on the calibration split, applied to p."""
    order = np.argsort(p_cal, kind="stable")
    fitted = isotonic_regression(y_cal[order].astype(np.float64)).x
    return np.clip(np.interp(p, p_cal[order], fitted), 1e-6, 1 - 1e-6)


def classifier_test(
    reference: np.ndarray,
    generated: np.ndarray,
    seed: int = 0,
    hidden: int = 256,
    n_layers: int = 2,
    epochs: int = 30,
    batch_size: int = 512,
    lr: float = 1e-3,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    n_bootstrap: int = 100,
    device: str | None = None,
) -> ClassifierResult:
    """Train an MLP on reference (N, D) vs generated (M, D) inputs; test AUC, JSD, calibration.

    Inputs: low-level (shower_features.low_level_inputs: log10 E_inc, voxels / E_inc;
    jet_features.constituent_inputs) or high-level features. The larger sample is subsampled to
    the smaller. The epoch with the lowest calibration-split loss is kept. AUC error: bootstrap
    std over the test split. Recommended N, M >= 10,000 (>= 100,000 for DS2/DS3 voxels).
    """
    ref, gen = check_pair(reference, generated, ndim=2)
    rng = np.random.default_rng(seed)
    n = min(len(ref), len(gen))
    warn_small(n, MIN_N_CLASSIFIER, "classifier AUC")
    ref = ref[rng.permutation(len(ref))[:n]]
    gen = gen[rng.permutation(len(gen))[:n]]
    cuts = (np.cumsum(split)[:2] * n).astype(int)
    parts = []
    for lo, hi in ((0, cuts[0]), (cuts[0], cuts[1]), (cuts[1], n)):
        x = np.concatenate([ref[lo:hi], gen[lo:hi]])
        y = np.concatenate([np.zeros(hi - lo), np.ones(hi - lo)])
        parts.append((x, y))
    (x_tr, y_tr), (x_cal, y_cal), (x_te, y_te) = parts
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std[std == 0] = 1.0
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((x - mean) / std, dtype=torch.float32, device=dev)

    t_tr, t_cal, t_te = tensor(x_tr), tensor(x_cal), tensor(x_te)
    yt_tr = torch.as_tensor(y_tr, dtype=torch.float32, device=dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _mlp(x_tr.shape[1], hidden, n_layers).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    best = (np.inf, 0, {k: v.clone() for k, v in model.state_dict().items()})
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.as_tensor(rng.permutation(len(t_tr)), device=dev)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss = loss_fn(model(t_tr[idx]).squeeze(1), yt_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        cal_loss = _bce(_predict(model, t_cal), y_cal)
        if cal_loss < best[0]:
            best = (cal_loss, epoch, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    p_cal, p_te = _predict(model, t_cal), _predict(model, t_te)
    p_te_cal = _calibrate(p_cal, y_cal, p_te)
    auc = roc_auc(y_te, p_te)
    boots = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(y_te), len(y_te))
        boots.append(roc_auc(y_te[idx], p_te[idx]))
    return ClassifierResult(
        auc=auc,
        auc_error=float(np.nanstd(boots)),
        auc_calibrated=roc_auc(y_te, p_te_cal),
        jsd=float(_jsd(p_te, y_te)),
        jsd_calibrated=float(_jsd(p_te_cal, y_te)),
        accuracy=float(np.mean((p_te > 0.5) == y_te)),
        best_epoch=best[1],
        n_train=len(y_tr),
        n_test=len(y_te),
    )


def classifier_auc(
    reference: np.ndarray, generated: np.ndarray, seed: int = 0, **kwargs
) -> tuple[float, float]:
    """(test AUC, bootstrap error) of classifier_test; kwargs as classifier_test."""
    result = classifier_test(reference, generated, seed=seed, **kwargs)
    return result.auc, result.auc_error
