"""The CaloChallenge geometries farm ships, against the challenge's facts and its XML files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from farm.errors import FarmError
from farm.geometry import (
    KNOWN_GEOMETRIES,
    embedded_geometry,
    geometry_from_doc,
    geometry_to_doc,
    load_geometry,
    parse_geometry,
)

# The challenge's binning XML, only where our own shared/ folder sits beside the checkout.
XML_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "calochallenge"

FACTS = {  # name: (voxels, active layers, particle, pid)
    "ds1-photons": (368, [0, 1, 2, 3, 12], "photon", 22),
    "ds1-pions": (533, [0, 1, 2, 3, 12, 13, 14], "pion", 211),
    "ds2": (6480, list(range(45)), "electron", 11),
    "ds3": (40500, list(range(45)), "electron", 11),
}


@pytest.mark.parametrize("name", list(KNOWN_GEOMETRIES))
def test_embedded_geometry_has_the_challenge_facts(name, monkeypatch):
    monkeypatch.delenv("FARM_GEOMETRY_DIR", raising=False)
    g = load_geometry(name)
    n_voxels, active, particle, pid = FACTS[name]
    assert g.n_voxels == n_voxels
    assert [layer.index for layer in g.active_layers] == active
    assert (g.particle, g.pid) == (particle, pid)
    assert len(g.layers) == (24 if name.startswith("ds1") else 45)
    assert g.source.startswith(f"farm/geometries/{name}.json")


def test_ds2_and_ds3_bins():
    ds2, ds3 = embedded_geometry("ds2"), embedded_geometry("ds3")
    assert all(layer.n_alpha == 16 and layer.n_radial == 9 for layer in ds2.layers)
    np.testing.assert_allclose(np.diff(ds2.layers[0].r_edges), 4.65)
    assert all(layer.n_alpha == 50 and layer.n_radial == 18 for layer in ds3.layers)


@pytest.mark.skipif(not XML_DIR.is_dir(), reason=f"challenge XML files not at {XML_DIR}")
@pytest.mark.parametrize("name", list(KNOWN_GEOMETRIES))
def test_embedded_geometry_equals_the_challenge_xml(name, monkeypatch):
    filename, particle = KNOWN_GEOMETRIES[name]
    from_xml = parse_geometry(XML_DIR / filename, name=name, particle=particle)
    assert embedded_geometry(name) == from_xml  # `source` is not compared
    monkeypatch.setenv("FARM_GEOMETRY_DIR", str(XML_DIR))
    via_env = load_geometry(name)
    assert via_env == from_xml and via_env.source == str(XML_DIR / filename)


def test_doc_round_trip_and_xml_path(tmp_path):
    g = embedded_geometry("ds1-photons")
    doc = json.loads(json.dumps(geometry_to_doc(g, "test")))
    assert geometry_from_doc(doc, "test") == g
    xml = tmp_path / "tiny.xml"
    xml.write_text(
        '<Bins><Bin pid="22" name="photon"><Layer id="0" r_edges="0,5,20" n_bin_alpha="2"/>'
        "</Bin></Bins>"
    )
    tiny = load_geometry(str(xml))
    assert tiny.name == "tiny" and tiny.n_voxels == 4


def test_bad_geometry_input_names_the_problem(tmp_path, monkeypatch):
    with pytest.raises(
        FarmError, match=r"unknown geometry 'ds9'.*ds1-photons, ds1-pions, ds2, ds3"
    ):
        load_geometry("ds9")
    with pytest.raises(FarmError, match="malformed geometry"):
        geometry_from_doc({"format": "farm-geometry/1", "layers": [{}]}, "x.json")
    monkeypatch.setenv("FARM_GEOMETRY_DIR", str(tmp_path))
    with pytest.raises(FarmError, match=r"binning_dataset_2\.xml: geometry file not found"):
        load_geometry("ds2")
