"""Reference events: Pythia 8 truth sets, farm's synthetic particle-flow reco (docs/events.md).

One shard is a pure function of (config, seed): `generate_events`; `generate_events_sharded` runs
shards as Ray tasks (farm.sharding), each committing its own Parquet file, so runs resume.

Processes:
- qcd:   pp at 13.6 TeV, HardQCD:all, pT-hat window (default 100 GeV - open);
- ttbar: pp at 13.6 TeV, Top:gg2ttbar and qqbar2ttbar, all decays (default pT-hat from 0);
- dis:   ep neutral-current DIS, 18 GeV electrons on 275 GeV protons, Q^2 > q2_min (10 GeV^2),
         as in Pythia's DIS example (dipole recoil, no lepton PDF, no QED shower off leptons).
Truth = stable visible final-state particles with pT > truth_pt_min and |eta| < truth_eta_max.
DIS events also store Q^2, x, y and the scattered electron (`scattered_electron`) per event.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from dataclasses import dataclass

import numpy as np

from farm import store
from farm.data.detector import DETECTORS, respond
from farm.data.jets import check_seed, make_pythia
from farm.errors import FarmError
from farm.samples import EventSample
from farm.sharding import Plan, Shard, check_output_record, run_shards

PP = {"qcd": ["HardQCD:all = on"], "ttbar": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"]}
DIS = [
    "Beams:frameType = 2",
    "Beams:idA = 2212",
    "Beams:idB = 11",
    "WeakBosonExchange:ff2ff(t:gmZ) = on",
    "SpaceShower:dipoleRecoil = on",
    "PDF:lepton = off",
    "TimeShower:QEDshowerByL = off",
]
PROCESSES = (*PP, "dis")
DEFAULTS = {  # process -> (pT-hat min GeV, truth pT min GeV, truth |eta| max, detector)
    "qcd": (100.0, 0.1, 5.0, "lhc"),
    "ttbar": (0.0, 0.1, 5.0, "lhc"),
    "dis": (0.0, 0.05, 4.5, "eic"),
}
EVENT_BATCH = 64  # events per detector call (fixed: part of what a seed reproduces)
DETECTOR_STREAM = 0x64657465  # numpy stream of the detector response: default_rng([seed, this])


@dataclass(frozen=True)
class EventGenConfig:
    """What to generate; None picks the process default (`DEFAULTS`)."""

    process: str
    n_events: int
    pt_hat_min: float | None = None
    pt_hat_max: float | None = None
    sqrt_s: float = 13600.0
    electron_energy: float = 18.0
    proton_energy: float = 275.0
    q2_min: float = 10.0
    mpi: bool = True
    truth_pt_min: float | None = None
    truth_eta_max: float | None = None
    detector: str | None = None

    def __post_init__(self) -> None:
        """Fill process defaults; refuse unknown processes and empty windows in one line."""
        if self.process not in PROCESSES:
            raise FarmError(f"unknown event process {self.process!r}; allowed: qcd, ttbar, dis")
        pt_hat, pt_min, eta_max, det = DEFAULTS[self.process]
        for name, value in (
            ("pt_hat_min", pt_hat),
            ("truth_pt_min", pt_min),
            ("truth_eta_max", eta_max),
            ("detector", det),
        ):
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.detector not in DETECTORS:
            raise FarmError(f"unknown detector {self.detector!r}; allowed: {', '.join(DETECTORS)}")
        if self.n_events < 0:
            raise FarmError(f"n_events must be >= 0, got {self.n_events}")
        if self.pt_hat_max is not None and not 0 <= self.pt_hat_min < self.pt_hat_max:
            raise FarmError(
                f"pT-hat window must satisfy 0 <= min < max, got [{self.pt_hat_min}, "
                f"{self.pt_hat_max}] GeV"
            )
        if self.q2_min <= 0 or self.truth_eta_max <= 0 or self.truth_pt_min < 0:
            raise FarmError("need q2_min > 0, truth_eta_max > 0 and truth_pt_min >= 0")

    def to_dict(self) -> dict:
        """The config as a plain dict (file metadata and the output record)."""
        return dataclasses.asdict(self)


def pythia_settings(config: EventGenConfig, seed: int) -> list[str]:
    """The exact Pythia readString lines for a shard (recorded in file metadata)."""
    if config.process == "dis":
        beams = [
            *DIS,
            f"Beams:eA = {float(config.proton_energy)}",
            f"Beams:eB = {float(config.electron_energy)}",
            f"PhaseSpace:Q2Min = {float(config.q2_min)}",
        ]
    else:
        hi = -1.0 if config.pt_hat_max is None else float(config.pt_hat_max)
        beams = [
            f"Beams:eCM = {float(config.sqrt_s)}",
            *PP[config.process],
            f"PhaseSpace:pTHatMin = {float(config.pt_hat_min)}",
            f"PhaseSpace:pTHatMax = {hi}",
        ]
    return [
        *beams,
        f"PartonLevel:MPI = {'on' if config.mpi else 'off'}",
        "Random:setSeed = on",
        f"Random:seed = {check_seed(seed)}",
        "Print:quiet = on",
        "Next:numberCount = 0",
    ]


def pythia_version() -> str:
    """The installed pythia8mc version (what a seed reproduces bit for bit with)."""
    return importlib.metadata.version("pythia8mc")


def truth_metadata(config: EventGenConfig, seed: int) -> dict:
    """Provenance of a shard's truth: Pythia version, config, seed and exact Pythia settings."""
    return {
        "generator": "Pythia 8",
        "pythia8mc": pythia_version(),
        "config": config.to_dict(),
        "pythia_seed": int(seed),
        "pythia_settings": pythia_settings(config, seed),
    }


def generator_metadata(config: EventGenConfig, seed: int) -> dict:
    """Provenance of a shard: generator version, config, seed, Pythia settings, detector."""
    return truth_metadata(config, seed) | {
        "generator": "Pythia 8 + farm.data.detector (synthetic particle flow)",
        "detector": DETECTORS[config.detector].to_dict(),
    }


def truth_particles(event, pt_min: float, eta_max: float) -> np.ndarray:
    """(n, 5) float64 [pt, eta, phi, pdg, charge] of stable visible particles inside the cuts."""
    rows = [
        (p.pT(), p.eta(), p.phi(), p.id(), p.charge())
        for p in event
        if p.isFinal() and p.isVisible() and p.pT() > pt_min and abs(p.eta()) < eta_max
    ]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def _minkowski(a, b) -> float:
    return a[3] * b[3] - a[0] * b[0] - a[1] * b[1] - a[2] * b[2]


def dis_kinematics(process) -> tuple[float, float, float]:
    """(Q^2, x, y) from the hard process: q = k - k', Q^2 = -q^2, x = Q^2 / 2P.q, y = P.q / P.k."""
    p4 = {}
    for i in range(process.size()):
        p = process[i]
        key = {(-12, 2212): "P", (-21, 11): "k", (23, 11): "k'"}.get((p.status(), p.idAbs()))
        if key and key not in p4:
            p4[key] = (p.px(), p.py(), p.pz(), p.e())
    P, k, k2 = p4["P"], p4["k"], p4["k'"]
    q = tuple(a - b for a, b in zip(k, k2, strict=True))
    q2 = -_minkowski(q, q)
    pq = _minkowski(P, q)
    return q2, q2 / (2 * pq), pq / _minkowski(P, k)


def scattered_electron(event) -> tuple[float, float, float, float]:
    """(E GeV, pT GeV, eta, phi) of the scattered electron, from the generator record.

    The outgoing lepton of the hard process (|status| 23, |id| 11, the k' of `dis_kinematics`)
    followed to its last copy (`iBotCopyId`: after recoil boosts; with farm's settings, no QED
    shower off leptons, it is the final-state electron). Lab frame, proton along +z.
    """
    for i in range(event.size()):
        p = event[i]
        if abs(p.status()) == 23 and p.idAbs() == 11:
            last = event[p.iBotCopyId()]
            if not last.isFinal():
                raise FarmError(f"scattered electron (record entry {i}) has no final copy")
            return last.e(), last.pT(), last.eta(), last.phi()
    raise FarmError("no outgoing hard-process electron in a DIS event record")


DIS_COLUMNS = ("q2", "x_bj", "y_inel", "electron_e", "electron_pt", "electron_eta", "electron_phi")
"""Per-event DIS columns, in the order `generate_events` collects them."""


def _met_ht(counts: np.ndarray, pt: np.ndarray, phi: np.ndarray):
    """Per event (missing px, missing py, scalar sum pT) of a flat set (farm.generation.events)."""
    from farm.kinematics import met_ht

    return met_ht(counts, pt, phi)


def build_sample(truths: list[np.ndarray], index: np.ndarray, dis: np.ndarray | None, det, rng):
    """An EventSample from per-event truth arrays: the detector response in batches."""
    counts = np.array([len(t) for t in truths], dtype=np.int64)
    flat = np.concatenate(truths) if truths else np.zeros((0, 5))
    truth = {
        "pt": flat[:, 0], "eta": flat[:, 1], "phi": flat[:, 2],
        "pdg": flat[:, 3].astype(np.int32), "charge": flat[:, 4].astype(np.int8),
    }  # fmt: skip
    owner = np.repeat(np.arange(len(counts)), counts)
    parts = []
    for start in range(0, max(len(counts), 1), EVENT_BATCH):
        sel = (owner >= start) & (owner < start + EVENT_BATCH)
        parts.append(
            respond({"event": owner[sel]} | {k: v[sel] for k, v in truth.items()}, det, rng)
        )
    reco = {
        k: np.concatenate([p[k] for p in parts]) for k in ("pt", "eta", "phi", "class", "charge")
    }
    reco_event = np.concatenate([p["event"] for p in parts]) if parts else np.zeros(0, np.int64)
    reco_counts = np.bincount(reco_event, minlength=len(counts)).astype(np.int64)
    mx, my, ht = _met_ht(reco_counts, reco["pt"], reco["phi"])
    tx, ty, tht = _met_ht(counts, truth["pt"], truth["phi"])
    event = {
        "event_index": index, "met_x": mx, "met_y": my, "ht": ht,
        "truth_met_x": tx, "truth_met_y": ty, "truth_ht": tht,
    }  # fmt: skip
    if dis is not None:
        event |= {name: dis[:, j] for j, name in enumerate(DIS_COLUMNS)}
    return EventSample(truth, counts, reco, reco_counts, event, np.arange(len(counts)))


def generate_events(config: EventGenConfig, seed: int) -> EventSample:
    """One shard of `config.n_events` events, truth and reco; the same seed gives the same bits."""
    seed = check_seed(seed)
    det = DETECTORS[config.detector]
    rng = np.random.default_rng([seed, DETECTOR_STREAM])
    pythia = make_pythia(pythia_settings(config, seed), config.process) if config.n_events else None
    truths, index, dis = [], [], []
    n_tried = 0
    while len(truths) < config.n_events:
        if n_tried >= 10 * config.n_events + 100:
            raise FarmError(f"Pythia failed on {n_tried - len(truths)} of {n_tried} events")
        n_tried += 1
        if not pythia.next():
            continue
        truth = truth_particles(pythia.event, config.truth_pt_min, config.truth_eta_max)
        if not len(truth):
            continue  # an event with no visible particle inside the cuts is not a truth set
        truths.append(truth)
        index.append(n_tried - 1)
        if config.process == "dis":
            dis.append((*dis_kinematics(pythia.process), *scattered_electron(pythia.event)))
    n_dis = len(DIS_COLUMNS)
    dis_arr = np.asarray(dis, np.float64).reshape(-1, n_dis) if config.process == "dis" else None
    return build_sample(truths, np.asarray(index, dtype=np.int64), dis_arr, det, rng)


RECORD = "events-campaign.json"


def shard_url(out_url: str, shard_id: int) -> str:
    """Final name of a shard file: OUT/events-<shard:05d>.parquet."""
    return store.join(out_url, f"events-{shard_id:05d}.parquet")


def _write_shard(
    config: EventGenConfig, shard: Shard, out_url: str, truth_only: bool = False
) -> str:
    """Generate one shard and commit it (the body of a Ray task)."""
    from farm.formats.events import write_events_parquet

    shard_config = dataclasses.replace(config, n_events=shard.n)
    sample = generate_events(shard_config, shard.pythia_seed)
    sample.event_id = shard.event_ids()
    meta = generator_metadata(shard_config, shard.pythia_seed) | {
        "campaign_seed": int(shard.plan_seed),
        "shard_id": int(shard.id),
    }
    return write_events_parquet(shard_url(out_url, shard.id), sample, meta, truth_only)


def generate_events_sharded(
    config: EventGenConfig,
    seed: int,
    out_url: str,
    shard_size: int,
    progress: bool = True,
    truth_only: bool = False,
) -> list[str]:
    """Generate config.n_events events as Ray tasks, one seed per shard; skip committed shards.

    truth_only writes truth-only conditions files (the same truth, no reco columns).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FarmError(f"campaign seed must be a non-negative integer, got {seed!r}")
    out_url = store.normalize(out_url)
    plan = Plan(config.n_events, shard_size, seed)
    record = {"config": config.to_dict(), "seed": seed, "shard_size": shard_size}
    if truth_only:
        record["truth_only"] = True
    check_output_record(store.join(out_url, RECORD), record)
    todo = [s for s in plan.shards() if not store.exists(shard_url(out_url, s.id))]
    if todo:
        from farm.ray_utils import ensure_ray

        ensure_ray()
        run_shards(
            _write_shard,
            [(config, s, out_url, truth_only) for s in todo],
            f"{config.process} events",
            use_ray=True,
            weights=[s.n for s in todo],
            done=config.n_events - sum(s.n for s in todo),
            progress=progress,
        )
    return [shard_url(out_url, s.id) for s in plan.shards()]
