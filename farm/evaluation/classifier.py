"""Classifier two-sample test as in the CaloChallenge 2022 (arXiv:2410.21611, code/evaluate.py).

An MLP learns to tell generated from reference events; its ROC AUC on held-out events is the
metric (0.5: indistinguishable). The challenge's protocol: equal class sizes; a 60/20/20 split
into train / validation / test; the epoch that does best on the validation split is kept; the
output is calibrated by isotonic regression fitted on the validation split, and the reported AUC
and JSD (from the BCE, (ln 2 - BCE) / ln 2) are those of the calibrated output on the test split.
Inputs are the challenge's scaled features (shower_features.low_level_inputs: log10 E_inc and
voxel / E_inc; high_level_inputs), then, unlike the challenge, z-scored with train statistics
(`standardise`; an affine map the first layer could learn, but without it a 2 x 256 MLP on CPU
budgets sees far less: docs/validation.md). Other differences: the epoch is chosen by validation
loss (the challenge: accuracy) and training stops after `patience` epochs without a lower one
(the challenge trains all epochs); the MLP is smaller by default (2 x 256, lr 1e-3, at most 30
epochs, against the challenge's 3 x 512, lr 2e-4, 50 epochs).
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
    """Held-out test of a generated-vs-reference classifier (the challenge's reported numbers).

    auc, jsd, accuracy: of the calibrated output on the test split; *_raw: before calibration.
    """

    auc: float
    auc_error: float
    auc_raw: float
    jsd: float
    jsd_raw: float
    accuracy: float
    best_epoch: int
    epochs_trained: int
    n_train: int
    n_validation: int
    n_test: int

    def to_dict(self) -> dict:
        """The fields as a plain dict (for JSON reports)."""
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
    """Binary cross-entropy of probabilities p for labels y (clipped away from 0 and 1)."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _jsd(p: np.ndarray, y: np.ndarray) -> float:
    """JSD in bits from the BCE of a classifier (the challenge's (ln 2 - BCE) / ln 2)."""
    return (np.log(2.0) - _bce(p, y)) / np.log(2.0)


def _mlp(n_in: int, hidden: int, n_layers: int) -> torch.nn.Module:
    """LeakyReLU MLP with n_layers hidden layers and one logit out (the challenge's DNN)."""
    layers: list[torch.nn.Module] = [torch.nn.Linear(n_in, hidden), torch.nn.LeakyReLU()]
    for _ in range(n_layers - 1):
        layers += [torch.nn.Linear(hidden, hidden), torch.nn.LeakyReLU()]
    layers.append(torch.nn.Linear(hidden, 1))
    return torch.nn.Sequential(*layers)


def _predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 8192) -> np.ndarray:
    """Sigmoid outputs of the model on x, in batches, as float64 numpy."""
    model.eval()
    with torch.no_grad():
        out = [torch.sigmoid(model(x[i : i + batch])).squeeze(1) for i in range(0, len(x), batch)]
    return torch.cat(out).double().cpu().numpy()


def _calibrate(p_val: np.ndarray, y_val: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Isotonic regression of labels on scores fitted on the validation split, applied to p.

    Linear between the fitted points, clipped to [1e-6, 1 - 1e-6], as the challenge's.
    """
    order = np.argsort(p_val, kind="stable")
    fitted = isotonic_regression(y_val[order].astype(np.float64)).x
    return np.clip(np.interp(p, p_val[order], fitted), 1e-6, 1 - 1e-6)


def _split(
    ref: np.ndarray, gen: np.ndarray, split: tuple[float, float, float], rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Equal-size classes (the larger subsampled), split into (x, y) train / validation / test.

    Reference events have label 0, generated ones label 1.
    """
    n = min(len(ref), len(gen))
    ref = ref[rng.permutation(len(ref))[:n]]
    gen = gen[rng.permutation(len(gen))[:n]]
    cuts = (np.cumsum(split)[:2] * n).astype(int)
    parts = []
    for lo, hi in ((0, cuts[0]), (cuts[0], cuts[1]), (cuts[1], n)):
        x = np.concatenate([ref[lo:hi], gen[lo:hi]])
        y = np.concatenate([np.zeros(hi - lo), np.ones(hi - lo)])
        parts.append((x, y))
    return parts


@dataclass(frozen=True)
class _Fit:
    """A trained classifier: the model at its best epoch, that epoch, and the epochs run."""

    model: torch.nn.Module
    best_epoch: int
    epochs_trained: int


def _fit(
    t_tr: torch.Tensor,
    y_tr: torch.Tensor,
    t_val: torch.Tensor,
    y_val: np.ndarray,
    rng: np.random.Generator,
    model: torch.nn.Module,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int | None,
) -> _Fit:
    """Adam on the BCE, keeping the epoch of lowest validation BCE (early stopping).

    Stops after `patience` epochs without a lower validation BCE; None trains all epochs.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    best = (np.inf, 0, {k: v.clone() for k, v in model.state_dict().items()})
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.as_tensor(rng.permutation(len(t_tr)), device=t_tr.device)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss = loss_fn(model(t_tr[idx]).squeeze(1), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val_loss = _bce(_predict(model, t_val), y_val)
        if val_loss < best[0]:
            best = (val_loss, epoch, {k: v.clone() for k, v in model.state_dict().items()})
        elif patience is not None and epoch - best[1] >= patience:
            break
    model.load_state_dict(best[2])
    return _Fit(model, best[1], epoch)


def _bootstrap_auc(
    y: np.ndarray, p: np.ndarray, rng: np.random.Generator, n_bootstrap: int
) -> float:
    """Bootstrap standard deviation of the AUC over the test events."""
    boots = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(y), len(y))
        boots.append(roc_auc(y[idx], p[idx]))
    return float(np.nanstd(boots))


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
    patience: int | None = 5,
    standardise: bool = True,
) -> ClassifierResult:
    """Train an MLP on reference (N, D) vs generated (M, D) inputs; calibrated test AUC and JSD.

    The CaloChallenge protocol (module docstring): train / validation / test split, the epoch of
    lowest validation loss kept (early stopping after `patience` epochs without improvement),
    isotonic calibration on the validation split, AUC / JSD / accuracy of the calibrated output
    on the test split. Inputs (the challenge's scaling: shower_features.low_level_inputs,
    high_level_inputs; jet_features.constituent_inputs) are z-scored with train statistics
    unless `standardise` is False. The larger sample is subsampled to the smaller. AUC error: bootstrap std over the test split.
    Recommended N, M >= 10,000 (>= 100,000 for DS2/DS3 voxels).
    """
    ref, gen = check_pair(reference, generated, ndim=2)
    rng = np.random.default_rng(seed)
    warn_small(min(len(ref), len(gen)), MIN_N_CLASSIFIER, "classifier AUC")
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = _split(ref, gen, split, rng)
    mean, std = np.zeros(x_tr.shape[1]), np.ones(x_tr.shape[1])
    if standardise:
        mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
        std[std == 0] = 1.0
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((x - mean) / std, dtype=torch.float32, device=dev)

    t_tr, t_val, t_te = tensor(x_tr), tensor(x_val), tensor(x_te)
    yt_tr = torch.as_tensor(y_tr, dtype=torch.float32, device=dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _mlp(x_tr.shape[1], hidden, n_layers).to(dev)
    fit = _fit(t_tr, yt_tr, t_val, y_val, rng, model, epochs, batch_size, lr, patience)
    p_val, p_te = _predict(fit.model, t_val), _predict(fit.model, t_te)
    p_te_cal = _calibrate(p_val, y_val, p_te)
    return ClassifierResult(
        auc=roc_auc(y_te, p_te_cal),
        auc_error=_bootstrap_auc(y_te, p_te_cal, rng, n_bootstrap),
        auc_raw=roc_auc(y_te, p_te),
        jsd=float(_jsd(p_te_cal, y_te)),
        jsd_raw=float(_jsd(p_te, y_te)),
        accuracy=float(np.mean((p_te_cal > 0.5) == y_te)),
        best_epoch=fit.best_epoch,
        epochs_trained=fit.epochs_trained,
        n_train=len(y_tr),
        n_validation=len(y_val),
        n_test=len(y_te),
    )


def classifier_auc(
    reference: np.ndarray, generated: np.ndarray, seed: int = 0, **kwargs
) -> tuple[float, float]:
    """(calibrated test AUC, bootstrap error) of classifier_test; kwargs as classifier_test."""
    result = classifier_test(reference, generated, seed=seed, **kwargs)
    return result.auc, result.auc_error
