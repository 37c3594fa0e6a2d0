"""Campaign validation: a seeded random subset of a finished campaign against reference showers.

`validate(campaign)` runs after `finalize` when the job has a `validation:` block:

1. draws `events` event ids uniformly without replacement from the whole campaign with
   numpy's default_rng(seed) (a pure function of (seed, campaign events, events): the same seed
   validates the same events) and reads only those rows of only the shards that hold them
   (HDF5 chunks or Parquet row groups, farm.formats.shower_rows);
2. builds the reference: a seeded random subset of `reference_events` rows of the reference
   files, or with `simulator` two showers from farm's simulator (farm.data.shower_sim, the
   generator the model was trained on) at each validated event's incident energy, so that both
   reference halves of the evaluation see exactly the validated events' energies;
3. runs farm.evaluation's shower comparison (metrics beside their reference-vs-reference floors,
   plots, report) into <output>/validation/, checks the gates (the model version's `farm.gates`
   with the job's `validation.gates` over them) and writes <output>/validation.json; a
   point-cloud campaign's events and reference come from farm.campaign.points_validation (hits
   from farm.data.hit_sim for 'simulator') and farm.evaluation.points compares them (point
   features, the voxel projection's CaloChallenge features and AUCs);
4. logs the metrics and report to the model version's MLflow run (registry.log_evaluation) and
   tags the version farm.validation.<campaign>;
5. records the outcome, `validated`: pass | fail | ungated (no gates) | error (could not run), in
   status.json and summary.json.

A failed (or erroring) validation never touches the generated data; the campaign stays
`finished`. Rerun with `farm campaign validate ID`.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from farm import records, registry, store
from farm.campaign.points_validation import check_reference, read_point_events, reference_points
from farm.campaign.worker import shard_path
from farm.cards import ModelCard
from farm.data.shower_sim import energy_range, simulate_showers
from farm.errors import FarmError, root_cause
from farm.evaluation.gates import Gates, judge, parse_gates
from farm.evaluation.options import EvaluationOptions
from farm.evaluation.points import evaluate_points
from farm.evaluation.report import HEADLINE
from farm.evaluation.showers import evaluate_showers
from farm.formats.shower_rows import ShowerFile, ShowerSource, default_chunk_rows, read_file_rows
from farm.geometry import CaloGeometry, load_cell_geometry, load_geometry
from farm.records import CampaignRecord, MetricSummary, ValidationRecord
from farm.samples import ShowerSample
from farm.specs import SIMULATOR_REFERENCE, CampaignJob, CampaignValidation

VALIDATION_JSON = "validation.json"
VALIDATION_DIR = "validation"
ALWAYS_SHOWN = ("sep/e_ratio",)  # headline metrics besides report.HEADLINE


def check(
    job: CampaignJob, card: ModelCard, geometry: str, model: str, bounds: tuple[float, float]
) -> None:
    """Submit-time checks of a validation block: one FarmError line naming the problem."""
    v = job.validation
    if v is None:
        return
    if card.kind == "points":
        check_reference(job, card, load_cell_geometry(geometry), model, bounds)
        return
    geo = load_geometry(geometry)
    if v.reference == SIMULATOR_REFERENCE:
        source = card.data.source
        if source != "simulated_showers":
            raise FarmError(
                f"{job.name}: validation.reference: 'simulator' needs a model trained on "
                f"simulated showers, but {model} was trained on "
                f"{source or 'unrecorded'!s} data; give a reference URL instead"
            )
        lo, hi = energy_range(geo)
        if bounds[0] < lo * (1 - 1e-9) or bounds[1] > hi * (1 + 1e-9):
            raise FarmError(
                f"{job.name}: validation.reference: the simulator covers {lo:.4g}-{hi:.4g} MeV "
                f"for geometry {geo.name!r}, the conditions span {bounds[0]:.4g}-{bounds[1]:.4g}"
                " MeV; give a reference URL instead"
            )
        return
    ref = ShowerSource(v.reference, geo)
    if ref.geometry_name and ref.geometry_name != geo.name:
        raise FarmError(
            f"{job.name}: validation.reference {v.reference} holds showers of geometry "
            f"{ref.geometry_name!r}, the model generates {geo.name!r}"
        )
    if ref.n < 4:
        raise FarmError(f"{job.name}: validation.reference {v.reference} holds only {ref.n} events")


def sample_event_ids(n_events: int, k: int, seed: int) -> np.ndarray:
    """K distinct event ids of [0, n_events), sorted, drawn with default_rng(seed); O(k) memory."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_events, size=min(k, n_events), replace=False))


def read_events(campaign: CampaignRecord, event_ids: np.ndarray) -> ShowerSample:
    """The showers of sorted event ids, reading only the shards and rows that hold them."""
    plan = campaign.plan
    fmt = "h5" if "h5" in campaign.job.formats else "parquet"  # HDF5 chunks beat row groups
    geometry = load_geometry(campaign.geometry)
    n_voxels = geometry.n_voxels
    chunk = default_chunk_rows(n_voxels)
    showers = np.empty((len(event_ids), n_voxels), np.float32)
    e_inc = np.empty(len(event_ids), np.float64)
    shard_of = plan.shard_of(event_ids)
    done = 0
    for shard_id in np.unique(shard_of):
        shard = plan.shard(int(shard_id))
        wanted = np.zeros(shard.n, bool)
        wanted[event_ids[shard_of == shard_id] - shard.start] = True
        f = ShowerFile(campaign.path(shard_path(fmt, shard.id)), shard.n, n_voxels, "")
        for _, s, e in read_file_rows(f, wanted, chunk):
            showers[done : done + len(e)], e_inc[done : done + len(e)] = s, e
            done += len(e)
    if done != len(event_ids):
        raise FarmError(f"campaign {campaign.id}: read {done} of {len(event_ids)} events")
    return ShowerSample(showers, e_inc, geometry, {"campaign": campaign.id}, event_ids)


def reference_showers(
    spec: CampaignValidation, geometry: CaloGeometry, e_inc: np.ndarray
) -> ShowerSample:
    """The reference for validated events with energies e_inc."""
    if spec.reference == SIMULATOR_REFERENCE:
        energies = np.concatenate([e_inc, e_inc])
        rng = np.random.default_rng([spec.seed, 1])
        return ShowerSample(simulate_showers(geometry, energies, rng), energies, geometry)
    source = ShowerSource(spec.reference, geometry)
    n = min(spec.reference_events or 2 * len(e_inc), source.n)
    rows = np.sort(np.random.default_rng([spec.seed, 1]).choice(source.n, n, replace=False))
    showers, energies = source.take(rows)
    return ShowerSample(showers, energies, geometry, {"url": spec.reference})


def gates_for(model_tags: dict[str, str], spec: CampaignValidation) -> Gates:
    """The model version's gates with the validation block's own over them."""
    return {**parse_gates(model_tags.get("farm.gates")), **spec.gates}


def headline(metrics: dict[str, dict]) -> dict[str, MetricSummary]:
    """The headline metrics (value, error, floor) of an evaluation."""
    names = [n for n in (*HEADLINE, *ALWAYS_SHOWN) if n in metrics]
    keys = set(MetricSummary.model_fields)
    return {n: MetricSummary(**{k: v for k, v in metrics[n].items() if k in keys}) for n in names}


def validate(campaign: CampaignRecord | str, force: bool = False) -> ValidationRecord:
    """Validate a finished campaign (see the module docstring); returns validation.json's record.

    An existing pass/fail/ungated result is returned as is unless `force`.
    """
    campaign = records.load(campaign) if isinstance(campaign, str) else campaign
    cid, spec = campaign.id, campaign.job.validation
    if spec is None:
        raise FarmError(
            f"campaign {cid} has no validation block; compare it with "
            f"`farm evaluate {cid} REFERENCE` instead"
        )
    if records.read_summary(campaign) is None:
        raise FarmError(f"campaign {cid} is not complete yet (no summary.json); resume it first")
    url = campaign.path(VALIDATION_JSON)
    if not force and store.exists(url):
        doc = ValidationRecord.model_validate_json(store.read_text(url))
        if doc.validated != "error":
            _record(campaign, doc)  # finalize may have rewritten status and summary
            return doc
    k = spec.events or min(10_000, campaign.plan.events)
    model = campaign.model.key
    doc = ValidationRecord(
        validated="running",
        campaign=cid,
        model=model,
        reference=spec.reference,
        seed=spec.seed,
        url=VALIDATION_JSON,
        started=time.time(),
    )
    records.update_status(cid, validated="running")
    try:
        doc = _run(campaign, spec, doc, k)
    except Exception as exc:  # recorded, never raised: the data stays and is marked
        doc = doc.model_copy(
            update={"validated": "error", "error": f"{type(exc).__name__}: {root_cause(exc)}"}
        )
    doc = doc.model_copy(update={"finished": time.time()})
    records.write_json(url, doc)
    _record(campaign, doc)
    return doc


def _run(
    campaign: CampaignRecord, spec: CampaignValidation, doc: ValidationRecord, k: int
) -> ValidationRecord:
    """Read, compare, gate and log one validation."""
    ids = sample_event_ids(campaign.plan.events, k, spec.seed)
    report_dir = campaign.path(VALIDATION_DIR)
    labels = {
        "model": doc.model,
        "campaign": campaign.id,
        "generated": f"{len(ids):,} random events of campaign {campaign.id}",
        "reference": spec.reference,
    }
    options = EvaluationOptions(seed=spec.seed, classifier=spec.classifier, labels=labels)
    if campaign.kind == "points":
        cells = load_cell_geometry(campaign.geometry)
        points = read_point_events(campaign, ids, cells)
        reference = reference_points(spec, cells, points.e_inc)
        result = evaluate_points(reference, points, out_url=report_dir, options=options)
    else:
        geometry = load_geometry(campaign.geometry)
        generated = read_events(campaign, ids)
        reference = reference_showers(spec, geometry, generated.e_inc)
        result = evaluate_showers(
            reference, generated, geometry, out_url=report_dir, options=options
        )
    gates = gates_for(dict(registry.resolve(doc.model).tags), spec)
    judge(result, gates, hint=f"farm campaign validate {campaign.id}")
    result.write(report_dir)  # the report names the verdict
    doc = doc.model_copy(
        update=dict(
            validated=result.verdict,
            failures=result.failures,
            gates={k: g.model_dump(exclude_none=True) for k, g in gates.items()},
            events=len(ids),
            event_ids_sha256=hashlib.sha256(ids.astype(np.int64).tobytes()).hexdigest(),
            reference_events=len(reference),
            report=f"{VALIDATION_DIR}/report.html",
            headline=headline(result.metrics),
            metrics=result.metrics,
            details=result.details,
            notes=result.notes,
        )
    )
    return doc.model_copy(update={"logged": _log(doc, result.metrics, report_dir)})


def _log(doc: ValidationRecord, metrics: dict, report_dir: str) -> bool | str:
    """Metrics and report to the version's MLflow run, a farm.validation.<id> tag; True or why not."""
    try:
        mv = registry.log_evaluation(doc.model, metrics, report_dir)
        registry.client().set_model_version_tag(
            mv.name, mv.version, f"farm.validation.{doc.campaign}", doc.validated
        )
        return True
    except Exception as exc:  # the validation stands without the registry
        return f"not logged to MLflow: {type(exc).__name__}: {str(exc)[:300]}"


def _record(campaign: CampaignRecord, doc: ValidationRecord) -> None:
    """The headline into status.json and summary.json (rewritten atomically)."""
    short = doc.summary()
    records.update_status(campaign.id, validated=doc.validated, validation=short)
    summary = records.read_summary(campaign)
    if summary is not None:
        updated = summary.model_copy(update={"validation": short})
        records.write_json(campaign.path("summary.json"), updated)
