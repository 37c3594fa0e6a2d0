"""Reference jets from Pythia 8 + FastJet: pp at 13 TeV, anti-kt R=0.8, JetNet-style constituents.

One shard is a pure function of (config, seed): `generate_jets`. `generate_jets_sharded` runs shards
as Ray tasks, each writing its own files atomically, so a campaign can be resumed.

Processes (all pp at sqrt(s) = 13 TeV, pT-hat window 900-1100 GeV by default):
- gluon: HardQCD:gg2gg, qqbar2gg; jets matched to an outgoing gluon.
- quark: HardQCD:qg2qg, qq2qq, qqbar2qqbarNew (u, d, s); jets matched to an outgoing u/d/s quark.
- top:   Top:gg2ttbar, qqbar2ttbar with W -> hadrons; jets matched to a top whose b and W quarks
         all lie inside the jet (fully merged).
- w:     WeakBosonAndParton:qqbar2Wg, qg2Wq with W -> hadrons; jet matched to the W, quarks inside.
- z:     WeakBosonAndParton:qqbar2gmZg, qg2gmZq (Z only) with Z -> hadrons; as for W.
Matching uses the hard-process record (`pythia.process`) and Delta R < R in (eta, phi).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
from dataclasses import dataclass

import numpy as np

from farm import store
from farm.errors import FarmError
from farm.formats.files import EXTENSION, check_formats
from farm.formats.jets import JET_FEATURES, PARTICLE_FEATURES
from farm.kinematics import cluster_antikt
from farm.kinematics import fastjet_module as _fastjet
from farm.kinematics import momenta_4d as _momenta  # noqa: F401 (tests build inputs with it)
from farm.sharding import MAX_PYTHIA_SEED, Plan, Shard, check_output_record, run_shards

SQRT_S_GEV = 13000.0
SD_BETA, SD_ZCUT = 0.0, 0.1

_W_HADRONIC = ["24:onMode = off", "24:onIfAny = 1 2 3 4 5"]
_Z_HADRONIC = ["23:onMode = off", "23:onIfAny = 1 2 3 4 5"]

PROCESSES: dict[str, list[str]] = {
    "gluon": ["HardQCD:gg2gg = on", "HardQCD:qqbar2gg = on"],
    "quark": [
        "HardQCD:qg2qg = on",
        "HardQCD:qq2qq = on",
        "HardQCD:qqbar2qqbarNew = on",
        "HardQCD:nQuarkNew = 3",
    ],
    "top": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on", *_W_HADRONIC],
    "w": ["WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on", *_W_HADRONIC],
    "z": [
        "WeakBosonAndParton:qqbar2gmZg = on",
        "WeakBosonAndParton:qg2gmZq = on",
        "WeakZ0:gmZmode = 2",
        *_Z_HADRONIC,
    ],
}

# process -> (PDG ids |id| a jet is matched to, whether the target is a decaying resonance)
MATCH_TARGETS: dict[str, tuple[frozenset[int], bool]] = {
    "gluon": (frozenset({21}), False),
    "quark": (frozenset({1, 2, 3}), False),
    "top": (frozenset({6}), True),
    "w": (frozenset({24}), True),
    "z": (frozenset({23}), True),
}


@dataclass(frozen=True)
class JetGenConfig:
    """What to generate; jet pT window defaults to [0.8 pT-hat min, 1.2 pT-hat max]."""

    process: str
    n_jets: int
    pt_hat_min: float = 900.0
    pt_hat_max: float = 1100.0
    n_constituents: int = 30
    mpi: bool = True
    hadronisation: bool = True
    jet_pt_min: float | None = None
    jet_pt_max: float | None = None
    eta_max: float = 2.5
    R: float = 0.8
    jets_per_event: int = 2  # how many leading jets of each event are candidates

    def __post_init__(self) -> None:
        if self.process not in PROCESSES:
            allowed = ", ".join(PROCESSES)
            raise FarmError(f"unknown jet process {self.process!r}; allowed: {allowed}")
        if self.n_jets < 0:
            raise FarmError(f"n_jets must be >= 0, got {self.n_jets}")
        if not 0 <= self.pt_hat_min < self.pt_hat_max:
            raise FarmError(
                f"pT-hat window must satisfy 0 <= min < max, got [{self.pt_hat_min}, "
                f"{self.pt_hat_max}] GeV"
            )
        if self.n_constituents < 1:
            raise FarmError(f"n_constituents must be >= 1, got {self.n_constituents}")
        if not 0 < self.R <= 2.0 or self.eta_max <= 0 or self.jets_per_event < 1:
            raise FarmError(
                f"need 0 < R <= 2, eta_max > 0, jets_per_event >= 1; got R={self.R}, "
                f"eta_max={self.eta_max}, jets_per_event={self.jets_per_event}"
            )
        if self.pt_window[0] >= self.pt_window[1]:
            raise FarmError(f"jet pT window is empty: {self.pt_window} GeV")

    @property
    def pt_window(self) -> tuple[float, float]:
        """(min, max) jet pT in GeV."""
        lo = 0.8 * self.pt_hat_min if self.jet_pt_min is None else self.jet_pt_min
        hi = 1.2 * self.pt_hat_max if self.jet_pt_max is None else self.jet_pt_max
        return float(lo), float(hi)

    def to_dict(self) -> dict:
        """The config as a plain dict, as generator metadata and shard records store it."""
        return dataclasses.asdict(self)


def check_seed(seed: int) -> int:
    """A Pythia seed must be an int in 1..900_000_000."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise FarmError(f"seed must be an integer, got {seed!r}")
    if not 1 <= int(seed) <= MAX_PYTHIA_SEED:
        raise FarmError(f"Pythia seed must be in 1..{MAX_PYTHIA_SEED}, got {seed}")
    return int(seed)


def pythia_settings(config: JetGenConfig, seed: int) -> list[str]:
    """The exact Pythia readString lines for a shard (recorded in file metadata)."""
    return [
        f"Beams:eCM = {SQRT_S_GEV}",
        *PROCESSES[config.process],
        f"PhaseSpace:pTHatMin = {float(config.pt_hat_min)}",
        f"PhaseSpace:pTHatMax = {float(config.pt_hat_max)}",
        f"PartonLevel:MPI = {'on' if config.mpi else 'off'}",
        f"HadronLevel:all = {'on' if config.hadronisation else 'off'}",
        "Random:setSeed = on",
        f"Random:seed = {check_seed(seed)}",
        "Print:quiet = on",
        "Next:numberCount = 0",
    ]


def generator_metadata(config: JetGenConfig, seed: int) -> dict:
    """Provenance of a shard: generator versions, config, seed and every Pythia setting."""
    return {
        "generator": "Pythia 8 + FastJet",
        "pythia8mc": importlib.metadata.version("pythia8mc"),
        "fastjet": importlib.metadata.version("fastjet"),
        "config": config.to_dict(),
        "pythia_seed": int(seed),
        "pythia_settings": pythia_settings(config, seed),
        "jet_algorithm": f"anti-kt R={config.R}, E-scheme, |eta| < {config.eta_max}",
        "soft_drop": {"beta": SD_BETA, "z_cut": SD_ZCUT, "R0": config.R},
    }


def make_pythia(settings: list[str], process: str):
    """An initialised, silent Pythia instance from its readString lines."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)  # no banner
    for line in settings:
        if not pythia.readString(line):
            raise FarmError(f"Pythia rejected setting {line!r}")
    if not pythia.init():
        raise FarmError(f"Pythia failed to initialise for process {process!r}")
    return pythia


def _make_pythia(config: JetGenConfig, seed: int):
    """An initialised, silent Pythia instance for a jet config."""
    return make_pythia(pythia_settings(config, seed), config.process)


def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    """Wrap angles to (-pi, pi]."""
    return np.pi - np.mod(np.pi - dphi, 2 * np.pi)


def _pt_eta_phi(px, py, pz):
    """(pT, pseudorapidity, azimuth) of 3-momenta (numpy, vectorised)."""
    pt = np.hypot(px, py)
    return pt, np.arcsinh(pz / pt), np.arctan2(py, px)


def soft_drop_mass(fj, constituents: np.ndarray, R: float, z_cut: float = SD_ZCUT) -> float:
    """Soft-drop mass, beta = 0 (mMDT; Larkoski et al. 2014, Dasgupta et al. 2013), R0 = R.

    Recluster the (n, 4) [px, py, pz, E] constituents with C/A, then undo the last merging while
    min(pT1, pT2) / (pT1 + pT2) <= z_cut, following the harder branch. Agrees with
    fastjet-contrib SoftDrop (checked in the tests) and is ~3x faster through FastJet's bindings.
    """
    if len(constituents) == 0:
        return 0.0
    particles = [fj.PseudoJet(*row) for row in constituents.tolist()]
    cs = fj.ClusterSequence(particles, fj.JetDefinition(fj.cambridge_algorithm, 2 * R))
    jet = cs.exclusive_jets(1)[0]
    p1, p2 = fj.PseudoJet(), fj.PseudoJet()
    while jet.has_parents(p1, p2):
        pt1, pt2 = p1.pt(), p2.pt()
        if min(pt1, pt2) / (pt1 + pt2) > z_cut:  # beta = 0: no angular factor
            break
        jet = p1 if pt1 >= pt2 else p2
        p1, p2 = fj.PseudoJet(), fj.PseudoJet()
    return float(max(jet.m(), 0.0))


def _targets(process_record, process: str) -> list[tuple[float, float, list[tuple[float, float]]]]:
    """Hard-process objects to match: (eta, phi, [(eta, phi) of decay quarks]) per target."""
    ids, resonance = MATCH_TARGETS[process]
    out = []
    for i in range(process_record.size()):
        p = process_record[i]
        if p.idAbs() not in ids or p.isFinal() == resonance or p.pT() <= 0:
            continue
        quarks = []
        if resonance:
            for d in p.daughterListRecursive():
                q = process_record[d]
                if q.isFinal() and q.idAbs() <= 5:
                    quarks.append((q.eta(), q.phi()))
        out.append((p.eta(), p.phi(), quarks))
    return out


def _delta_r(eta1: float, phi1: float, eta2: float, phi2: float) -> float:
    dphi = (phi1 - phi2 + math.pi) % (2 * math.pi) - math.pi
    return math.hypot(eta1 - eta2, dphi)


def _match(jet_eta: float, jet_phi: float, targets: list, used: set[int], R: float) -> int | None:
    """Index of the closest unused target within R whose decay quarks all lie within R."""
    best, best_dr = None, R
    for k, (eta, phi, quarks) in enumerate(targets):
        dr = _delta_r(jet_eta, jet_phi, eta, phi)
        if k in used or dr >= best_dr:
            continue
        if all(_delta_r(jet_eta, jet_phi, qe, qp) < R for qe, qp in quarks):
            best, best_dr = k, dr
    return best


def _visible_final(event) -> np.ndarray:
    """(n, 4) float64 px, py, pz, E of final-state visible particles (no neutrinos)."""
    rows = [(p.px(), p.py(), p.pz(), p.e()) for p in event if p.isFinal() and p.isVisible()]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def jet_image(constituents: np.ndarray, jet_p4: np.ndarray, P: int) -> np.ndarray:
    """(P, 4) float32 [eta_rel, phi_rel, pt_rel, mask] of the P highest-pT constituents (JetNet)."""
    pt, eta, phi = _pt_eta_phi(constituents[:, 0], constituents[:, 1], constituents[:, 2])
    jpt, jeta, jphi = _pt_eta_phi(jet_p4[0], jet_p4[1], jet_p4[2])
    order = np.argsort(-pt, kind="stable")[:P]
    out = np.zeros((P, 4), dtype=np.float32)
    out[: len(order), 0] = eta[order] - jeta
    out[: len(order), 1] = wrap_phi(phi[order] - jphi)
    out[: len(order), 2] = pt[order] / jpt
    out[: len(order), 3] = 1.0
    return out


def jet_mass(p4: np.ndarray) -> np.ndarray:
    """Invariant mass of (..., 4) [px, py, pz, E], negative m^2 clipped to 0."""
    m2 = p4[..., 3] ** 2 - (p4[..., 0] ** 2 + p4[..., 1] ** 2 + p4[..., 2] ** 2)
    return np.sqrt(np.maximum(m2, 0.0))


def _select_jets(config: JetGenConfig, jet_event, jet_p4, targets: list) -> list[int]:
    """Leading jets per event inside the pT/eta window and matched to a target, in event order."""
    pt, eta, phi = _pt_eta_phi(jet_p4[:, 0], jet_p4[:, 1], jet_p4[:, 2])
    _, pt_hi = config.pt_window
    starts = np.searchsorted(jet_event, np.arange(len(targets) + 1))
    chosen = []
    for e, evt_targets in enumerate(targets):
        ks = np.arange(starts[e], starts[e + 1])
        ks = ks[np.argsort(-pt[ks], kind="stable")][: config.jets_per_event]
        used: set[int] = set()
        for k in ks:
            if pt[k] > pt_hi or abs(eta[k]) >= config.eta_max:
                continue
            t = _match(float(eta[k]), float(phi[k]), evt_targets, used, config.R)
            if t is not None:
                used.add(t)
                chosen.append(int(k))
    return chosen


EVENT_BATCH = 32  # events clustered per FastJet call (fixed: part of what a seed reproduces)


def generate_jets(config: JetGenConfig, seed: int) -> dict[str, np.ndarray]:
    """One shard of `config.n_jets` matched jets from Pythia 8 + anti-kt; same seed, same bits.

    Returns constituents (N, P, 4) float32 [eta_rel, phi_rel, pt_rel, mask] sorted by pT,
    jet_features (N, 4) float32 [pt GeV, eta, mass GeV, n_constituents (all, not only the P
    kept)], sd_mass (N,) float32 GeV, event_index (N,) int64 (Pythia event number in the shard).
    """
    seed = check_seed(seed)
    n, P = config.n_jets, config.n_constituents
    constituents = np.zeros((n, P, 4), dtype=np.float32)
    features = np.zeros((n, 4), dtype=np.float32)
    sd_mass = np.zeros(n, dtype=np.float32)
    event_index = np.zeros(n, dtype=np.int64)
    if n == 0:
        return _pack(constituents, features, sd_mass, event_index)
    fj = _fastjet()
    pythia = _make_pythia(config, seed)
    max_events, n_events, filled = 1000 + 200 * n, 0, 0
    while filled < n:
        if n_events >= max_events:
            raise FarmError(
                f"only {filled} of {n} {config.process} jets after {n_events} events: "
                f"check the jet pT window {config.pt_window} against the pT-hat window"
            )
        events, targets, numbers = [], [], []
        for _ in range(EVENT_BATCH):
            n_events += 1
            if pythia.next():
                events.append(_visible_final(pythia.event))
                targets.append(_targets(pythia.process, config.process))
                numbers.append(n_events - 1)
        if not events:
            continue
        jet_event, jet_p4, index, offsets = cluster_antikt(
            fj, events, config.R, config.pt_window[0]
        )
        for k in _select_jets(config, jet_event, jet_p4, targets)[: n - filled]:
            cons = events[jet_event[k]][index[offsets[k] : offsets[k + 1]]]
            constituents[filled] = jet_image(cons, jet_p4[k], P)
            pt, eta, _ = _pt_eta_phi(jet_p4[k, 0], jet_p4[k, 1], jet_p4[k, 2])
            features[filled] = (pt, eta, jet_mass(jet_p4[k]), len(cons))
            event_index[filled] = numbers[jet_event[k]]
            sd_mass[filled] = soft_drop_mass(fj, cons, config.R)
            filled += 1
    return _pack(constituents, features, sd_mass, event_index)


def _pack(constituents, features, sd_mass, event_index) -> dict[str, np.ndarray]:
    return {
        "constituents": constituents,
        "jet_features": features,
        "sd_mass": sd_mass,
        "event_index": event_index,
    }


RECORD = "jets-campaign.json"


def shard_url(out_url: str, shard_id: int, fmt: str) -> str:
    """Final name of a shard file: OUT/jets-<shard:05d>.<parquet|h5>."""
    return store.join(out_url, f"jets-{shard_id:05d}.{EXTENSION[fmt]}")


def _write_shard(
    config: JetGenConfig, shard: Shard, formats: tuple[str, ...], out_url: str
) -> list[str]:
    """Generate one shard and commit it in each format (the body of a Ray task)."""
    from farm.formats import jets as jet_formats

    shard_config = dataclasses.replace(config, n_jets=shard.n)
    data = generate_jets(shard_config, shard.pythia_seed)
    data["event_id"] = shard.event_ids()
    meta = generator_metadata(shard_config, shard.pythia_seed) | {
        "campaign_seed": int(shard.plan_seed),
        "shard_id": int(shard.id),
    }
    writers = {"parquet": jet_formats.write_jets_parquet, "h5": jet_formats.write_jets_h5}
    urls = []
    for fmt in formats:
        url = shard_url(out_url, shard.id, fmt)
        writers[fmt](url, data, meta)
        urls.append(url)
    return urls


def generate_jets_sharded(
    config: JetGenConfig,
    seed: int,
    out_url: str,
    shard_size: int,
    formats: tuple[str, ...] | list[str] = ("parquet",),
    progress: bool = True,
) -> list[str]:
    """Generate config.n_jets jets as Ray tasks, one seed per shard; skip committed shards."""
    formats = check_formats(formats, "jet")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FarmError(f"campaign seed must be a non-negative integer, got {seed!r}")
    out_url = store.normalize(out_url)
    plan = Plan(config.n_jets, shard_size, seed)
    record = {"config": config.to_dict(), "seed": seed, "shard_size": shard_size}
    check_output_record(store.join(out_url, RECORD), record)
    todo = [
        s
        for s in plan.shards()
        if not all(store.exists(shard_url(out_url, s.id, f)) for f in formats)
    ]
    if todo:
        from farm.ray_utils import ensure_ray

        ensure_ray()
        run_shards(
            _write_shard,
            [(config, s, formats, out_url) for s in todo],
            f"{config.process} jets",
            use_ray=True,
            weights=[s.n for s in todo],
            done=config.n_jets - sum(s.n for s in todo),
            progress=progress,
        )
    return [shard_url(out_url, s.id, f) for s in plan.shards() for f in formats]


__all__ = [
    "JET_FEATURES",
    "PARTICLE_FEATURES",
    "PROCESSES",
    "JetGenConfig",
    "generate_jets",
    "generate_jets_sharded",
    "generator_metadata",
    "pythia_settings",
]
