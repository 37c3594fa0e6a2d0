"""Submitting a campaign: every check before any work, the model version resolved once, recorded."""

from __future__ import annotations

import time

import torch

from farm import records, registry, store
from farm.allocator import allocator
from farm.campaign import validate
from farm.campaign.conditions import energy_bounds, pythia_config, shard_pythia_truth
from farm.cards import ModelCard, parse_card
from farm.data.events import pythia_version
from farm.errors import FarmError
from farm.formats.reader import read_truth_energies, read_truth_jets
from farm.generation import SamplerSettings, jet_sample, shower_sample
from farm.geometry import load_geometry
from farm.records import CampaignRecord, CampaignStatus, ModelVersionRef, TruthGenerator
from farm.samples import JET_POINT_FEATURES, EventSample
from farm.sharding import Plan
from farm.specs import CampaignJob


def submit(job: CampaignJob) -> CampaignRecord:
    """Validate everything before any work, resolve the model version once, store the campaign."""
    from models.config import parse_model_config

    allocator()  # a bad FARM_ALLOCATOR is refused here, before the campaign is stored
    mv = registry.resolve(job.model)
    ref = f"{mv.name}/{mv.version}"
    card = parse_card(registry.show(ref)["card"], ref)
    config = parse_model_config(card.config)
    process = config.process.build()
    sampler = job.sampler or config.sampler.name or process.default_sampler
    nfe = job.nfe or config.sampler.nfe
    try:
        process.check_sampler(sampler, nfe)
    except ValueError as exc:
        raise FarmError(f"{job.name}: {exc}") from None
    kind = card.kind
    if job.parquet_layout != "dense" and kind != "showers":
        raise FarmError(
            f"{job.name}: parquet_layout: {job.parquet_layout!r} is a layout of voxel showers, "
            f"but model {ref} generates {kind}; drop parquet_layout (or use 'dense')"
        )
    takes = {"jets": ("jet-truth",), "events": ("event-truth", "pythia")}
    d = job.conditions.distribution
    if d not in takes.get(kind, ()) and (kind in takes or any(d in t for t in takes.values())):
        want = {
            "jets": "jet-truth (a jets file)",
            "events": "event-truth (an events file) or pythia (truth generated in each shard)",
        }.get(kind, "an incident-energy distribution (discrete, log-uniform, uniform, file)")
        raise FarmError(
            f"{job.name}: conditions.distribution: model {ref} generates {kind} "
            f"and takes {want}, got {job.conditions.distribution!r}"
        )
    settings = SamplerSettings(sampler=sampler, nfe=nfe, options=dict(job.sampler_options))
    job = job.model_copy(update={"sampler": sampler, "nfe": nfe})
    if kind == "jets":
        _check_jet_truth(job, card, ref, settings)
        return _store(job, mv, None, kind)
    if kind == "events":
        truth_generator = _check_event_truth(job, card, ref)
        return _store(job, mv, None, kind, truth_generator)
    geometry = card.data.geometry
    if geometry is None:
        raise FarmError(f"model {ref} has no geometry in its model card")
    if kind == "points":
        return _check_points(job, card, ref, geometry, mv)
    load_geometry(geometry).check_voxels(card.dim, f"model {ref}")
    lo, hi = _energy_bounds(job, card, ref)
    if job.sampler_options:
        _check_sampler_options(
            ref,
            settings,
            lambda model: shower_sample(
                model, [lo], load_geometry(geometry), generator=_one(), settings=settings
            ),
        )
    validate.check(job, card, geometry, ref, (lo, hi))
    return _store(_with_validation_events(job), mv, geometry, kind)


def _with_validation_events(job: CampaignJob) -> CampaignJob:
    """The job with its validation block's event count resolved (recorded with the campaign)."""
    if job.validation is None:
        return job
    validation = job.validation.model_copy(update={"events": job.validation_events})
    return job.model_copy(update={"validation": validation})


def _one() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _check_sampler_options(ref: str, settings: SamplerSettings, generate) -> None:
    """Generate one event with the options before any work: a bad option fails here, not in shards."""
    model = registry.load(ref).model
    try:
        generate(model)
    except (TypeError, ValueError) as exc:
        raise FarmError(
            f"sampler_options {settings.options} for {settings.sampler!r}: {exc}"
        ) from None


def _check_points(job: CampaignJob, card: ModelCard, ref: str, geometry: str, mv):
    """A point-cloud campaign: Parquet only, trained energy range, validation reference; stored."""
    if list(job.formats) != ["parquet"]:
        raise FarmError(
            f"{job.name}: formats: model {ref} generates point-cloud showers of geometry "
            f"{geometry!r}, written as Parquet only, not voxels (got {', '.join(job.formats)})"
        )
    bounds = _energy_bounds(job, card, ref)
    validate.check(job, card, geometry, ref, bounds)
    return _store(_with_validation_events(job), mv, geometry, "points")


def _energy_bounds(job: CampaignJob, card: ModelCard, ref: str) -> tuple[float, float]:
    """(lo, hi) MeV of the campaign's energies; FarmError outside the trained range unless allowed."""
    is_file = job.conditions.distribution == "file"
    truth = read_truth_energies(job.conditions.url) if is_file else None
    lo, hi = energy_bounds(job.conditions, truth)
    trained = card.data.e_inc_range
    if not job.allow_out_of_range and card.outside_trained_range(lo, hi):
        raise FarmError(
            f"{job.name}: conditions span {lo:.4g}-{hi:.4g} MeV but model {ref} "
            f"was trained on {trained[0]:.4g}-{trained[1]:.4g} MeV (set allow_out_of_range: true "
            "to generate anyway)"
        )
    return lo, hi


def _check_jet_truth(
    job: CampaignJob, card: ModelCard, ref: str, settings: SamplerSettings
) -> None:
    """A jet campaign's truth file must exist and fit the model's constituent slots."""
    if job.validation is not None:
        raise FarmError(
            f"{job.name}: validation: campaign validation covers showers; validate jets with "
            "`farm evaluate CAMPAIGN_ID REFERENCE`"
        )
    truth = read_truth_jets(job.conditions.url)
    slots = card.dim // JET_POINT_FEATURES
    if truth.counts.max() > slots or truth.counts.min() < 1:
        raise FarmError(
            f"{job.conditions.url}: constituent counts {truth.counts.min()}.."
            f"{truth.counts.max()} do not fit model {ref} (1..{slots})"
        )
    if job.sampler_options:
        first = truth.rows([0])
        _check_sampler_options(
            ref,
            settings,
            lambda model: jet_sample(model, first, generator=_one(), settings=settings),
        )


PROBE_EVENTS = 16
"""Truth events of shard 0 a `distribution: pythia` campaign generates at submit to check."""


def _check_event_truth(job: CampaignJob, card: ModelCard, ref: str) -> TruthGenerator | None:
    """An events campaign: Parquet only; its events must fit the slots or carry the electron.

    Returns the truth generator of a `distribution: pythia` campaign (None for a file).
    """
    from farm.formats.reader import read_events

    if job.validation is not None or list(job.formats) != ["parquet"]:
        raise FarmError(
            f"{job.name}: model {ref} generates events: formats [parquet] only, no validation "
            "block (validate with `farm evaluate CAMPAIGN_ID REFERENCE`)"
        )
    electron = card.config.get("condition") == "scattered_electron"
    pythia, generator = job.conditions.pythia, None
    if pythia is None:
        truth = read_events(job.conditions.url)
    else:
        generator = _truth_generator(job, ref, electron)
        shard = Plan(job.events, job.shard_size, job.seed).shard(0)
        # shard 0's first events, exactly as its actor will generate them
        truth = shard_pythia_truth(pythia, shard, min(shard.n, PROBE_EVENTS))
    if electron:
        _check_electron(job, card, ref, truth)
    else:
        _check_truth_slots(job, ref, truth, card.cond_dim // 5)
    return generator


def _truth_generator(job: CampaignJob, ref: str, electron: bool) -> TruthGenerator:
    """What a `distribution: pythia` campaign records of its generator; bad settings: one line."""
    pythia = job.conditions.pythia
    if electron and pythia.process != "dis":
        raise FarmError(
            f"{job.name}: conditions.pythia.process: model {ref} is conditioned on the scattered "
            f"electron, which only process 'dis' has (allowed: dis), got {pythia.process!r}"
        )
    try:
        config = pythia_config(pythia, job.shard_size).to_dict()
    except FarmError as exc:
        raise FarmError(f"{job.name}: conditions.pythia: {exc}") from None
    config.pop("n_events")  # each shard's own size
    config.pop("detector")  # farm's synthetic reco is not made: the model's reco is the output
    return TruthGenerator(pythia8mc=pythia_version(), config=config)


def _check_truth_slots(job: CampaignJob, ref: str, truth: EventSample, slots: int) -> None:
    """Truth sets above the model's truth slots: refused in one line unless truncate."""
    try:
        truth.truth_inputs(slots, job.conditions.truncate)
    except FarmError as exc:
        if job.conditions.pythia is None:
            raise
        largest = int(truth.truth_counts.max())
        raise FarmError(
            f"{job.name}: conditions.truncate: Pythia {job.conditions.pythia.process} truth has "
            f"events of up to {largest} particles in the first {len(truth)} of shard 0, more "
            f"than model {ref}'s {slots} truth slots: set truncate: true (keeps the highest-pT "
            "ones) or tighten pythia.truth_pt_min / truth_eta_max"
        ) from exc


def _check_electron(job: CampaignJob, card: ModelCard, ref: str, truth: EventSample) -> None:
    """An electron-conditioned model: the file's electron columns, no truth slots to fit."""
    if job.conditions.truncate:
        raise FarmError(
            f"{job.name}: conditions.truncate: model {ref} is conditioned on the scattered "
            "electron, not on truth sets: there is nothing to truncate (drop truncate)"
        )
    truth.electron_inputs(bool(card.config.get("dis_kinematics")))  # missing columns: one line


def _store(
    job: CampaignJob,
    mv,
    geometry: str | None,
    kind: str,
    truth_generator: TruthGenerator | None = None,
) -> CampaignRecord:
    """Record a validated campaign (plan, resolved model version) and tag the model version."""
    campaign_id = records.new_id(job.name)
    if job.output:
        output = store.join(store.normalize(job.output), campaign_id)
    else:
        output = records.DEFAULT_OUTPUT
    campaign = CampaignRecord(
        id=campaign_id,
        job=job,
        output=output,
        kind=kind,
        geometry=geometry,
        model=ModelVersionRef(
            ref=job.model,
            name=mv.name,
            version=str(mv.version),
            source=mv.source,
            run_id=mv.run_id,
        ),
        plan=Plan(job.events, job.shard_size, job.seed),
        created=time.time(),
        truth_generator=truth_generator,
    )
    store.check_writable(campaign.output_url)
    records.save(campaign)
    status = CampaignStatus(shards_total=campaign.plan.n_shards, events_total=job.events)
    records.write_status(campaign_id, status)
    registry.client().set_model_version_tag(
        mv.name, mv.version, f"farm.campaign.{campaign_id}", campaign.output_url
    )
    return campaign
