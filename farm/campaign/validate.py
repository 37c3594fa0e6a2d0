"""Campaign validation: a seeded random subset of a finished campaign against reference showers.

`validate(campaign)` runs after `finalize` when the job has a `validation:` block:

1. draws `events` event ids uniformly without replacement from the whole campaign with
   numpy's default_rng(seed) (a pure function of (seed, campaign events, events): the same seed
   validates the same events) and reads only those rows of only the shards that hold them
   (HDF5 chunks or Parquet row groups, farm.evaluation.streaming.read_file_rows);
2. builds the reference: a seeded random subset of `reference_events` rows of the reference
   files, or with `simulator` two showers from farm's simulator (farm.data.shower_sim, the
   generator the model was trained on) at each validated event's incident energy, so that both
   reference halves of the evaluation see exactly the validated events' energies;
3. runs farm.evaluation.evaluate_showers (metrics beside their reference-vs-reference floors,
   plots, report) into <output>/validation/, checks the gates (the model version's `farm.gates`
   with the job's `validation.gates` over them) and writes <output>/validation.json;
4. logs the metrics and report to the model version's MLflow run (registry.log_evaluation, which
   also records them for the promotion gates) and tags the version farm.validation.<campaign>;
5. records the outcome, `validated`: pass | fail | ungated (no gates) | error (could not run), in
   status.json and summary.json.

A failed (or erroring) validation never touches the generated data; the campaign stays
`finished`. Rerun with `farm campaign validate ID`.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np

from farm import registry, store
from farm.campaign import records
from farm.campaign.plan import Plan
from farm.errors import FarmError
from farm.specs import SIMULATOR_REFERENCE, CampaignJob, CampaignValidation

VALIDATION_JSON = "validation.json"
VALIDATION_DIR = "validation"
ALWAYS_SHOWN = ("sep/e_ratio",)  # headline metrics besides report.HEADLINE


def check(
    job: CampaignJob, card: dict[str, Any], geometry: str, model: str, bounds: tuple[float, float]
) -> None:
    """Submit-time checks of a validation block: one FarmError line naming the problem."""
    from farm.data.geometry import load_geometry

    v = job.validation
    if v is None:
        return
    geo = load_geometry(geometry)
    if v.reference == SIMULATOR_REFERENCE:
        source = card.get("data", {}).get("source")
        if source != "simulated_showers":
            raise FarmError(
                f"{job.name}: validation.reference: 'simulator' needs a model trained on "
                f"simulated showers, but {model} was trained on "
                f"{source or 'unrecorded'!s} data; give a reference URL instead"
            )
        from farm.data.shower_sim import energy_range

        lo, hi = energy_range(geo)
        if bounds[0] < lo * (1 - 1e-9) or bounds[1] > hi * (1 + 1e-9):
            raise FarmError(
                f"{job.name}: validation.reference: the simulator covers {lo:.4g}-{hi:.4g} MeV "
                f"for geometry {geo.name!r}, the conditions span {bounds[0]:.4g}-{bounds[1]:.4g}"
                " MeV; give a reference URL instead"
            )
        return
    from farm.evaluation.streaming import ShowerSource

    ref = ShowerSource(v.reference, geo)
    if ref.geometry_name and ref.geometry_name != geo.name:
        raise FarmError(
            f"{job.name}: validation.reference {v.reference} holds showers of geometry "
            f"{ref.geometry_name!r}, the model generates {geo.name!r}"
        )
    if ref.n < 4:
        raise FarmError(f"{job.name}: validation.reference {v.reference} holds only {ref.n} events")


def sample_event_ids(n_events: int, k: int, seed: int) -> np.ndarray:
    """k distinct event ids of [0, n_events), sorted, drawn with default_rng(seed); O(k) memory."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_events, size=min(k, n_events), replace=False))


def read_events(campaign: dict[str, Any], event_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(showers, e_inc) of sorted event ids, reading only the shards and rows that hold them."""
    from farm.campaign.worker import shard_url
    from farm.data.geometry import load_geometry
    from farm.evaluation.streaming import ShowerFile, default_chunk_rows, read_file_rows

    plan = Plan(**campaign["plan"])
    formats = campaign["job"]["formats"]
    fmt = "h5" if "h5" in formats else "parquet"  # HDF5 chunks are finer than row groups
    n_voxels = load_geometry(campaign["geometry"]).n_voxels
    chunk = default_chunk_rows(n_voxels)
    showers = np.empty((len(event_ids), n_voxels), np.float32)
    e_inc = np.empty(len(event_ids), np.float64)
    shard_of = event_ids // plan.shard_size
    done = 0
    for shard_id in np.unique(shard_of):
        shard = plan.shard(int(shard_id))
        local = event_ids[shard_of == shard_id] - shard.start
        wanted = np.zeros(shard.n, bool)
        wanted[local] = True
        f = ShowerFile(shard_url(campaign["output"], fmt, shard.id), shard.n, n_voxels, "")
        for _, s, e in read_file_rows(f, wanted, chunk):
            showers[done : done + len(e)], e_inc[done : done + len(e)] = s, e
            done += len(e)
    if done != len(event_ids):
        raise FarmError(f"campaign {campaign['id']}: read {done} of {len(event_ids)} events")
    return showers, e_inc


def reference_showers(
    spec: CampaignValidation, geometry, e_inc: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """(showers, e_inc, events) of the reference for validated events with energies e_inc."""
    if spec.reference == SIMULATOR_REFERENCE:
        from farm.data.shower_sim import simulate_showers

        energies = np.concatenate([e_inc, e_inc])
        rng = np.random.default_rng([spec.seed, 1])
        return simulate_showers(geometry, energies, rng), energies, len(energies)
    from farm.evaluation.streaming import ShowerSource

    source = ShowerSource(spec.reference, geometry)
    n = min(spec.reference_events or 2 * len(e_inc), source.n)
    rows = np.sort(np.random.default_rng([spec.seed, 1]).choice(source.n, n, replace=False))
    showers, energies = source.take(rows)
    return showers, energies, n


def gates_for(model_tags: dict[str, str], spec: CampaignValidation) -> dict[str, dict]:
    """The model version's gates with the validation block's own over them."""
    gates = json.loads(model_tags.get("farm.gates", "{}"))
    gates.update({k: g.model_dump(exclude_none=True) for k, g in spec.gates.items()})
    return gates


def _headline(metrics: dict[str, dict]) -> dict[str, dict]:
    from farm.evaluation.report import HEADLINE

    names = [n for n in (*HEADLINE, *ALWAYS_SHOWN) if n in metrics]
    keys = ("value", "error", "floor", "floor_error")
    return {n: {k: metrics[n][k] for k in keys if k in metrics[n]} for n in names}


def _update_status(campaign_id: str, **fields: Any) -> None:
    status = records.read_status(campaign_id)
    status.update(fields)
    status.pop("updated", None)
    records.write_status(campaign_id, status)


def short(doc: dict[str, Any]) -> dict[str, Any]:
    """What status.json and summary.json keep of a validation."""
    keys = ("validated", "events", "reference", "failures", "error", "url", "report", "headline")
    return {k: doc[k] for k in keys if k in doc}


def validate(campaign: dict[str, Any] | str, force: bool = False) -> dict[str, Any]:
    """Validate a finished campaign (see the module docstring); returns validation.json's content.

    An existing pass/fail/ungated result is returned as is unless `force`.
    """
    from farm.data.geometry import load_geometry
    from farm.evaluation.evaluate import evaluate_showers

    campaign = records.load(campaign) if isinstance(campaign, str) else campaign
    cid, output = campaign["id"], campaign["output"]
    if not campaign["job"].get("validation"):
        raise FarmError(
            f"campaign {cid} has no validation block; compare it with "
            f"`farm evaluate {cid} REFERENCE` instead"
        )
    if not store.exists(store.join(output, "summary.json")):
        raise FarmError(f"campaign {cid} is not complete yet (no summary.json); resume it first")
    spec = CampaignValidation.model_validate(campaign["job"]["validation"])
    url = store.join(output, VALIDATION_JSON)
    if not force and store.exists(url):
        doc = json.loads(store.read_text(url))
        if doc.get("validated") != "error":
            _record(campaign, doc)  # finalize may have rewritten status and summary
            return doc
    plan = Plan(**campaign["plan"])
    k = spec.events or min(10_000, plan.events)
    model = f"{campaign['model']['name']}/{campaign['model']['version']}"
    report_dir = store.join(output, VALIDATION_DIR)
    doc: dict[str, Any] = {
        "campaign": cid,
        "model": model,
        "reference": spec.reference,
        "seed": spec.seed,
        "url": url,
        "started": time.time(),
    }
    _update_status(cid, validated="running")
    try:
        geometry = load_geometry(campaign["geometry"])
        ids = sample_event_ids(plan.events, k, spec.seed)
        generated = read_events(campaign, ids)
        ref_s, ref_e, n_ref = reference_showers(spec, geometry, generated[1])
        result = evaluate_showers(
            (ref_s, ref_e),
            generated,
            geometry,
            out_url=report_dir,
            seed=spec.seed,
            classifier=spec.classifier,
        )
        mv = registry.resolve(model)
        gates = gates_for(dict(mv.tags), spec)
        tags = {"farm.gates": json.dumps(gates)}
        tags.update({f"eval.{n}": repr(m["value"]) for n, m in result.metrics.items()})
        failures = registry.gate_failures(tags)
    except Exception as exc:  # recorded, never raised: the data stays and is marked
        from farm.campaign.run import root_cause

        doc.update(validated="error", error=f"{type(exc).__name__}: {root_cause(exc)}")
        doc["finished"] = time.time()
        store.write_text(url, json.dumps(doc, indent=2, default=float))
        _record(campaign, doc)
        return doc
    doc.update(
        validated="fail" if failures else ("pass" if gates else "ungated"),
        failures=failures,
        gates=gates,
        events=len(ids),
        event_ids_sha256=hashlib.sha256(ids.astype(np.int64).tobytes()).hexdigest(),
        reference_events=int(n_ref),
        report=store.join(report_dir, "report.html"),
        headline=_headline(result.metrics),
        metrics=result.metrics,
        details=result.details,
        notes=result.notes,
    )
    doc["logged"] = _log(model, cid, doc, result.metrics, report_dir)
    doc["finished"] = time.time()
    store.write_text(url, json.dumps(doc, indent=2, default=float))
    _record(campaign, doc)
    return doc


def _log(model: str, cid: str, doc: dict, metrics: dict, report_dir: str) -> bool | str:
    """Metrics and report to the version's MLflow run, a farm.validation.<id> tag; True or why not."""
    try:
        mv = registry.log_evaluation(model, metrics, report_dir)
        registry.client().set_model_version_tag(
            mv.name, mv.version, f"farm.validation.{cid}", doc["validated"]
        )
        return True
    except Exception as exc:  # the validation stands without the registry
        return f"not logged to MLflow: {type(exc).__name__}: {str(exc)[:300]}"


def _record(campaign: dict[str, Any], doc: dict[str, Any]) -> None:
    """The headline into status.json and summary.json (rewritten atomically)."""
    cid, output = campaign["id"], campaign["output"]
    _update_status(cid, validated=doc["validated"], validation=short(doc))
    summary_url = store.join(output, "summary.json")
    if store.exists(summary_url):
        summary = json.loads(store.read_text(summary_url))
        summary["validation"] = short(doc)
        store.with_retries(
            lambda: store.write_text(summary_url, json.dumps(summary, indent=2, default=float)),
            f"writing {summary_url}",
        )
