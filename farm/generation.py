"""Samples from a loaded model in the data's own layout: showers (MeV) or JetNet-style jets.

Jet models (point clouds of (eta_rel, phi_rel, pt_rel), conditioned on [jet pT, count]) return
jets dicts as farm.formats.jets writes them: constituents pT-ordered with a mask column, and
jet_features [pt, eta, mass, n_constituents] with the mass computed from the generated
constituents and the conditioning jet pT (massless constituents, as for the reference).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from farm.errors import FarmError
from farm.evaluation.jet_features import jet_kinematics
from farm.specs import JET_POINT_FEATURES


def model_kind(card: dict[str, Any]) -> str:
    """'jets' or 'showers' from a model card (cards before jets existed are showers)."""
    return (card.get("data") or {}).get("kind", "showers")


def jets_from_model(
    model: Any,
    jet_pt: np.ndarray,
    jet_eta: np.ndarray,
    counts: np.ndarray,
    *,
    generator: torch.Generator | None = None,
    sampler: str | None = None,
    nfe: int | None = None,
    batch_size: int = 4096,
    autocast_dtype: torch.dtype | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Jets for conditions (jet pT GeV, jet eta, number of constituents) from a jet model."""
    n_points = model.dim // JET_POINT_FEATURES
    counts = np.asarray(counts).astype(np.int64).reshape(-1)
    if counts.min(initial=1) < 1 or counts.max(initial=1) > n_points:
        raise FarmError(
            f"constituent counts must lie in 1..{n_points}, got {counts.min()}..{counts.max()}"
        )
    cond = torch.from_numpy(
        np.stack([np.asarray(jet_pt).reshape(-1), counts], 1).astype(np.float32)
    )
    x = model.generate(
        cond,
        sampler=sampler,
        nfe=nfe,
        generator=generator,
        batch_size=batch_size,
        autocast_dtype=autocast_dtype,
        options=options,
    )
    points = x.cpu().numpy().reshape(len(counts), n_points, JET_POINT_FEATURES)
    mask = np.arange(n_points)[None, :] < counts[:, None]
    points[..., 2] = np.clip(points[..., 2], 0.0, None)  # pT fractions are non-negative
    points = np.where(mask[..., None], points, 0.0)
    order = np.argsort(-np.where(mask, points[..., 2], -np.inf), axis=1, kind="stable")
    points = np.take_along_axis(points, order[..., None], axis=1)
    constituents = np.concatenate([points, mask[..., None]], axis=-1).astype(np.float32)
    kin = jet_kinematics(constituents, mask, jet_pt=jet_pt, jet_eta=jet_eta)
    features = np.stack(
        [np.asarray(jet_pt).reshape(-1), np.asarray(jet_eta).reshape(-1), kin["mass"], counts], 1
    ).astype(np.float32)
    return {"constituents": constituents, "jet_features": features}


def jet_conditions(jets: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(jet pT, jet eta, kept constituent count) of reference jets: the truth a model is given."""
    counts = (jets["constituents"][:, :, 3] > 0).sum(1)
    return jets["jet_features"][:, 0], jets["jet_features"][:, 1], counts


def reference_sample(card: dict[str, Any], source: str, events: int | None, seed: int):
    """The reference events whose truth conditions a sample reproduces: the model's held-out test
    split (`source` = 'test', rebuilt from its card's data spec and split) or a file's events."""
    from pydantic import TypeAdapter

    from farm.data.geometry import load_geometry
    from farm.data.sources import JetDataset, ShowerDataset, load_dataset, split
    from farm.specs import DataSpec

    kind = model_kind(card)
    if source == "test":
        data_doc = (card.get("job") or {}).get("data")
        if data_doc is None:
            raise FarmError("the model card records no training data; give --conditions URL")
        data_spec = TypeAdapter(DataSpec).validate_python(data_doc)
        sample = split(load_dataset(data_spec), data_spec)["test"]
    elif kind == "jets":
        from farm.evaluation.evaluate import read_jet_sample

        jets = read_jet_sample(source)
        if "jet_features" not in jets:
            raise FarmError(f"{source}: jets have no jet_features (pT, eta) to condition on")
        sample = JetDataset(jets["constituents"], jets["jet_features"], {"url": source})
    else:
        from farm.evaluation.evaluate import read_showers

        geometry = load_geometry((card.get("data") or {}).get("geometry", "ds1-photons"))
        showers, e_inc, _ = read_showers(source, geometry)
        sample = ShowerDataset(showers, e_inc, geometry, {"url": source})
    if events is not None and events < len(sample):
        rng = np.random.default_rng(seed)
        sample = sample.subset(np.sort(rng.choice(len(sample), events, replace=False)))
    return sample


def generate_like(
    model: Any,
    card: dict[str, Any],
    reference: Any,
    *,
    seed: int = 0,
    sampler: str | None = None,
    nfe: int | None = None,
    batch_size: int = 4096,
):
    """A generated sample with the reference's truth conditions (E_inc, or jet pT/eta/count)."""
    from farm.data.sources import JetDataset, ShowerDataset

    generator = torch.Generator().manual_seed(seed)
    if model_kind(card) == "jets":
        jets = jets_from_model(
            model,
            *jet_conditions(reference.as_dict()),
            generator=generator,
            sampler=sampler,
            nfe=nfe,
            batch_size=batch_size,
        )
        return JetDataset(jets["constituents"], jets["jet_features"], {})
    e_inc = torch.from_numpy(np.asarray(reference.e_inc, np.float32).reshape(-1, 1))
    showers = model.generate(
        e_inc, sampler=sampler, nfe=nfe, generator=generator, batch_size=batch_size
    )
    bad = int((~torch.isfinite(showers)).sum())
    if bad:
        raise FarmError(f"the model produced {bad} non-finite voxel values")
    return ShowerDataset(showers.numpy(), reference.e_inc, reference.geometry, {})


def write_sample(url: str, sample: Any, meta: dict[str, Any] | None = None) -> str:
    """Write showers (CaloChallenge .h5 or farm .parquet) or jets (.h5 or .parquet) atomically."""
    if not url.endswith((".h5", ".hdf5", ".parquet")):
        raise FarmError(f"{url}: output must end in .h5, .hdf5 or .parquet")
    if sample.kind == "jets":
        from farm.formats.jets import write_jets

        return write_jets(url, sample.as_dict(), meta)
    if url.endswith(".parquet"):
        from farm.formats.showers_parquet import write_showers_parquet

        ids = np.arange(len(sample), dtype=np.int64)
        write_showers_parquet(
            url, sample.showers, sample.e_inc, ids, sample.geometry.name, extra_metadata=meta
        )
    else:
        from farm.formats.calochallenge import write_calochallenge

        write_calochallenge(url, sample.showers, sample.e_inc, sample.geometry)
    return url
