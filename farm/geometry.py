"""CaloChallenge 2022 voxel geometries (concentric cylinders along z), shipped inside farm.

The four challenge geometries (DS1 photons, DS1 pions, DS2, DS3) are farm's own compact JSON files
under farm/geometries/ (bin edges and angular bins per layer are facts of the challenge),
generated once from the challenge's binning XML by scripts/build_geometries.py. FARM_GEOMETRY_DIR
(a folder of binning_dataset_*.xml) and any binning .xml path still work.

Voxel order in a flattened shower: layer slowest, then angular bin, radial bin fastest.
Angular bins split [-pi, pi) evenly; a layer with one angular bin has its centre at alpha = 0.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from itertools import groupby, pairwise
from pathlib import Path

import numpy as np

from farm.errors import FarmError, excerpt

# Known geometries: name -> (binning XML file name of the challenge, particle name in the XML).
KNOWN_GEOMETRIES = {
    "ds1-photons": ("binning_dataset_1_photons.xml", "photon"),
    "ds1-pions": ("binning_dataset_1_pions.xml", "pion"),
    "ds2": ("binning_dataset_2.xml", "electron"),
    "ds3": ("binning_dataset_3.xml", "electron"),
}


@dataclass(frozen=True)
class Layer:
    """One longitudinal layer: radial bin edges in mm and the number of angular bins."""

    index: int
    r_edges: tuple[float, ...]
    n_alpha: int

    @property
    def n_radial(self) -> int:
        """Number of radial bins (0 for an empty layer)."""
        return max(len(self.r_edges) - 1, 0)

    @property
    def n_voxels(self) -> int:
        """Voxels in the layer: radial bins times angular bins."""
        return self.n_radial * self.n_alpha


@dataclass(frozen=True)
class CaloGeometry:
    """A CaloChallenge geometry: its layers (empty ones included) and per-voxel coordinates."""

    name: str
    particle: str
    pid: int
    layers: tuple[Layer, ...]
    source: str = field(default="", compare=False)

    @property
    def n_voxels(self) -> int:
        """Voxels over all layers: the length of a flattened shower."""
        return sum(layer.n_voxels for layer in self.layers)

    @property
    def active_layers(self) -> tuple[Layer, ...]:
        """Layers that hold at least one voxel (DS1 photons: 0, 1, 2, 3, 12)."""
        return tuple(layer for layer in self.layers if layer.n_voxels > 0)

    @cached_property
    def layer_slices(self) -> dict[int, slice]:
        """Layer index -> slice of the flattened voxel axis, for active layers."""
        out, start = {}, 0
        for layer in self.layers:
            if layer.n_voxels:
                out[layer.index] = slice(start, start + layer.n_voxels)
                start += layer.n_voxels
        return out

    @cached_property
    def voxel_layer(self) -> np.ndarray:
        """(n_voxels,) layer index of each voxel."""
        return np.concatenate(
            [np.full(layer.n_voxels, layer.index) for layer in self.active_layers]
        ).astype(np.int64)

    def _per_voxel(self, fn) -> np.ndarray:
        parts = []
        for layer in self.active_layers:
            r_lo = np.asarray(layer.r_edges[:-1])
            r_hi = np.asarray(layer.r_edges[1:])
            a_edges = np.linspace(-np.pi, np.pi, layer.n_alpha + 1)
            a_lo, a_hi = a_edges[:-1], a_edges[1:]
            if layer.n_alpha == 1:
                a_lo, a_hi = np.zeros(1), np.zeros(1)
            # angular index slow, radial fast
            parts.append(fn(r_lo[None, :], r_hi[None, :], a_lo[:, None], a_hi[:, None]).ravel())
        return np.concatenate(parts)

    @cached_property
    def voxel_r_edges(self) -> np.ndarray:
        """(n_voxels, 2) inner and outer radius in mm."""
        lo = self._per_voxel(lambda r0, r1, a0, a1: np.broadcast_to(r0, np.broadcast(r0, a0).shape))
        hi = self._per_voxel(lambda r0, r1, a0, a1: np.broadcast_to(r1, np.broadcast(r1, a0).shape))
        return np.stack([lo, hi], axis=1)

    @cached_property
    def voxel_r(self) -> np.ndarray:
        """(n_voxels,) radial bin centre in mm."""
        return self.voxel_r_edges.mean(axis=1)

    @cached_property
    def voxel_alpha(self) -> np.ndarray:
        """(n_voxels,) angular bin centre in radians."""
        return self._per_voxel(
            lambda r0, r1, a0, a1: np.broadcast_to((a0 + a1) / 2, np.broadcast(r0, a0).shape)
        )

    @cached_property
    def voxel_xy(self) -> np.ndarray:
        """(n_voxels, 2) transverse centre (x, y) = r (cos alpha, sin alpha) in mm."""
        return np.stack(
            [self.voxel_r * np.cos(self.voxel_alpha), self.voxel_r * np.sin(self.voxel_alpha)],
            axis=1,
        )

    def check_voxels(self, n_voxels: int, source: str) -> None:
        """Raise FarmError if a file's voxel count does not match this geometry."""
        if n_voxels != self.n_voxels:
            raise FarmError(
                f"{source}: {n_voxels} voxels per shower, but geometry {self.name!r} "
                f"({self.source}) has {self.n_voxels}"
            )


GEOMETRY_FORMAT = "farm-geometry/1"


def geometry_to_doc(geometry: CaloGeometry, source: str) -> dict:
    """Farm's JSON form of a geometry: runs of identical layers as inclusive id ranges."""
    runs = []
    for (r_edges, n_alpha), group in groupby(geometry.layers, key=lambda g: (g.r_edges, g.n_alpha)):
        ids = [layer.index for layer in group]
        runs.append({"ids": [ids[0], ids[-1]], "r_edges": list(r_edges), "n_alpha": n_alpha})
    return {
        "format": GEOMETRY_FORMAT,
        "name": geometry.name,
        "particle": geometry.particle,
        "pid": geometry.pid,
        "source": source,
        "layers": runs,
    }


def geometry_from_doc(doc: dict, source: str) -> CaloGeometry:
    """Rebuild a geometry from geometry_to_doc's JSON form; FarmError naming `source` if malformed."""
    if doc.get("format") != GEOMETRY_FORMAT:
        raise FarmError(f"{source}: format {doc.get('format')!r} is not {GEOMETRY_FORMAT!r}")
    try:
        layers = tuple(
            Layer(index, tuple(float(r) for r in run["r_edges"]), int(run["n_alpha"]))
            for run in doc["layers"]
            for index in range(int(run["ids"][0]), int(run["ids"][1]) + 1)
        )
        return CaloGeometry(doc["name"], doc["particle"], int(doc["pid"]), layers, source)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise FarmError(f"{source}: malformed geometry ({type(exc).__name__}: {exc})") from None


def embedded_geometry(name: str) -> CaloGeometry:
    """One of the challenge geometries shipped with farm (farm/geometries/<name>.json)."""
    resource = resources.files("farm") / "geometries" / f"{name}.json"
    doc = json.loads(resource.read_text())
    return geometry_from_doc(doc, f"farm/geometries/{name}.json ({doc.get('source', '')})")


def load_geometry(name_or_path: str) -> CaloGeometry:
    """Load a geometry by name (ds1-photons, ds1-pions, ds2, ds3, <cell geometry>-voxels) or .xml.

    Names come from farm's embedded copies, or from the challenge's XML files in
    FARM_GEOMETRY_DIR when that variable is set.
    """
    if name_or_path in KNOWN_GEOMETRIES:
        filename, particle = KNOWN_GEOMETRIES[name_or_path]
        if os.environ.get("FARM_GEOMETRY_DIR"):
            path = Path(os.environ["FARM_GEOMETRY_DIR"]) / filename
            return parse_geometry(path, name=name_or_path, particle=particle)
        return embedded_geometry(name_or_path)
    base = name_or_path.removesuffix(VOXELS_SUFFIX)
    if base != name_or_path and base in CELL_GEOMETRIES:
        return load_cell_geometry(base).voxel_binning
    path = Path(name_or_path)
    if not path.suffix == ".xml":
        raise FarmError(
            f"unknown geometry {name_or_path!r}: allowed names are "
            f"{', '.join(KNOWN_GEOMETRIES)}, a point-cloud geometry's projection "
            f"({', '.join(g + VOXELS_SUFFIX for g in CELL_GEOMETRIES)}) or a path to a binning "
            ".xml file"
        )
    return parse_geometry(path, name=path.stem)


def parse_geometry(path: Path, name: str, particle: str | None = None) -> CaloGeometry:
    """Parse a CaloChallenge binning XML file; raises FarmError naming the file on any problem."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise FarmError(f"{path}: geometry file not found") from None
    except ET.ParseError as exc:
        raise FarmError(f"{path}: malformed geometry XML ({exc})") from None
    bins = root.findall("Bin")
    if particle is not None:
        bins = [b for b in bins if b.get("name") == particle]
    if len(bins) != 1:
        raise FarmError(
            f"{path}: expected one <Bin> element for particle {particle!r}, found {len(bins)}"
        )
    (particle_bin,) = bins
    layers = []
    for element in particle_bin.findall("Layer"):
        try:
            index = int(element.get("id"))
            edges = tuple(float(v) for v in element.get("r_edges").split(","))
            n_alpha = int(element.get("n_bin_alpha"))
        except (TypeError, ValueError):
            raise FarmError(
                f"{path}: layer element {excerpt(ET.tostring(element).decode().strip())} needs "
                "integer 'id', comma-separated 'r_edges' and integer 'n_bin_alpha'"
            ) from None
        if any(b <= a for a, b in pairwise(edges)) or n_alpha < 1:
            raise FarmError(f"{path}: layer {index} has non-increasing r_edges or n_bin_alpha < 1")
        layers.append(Layer(index, edges, n_alpha))
    if not layers or [layer.index for layer in layers] != list(range(len(layers))):
        raise FarmError(f"{path}: layers must be numbered 0, 1, 2, ... without gaps")
    return CaloGeometry(
        name=name,
        particle=particle_bin.get("name", particle or ""),
        pid=int(particle_bin.get("pid", 0)),
        layers=tuple(layers),
        source=str(path),
    )


CELL_GEOMETRY_FORMAT = "farm-cell-geometry/1"
CELL_GEOMETRIES = ("ild-ecal-like",)
"""High-granularity geometries farm ships for point-cloud showers (farm/geometries/<name>.json)."""
VOXELS_SUFFIX = "-voxels"
"""The voxel projection of cell geometry G is the CaloGeometry named G + VOXELS_SUFFIX."""


@dataclass(frozen=True)
class CellGeometry:
    """A high-granularity Cartesian calorimeter: square cells of a pad grid in sampling layers.

    Layer k spans depths [depth_edges[k], depth_edges[k + 1]) in X0 and its sensor sits at z_mm[k];
    cells are `cell_size` mm squares of an n_cells x n_cells grid centred on the shower axis.
    `voxel_binning` is the CaloChallenge-style cylinder binning the hits project onto.
    """

    name: str
    particle: str
    pid: int
    cell_size: float
    n_cells: int
    depth_edges: tuple[float, ...]
    z_mm: tuple[float, ...]
    energy_range: tuple[float, float]
    binning_r_edges: tuple[float, ...]
    binning_n_alpha: int
    source: str = field(default="", compare=False)

    kind = "cells"

    @property
    def n_layers(self) -> int:
        """Number of sampling layers."""
        return len(self.z_mm)

    @property
    def half_width(self) -> float:
        """Half the transverse extent of the pad grid, mm."""
        return 0.5 * self.cell_size * self.n_cells

    def contains(self, x: np.ndarray, y: np.ndarray, layer: np.ndarray) -> np.ndarray:
        """Whether each hit (x, y mm, layer) lies inside the pad grid and the layer stack."""
        h = self.half_width
        return (np.abs(x) <= h) & (np.abs(y) <= h) & (layer >= 0) & (layer < self.n_layers)

    @cached_property
    def voxel_binning(self) -> CaloGeometry:
        """The CaloChallenge-style binning (same ring edges and angular bins in every layer)."""
        layers = tuple(
            Layer(k, self.binning_r_edges, self.binning_n_alpha) for k in range(self.n_layers)
        )
        return CaloGeometry(
            f"{self.name}{VOXELS_SUFFIX}", self.particle, self.pid, layers, self.source
        )


def cell_geometry_from_doc(doc: dict, source: str) -> CellGeometry:
    """Build a CellGeometry from its JSON form; FarmError naming `source` if malformed."""
    if doc.get("format") != CELL_GEOMETRY_FORMAT:
        raise FarmError(f"{source}: format {doc.get('format')!r} is not {CELL_GEOMETRY_FORMAT!r}")
    try:
        thick, pitch = [], []
        for run in doc["layers"]:
            n = int(run["ids"][1]) - int(run["ids"][0]) + 1
            thick += [float(run["thickness_x0"])] * n
            pitch += [float(run["pitch_mm"])] * n
        binning = doc["voxel_binning"]
        lo, hi = (float(v) for v in doc["energy_range_mev"])
        return CellGeometry(
            name=doc["name"],
            particle=doc["particle"],
            pid=int(doc["pid"]),
            cell_size=float(doc["cell_size_mm"]),
            n_cells=int(doc["n_cells"]),
            depth_edges=tuple(np.concatenate([[0.0], np.cumsum(thick)]).tolist()),
            z_mm=tuple(np.cumsum(pitch).tolist()),
            energy_range=(lo, hi),
            binning_r_edges=tuple(float(r) for r in binning["r_edges"]),
            binning_n_alpha=int(binning["n_alpha"]),
            source=source,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise FarmError(
            f"{source}: malformed cell geometry ({type(exc).__name__}: {exc})"
        ) from None


def load_cell_geometry(name: str) -> CellGeometry:
    """A shipped high-granularity geometry by name (CELL_GEOMETRIES)."""
    if name not in CELL_GEOMETRIES:
        raise FarmError(
            f"unknown point-cloud geometry {name!r}: allowed {', '.join(CELL_GEOMETRIES)}"
        )
    resource = resources.files("farm") / "geometries" / f"{name}.json"
    return cell_geometry_from_doc(json.loads(resource.read_text()), f"farm/geometries/{name}.json")


def is_cell_geometry(name: object) -> bool:
    """Whether a geometry name (or object) is a high-granularity cell geometry."""
    return isinstance(name, CellGeometry) or name in CELL_GEOMETRIES
