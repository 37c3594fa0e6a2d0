"""Write farm's embedded geometries (farm/geometries/*.json) from the CaloChallenge XML files.

Run once when the challenge's binning files change; the JSON files are committed:

    python scripts/build_geometries.py ../shared/calochallenge
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from farm.geometry import KNOWN_GEOMETRIES, geometry_to_doc, parse_geometry

OUT = Path(__file__).resolve().parents[1] / "farm" / "geometries"


def to_json(doc: dict) -> str:
    """The document as JSON with one line per run of identical layers (readable diffs)."""
    head = {k: v for k, v in doc.items() if k != "layers"}
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    runs = ",\n".join(f"    {json.dumps(run)}" for run in doc["layers"])
    return "{\n" + "\n".join(lines) + '\n  "layers": [\n' + runs + "\n  ]\n}\n"


def main() -> None:
    """Parse each known geometry's XML and write its JSON beside the package."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xml_dir", type=Path, help="folder holding binning_dataset_*.xml")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (filename, particle) in KNOWN_GEOMETRIES.items():
        path = args.xml_dir / filename
        geometry = parse_geometry(path, name=name, particle=particle)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        doc = geometry_to_doc(geometry, f"CaloChallenge 2022 {filename}, sha256 {digest}")
        (OUT / f"{name}.json").write_text(to_json(doc))
        print(f"{name}: {geometry.n_voxels} voxels in {len(geometry.active_layers)} layers")


if __name__ == "__main__":
    main()
