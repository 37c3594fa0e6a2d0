"""Jet features from JetNet-style constituents: kinematics, EFPs, N-subjettiness, C2 and D2.

EFPs: arXiv:1712.07124; N-subjettiness: arXiv:1011.2268; energy-correlation ratios C2 and D2:
arXiv:1305.0007, arXiv:1409.6298. Constituents are (N, P, 3) arrays of (eta_rel, phi_rel,
pT_rel) = (eta - eta_jet, phi - phi_jet, pT / pT_jet), zero-padded, optionally with a 4th column
(mask) or a separate (N, P) mask; massless.
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np

from farm.kinematics import jet_kinematics, split_constituents

# --------------------------------------------------------------------------- EFPs


def _canonical(edges: tuple[tuple[int, int], ...], n: int) -> tuple[tuple[int, int], ...]:
    best = None
    for perm in itertools.permutations(range(n)):
        relabelled = tuple(sorted(tuple(sorted((perm[a], perm[b]))) for a, b in edges))
        if best is None or relabelled < best:
            best = relabelled
    return best


def _connected(edges, n: int) -> bool:
    seen, todo = {0}, [0]
    while todo:
        v = todo.pop()
        for a, b in edges:
            for u, w in ((a, b), (b, a)):
                if u == v and w not in seen:
                    seen.add(w)
                    todo.append(w)
    return len(seen) == n


@cache
def connected_multigraphs(max_degree: int = 4) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Connected loopless multigraphs with 1..max_degree edges, up to isomorphism, sorted."""
    found = set()
    for d in range(1, max_degree + 1):
        for n in range(2, d + 2):
            pairs = list(itertools.combinations(range(n), 2))
            for edges in itertools.combinations_with_replacement(pairs, d):
                if {v for e in edges for v in e} == set(range(n)) and _connected(edges, n):
                    found.add(_canonical(edges, n))
    return tuple(sorted(found, key=lambda g: (len(g), 1 + max(max(e) for e in g), g)))


@cache
def efp_graphs(max_degree: int = 4) -> tuple[tuple[int, ...], ...]:
    """All EFP multigraphs with d <= max_degree as tuples of connected-graph indices.

    The first, (), is the d = 0 graph (one vertex, no edge: EFP = Σ z_i); a disconnected graph's
    EFP is the product of its components'. EnergyFlow's 'd<=4' set: 36 graphs for max_degree 4
    (1, 1, 3, 8, 23 with d = 0..4 edges), 20 of them connected with d >= 1.
    """
    conn = connected_multigraphs(max_degree)
    degree = [len(g) for g in conn]
    out: list[tuple[int, ...]] = [()]
    for d in range(1, max_degree + 1):
        for k in range(1, d + 1):
            for combo in itertools.combinations_with_replacement(range(len(conn)), k):
                if sum(degree[i] for i in combo) == d:
                    out.append(combo)
    return tuple(out)


def _einsum_spec(graph: tuple[tuple[int, int], ...]) -> tuple[str, list[tuple[int, int, int]]]:
    letters = "abcdefgh"
    n = 1 + max(max(e) for e in graph)
    counts: dict[tuple[int, int], int] = {}
    for e in graph:
        counts[e] = counts.get(e, 0) + 1
    terms = [f"z{letters[v]}" for v in range(n)]
    terms += [f"z{letters[a]}{letters[b]}" for a, b in counts]
    spec = ",".join(t.replace("z", "N") for t in terms) + "->N"
    return spec, [(a, b, w) for (a, b), w in counts.items()]


def efps(
    constituents: np.ndarray,
    mask: np.ndarray | None = None,
    max_degree: int = 4,
    beta: float = 1.0,
    normed: bool = False,
    chunk: int = 2048,
) -> np.ndarray:
    """(N, 36) energy-flow polynomials, d <= 4, hadronic measure, beta = 1: JetNet's FPD/KPD set.

    EFP_G = Σ_{i1..in} z_i1 ... z_in Π_{(k,l) in G} θ_{ik il}, θ_ij = ΔR_ij^β with
    ΔR² = Δη² + Δφ² (Komiske, Metodiev, Thaler, arXiv:1712.07124). As JetNet's
    get_fpd_kpd_jet_features (EnergyFlow's EFPSet('d<=4', measure='hadr', normed=None)),
    z_i = pT_rel,i is not normalised: the d = 0 column is Σ pT_rel, and a graph with n vertices
    scales like the n-th power of the constituents' pT. normed=True uses z_i = pT_i / Σ pT (the
    d = 0 column is then 1).
    Column order: efp_graphs(max_degree).
    """
    eta, phi, pt, _ = split_constituents(constituents, mask)
    conn = connected_multigraphs(max_degree)
    specs = [_einsum_spec(g) for g in conn]
    graphs = efp_graphs(max_degree)
    out = np.empty((len(pt), len(graphs)))
    for start in range(0, len(pt), chunk):
        sl = slice(start, start + chunk)
        z = pt[sl]
        if normed:
            total = z.sum(1, keepdims=True)
            z = np.divide(z, total, out=np.zeros_like(z), where=total > 0)
        d_eta = eta[sl][:, :, None] - eta[sl][:, None, :]
        d_phi = phi[sl][:, :, None] - phi[sl][:, None, :]
        theta = np.hypot(d_eta, d_phi) ** beta
        powers = {1: theta}
        for w in range(2, max_degree + 1):
            powers[w] = powers[w - 1] * theta
        values = []
        for spec, edges in specs:
            n_vertices = spec.split("->")[0].count(",") + 1 - len(edges)
            operands = [z] * n_vertices + [powers[w] for _, _, w in edges]
            values.append(np.einsum(spec, *operands, optimize="greedy"))
        for j, combo in enumerate(graphs):
            factors = [values[i] for i in combo] or [z.sum(1)]  # (): the d = 0 graph
            out[sl, j] = np.prod(factors, axis=0)
    return out


# --------------------------------------------------------------------------- N-subjettiness


def nsubjettiness(
    constituents: np.ndarray,
    n_axes: int,
    mask: np.ndarray | None = None,
    beta: float = 1.0,
    r0: float = 0.8,
    n_iter: int = 10,
) -> np.ndarray:
    """(N,) tau_N = Σ_k z_k min_a ΔR(k, a)^β / r0^β (Thaler, Van Tilburg, arXiv:1011.2268).

    Approximate axes (documented simplification; not fastjet-contrib's exclusive-kt or
    one-pass axes): seeded by the hardest constituent, then greedily by the constituent that
    contributes most to the current tau; refined by `n_iter` pT-weighted k-means steps. The
    result is an upper bound on the minimised tau_N, close to it for well-separated prongs.
    """
    eta, phi, pt, mask = split_constituents(constituents, mask)
    total = pt.sum(1, keepdims=True)
    z = np.divide(pt, total, out=np.zeros_like(pt), where=total > 0)
    pts = np.stack([eta, phi], axis=-1)  # (N, P, 2)
    rows = np.arange(len(pt))
    axes = pts[rows, np.argmax(z, axis=1)][:, None, :]  # (N, 1, 2)

    def dist2(ax):
        return ((pts[:, :, None, :] - ax[:, None, :, :]) ** 2).sum(-1)  # (N, P, A)

    for _ in range(1, n_axes):
        score = z * dist2(axes).min(axis=2)
        axes = np.concatenate([axes, pts[rows, np.argmax(score, axis=1)][:, None, :]], axis=1)
    for _ in range(n_iter):
        assign = np.argmin(dist2(axes), axis=2)  # (N, P)
        onehot = (assign[..., None] == np.arange(n_axes)) * z[..., None]  # (N, P, A)
        weight = onehot.sum(1)  # (N, A)
        centre = np.einsum("npa,npk->nak", onehot, pts)
        new = np.divide(centre, weight[..., None], out=axes.copy(), where=weight[..., None] > 0)
        axes = new
    d = np.sqrt(dist2(axes).min(axis=2))
    return (z * d**beta).sum(1) / r0**beta


# --------------------------------------------------------------------------- ECF ratios


def energy_correlators(
    constituents: np.ndarray,
    mask: np.ndarray | None = None,
    beta: float = 1.0,
    chunk: int = 512,
) -> dict[str, np.ndarray]:
    """(N,) e2, e3, C2 = e3 / e2^2 and D2 = e3 / e2^3 (Larkoski, Salam, Thaler, arXiv:1305.0007).

    Normalised energy-correlation functions, hadron-collider measure:
    e2 = Σ_{i<j} z_i z_j θ_ij, e3 = Σ_{i<j<k} z_i z_j z_k θ_ij θ_ik θ_jk, z_i = pT_i / Σ_k pT_k,
    θ_ij = ΔR_ij^β with ΔR² = Δη² + Δφ². C2 = e3 / e2² (LST's C_2 = ECF3 ECF1 / ECF2²), D2 =
    e3 / e2³ (Larkoski, Moult, Neill, arXiv:1409.6298). With A_ij = θ_ij z_j and θ_ii = 0,
    tr(A³) = Σ_ijk z_i z_j z_k θ_ij θ_jk θ_ki counts each triple of distinct particles 3! times,
    so e3 = tr(A³) / 6: one batched matmul, O(P³) per jet. Δφ is folded into [-π, π). C2 and
    D2 are 0 where e2 = 0 (fewer than two constituents, or all collinear).
    """
    eta, phi, pt, _ = split_constituents(constituents, mask)
    total = pt.sum(1, keepdims=True)
    z_all = np.divide(pt, total, out=np.zeros_like(pt), where=total > 0)
    e2, e3 = np.zeros(len(pt)), np.zeros(len(pt))
    for start in range(0, len(pt), chunk):
        sl = slice(start, start + chunk)
        z, e, f = z_all[sl], eta[sl], phi[sl]
        d_phi = np.remainder(f[:, :, None] - f[:, None, :] + np.pi, 2 * np.pi) - np.pi
        theta = np.hypot(e[:, :, None] - e[:, None, :], d_phi) ** beta  # (n, P, P), 0 diagonal
        a = theta * z[:, None, :]  # A_ij = θ_ij z_j
        e2[sl] = 0.5 * np.einsum("ni,nij->n", z, a)
        e3[sl] = np.einsum("nij,nji->n", a @ a, a) / 6.0
    c2 = np.divide(e3, e2**2, out=np.zeros_like(e3), where=e2 > 0)
    d2 = np.divide(e3, e2**3, out=np.zeros_like(e3), where=e2 > 0)
    return {"e2": e2, "e3": e3, "c2": c2, "d2": d2}


def jet_features(
    constituents: np.ndarray,
    mask: np.ndarray | None = None,
    jet_pt: np.ndarray | None = None,
    jet_eta: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Jet-level features: mass, pt, eta, n_constituents (see jet_kinematics), tau21, tau32."""
    out = jet_kinematics(constituents, mask, jet_pt, jet_eta)
    taus = [nsubjettiness(constituents, n, mask) for n in (1, 2, 3)]
    out["tau21"] = np.divide(taus[1], taus[0], out=np.zeros_like(taus[0]), where=taus[0] > 0)
    out["tau32"] = np.divide(taus[2], taus[1], out=np.zeros_like(taus[1]), where=taus[1] > 0)
    return out


def constituent_features(
    constituents: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Flattened eta_rel, phi_rel, pt_rel of all real constituents (JetNet's W1P inputs)."""
    eta, phi, pt, mask = split_constituents(constituents, mask)
    return {"eta_rel": eta[mask], "phi_rel": phi[mask], "pt_rel": pt[mask]}


def constituent_inputs(constituents: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(N, 4P) low-level classifier input: pT-ordered (eta_rel, phi_rel, pt_rel, mask)."""
    eta, phi, pt, mask = split_constituents(constituents, mask)
    order = np.argsort(-pt, axis=1, kind="stable")
    cols = [np.take_along_axis(a, order, 1) for a in (eta, phi, pt, mask.astype(np.float64))]
    return np.stack(cols, axis=-1).reshape(len(pt), -1)
