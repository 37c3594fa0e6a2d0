"""A crafted model card cannot make farm read, echo or copy files outside the store (issue 17)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from farm import registry
from farm.cli import main
from farm.data.showers import simulate_in_memory
from farm.errors import FarmError
from farm.formats.calochallenge import write_calochallenge
from farm.geometry import load_geometry
from models.checkpoint import save_model
from models.config import ModelConfig
from models.generative import GenerativeModel

SECRET = "TOP-SECRET-CONTENT-0123456789-" * 20


def register_with_card(name: str, card: dict, edit=None) -> None:
    """Register an untrained DS1-photon model whose card holds `card` (edit: change model.json)."""
    config = ModelConfig.model_validate(
        {
            "network": {"kind": "mlp", "width": 8, "depth": 1, "embed_dim": 8},
            "preprocessing": {"kind": "standard"},
            "sampler": {"name": "euler", "nfe": 1},
        }
    )
    model = GenerativeModel(config, dim=368, cond_dim=1).eval()
    with tempfile.TemporaryDirectory() as ckpt:
        save_model(model, ckpt, card=card)
        if edit is not None:
            path = Path(ckpt) / "model.json"
            path.write_text(json.dumps(edit(json.loads(path.read_text()))))
        client = registry.client()
        run = client.create_run(registry.experiment_id(name))
        registry.register(name, run.info.run_id, ckpt, aliases=["candidate"])


@pytest.fixture
def outside(tmp_path):
    """A folder outside the store holding a secret XML file and a showers file."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.xml").write_text(
        f'<Bins><Bin name="photon"><Layer id="{SECRET}"/></Bin></Bins>'
    )
    geometry = load_geometry("ds1-photons")
    showers, e_inc = simulate_in_memory(geometry, 50, seed=0, energies=[1024.0])
    write_calochallenge(str(folder / "private.h5"), showers, e_inc, geometry)
    return folder


def one_line(capfd) -> str:
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_card_geometry_outside_the_store_is_refused_unread(farm_home, outside, capfd):
    card = {"data": {"kind": "showers", "geometry": str(outside / "secret.xml")}}
    register_with_card("crafted-geometry", card)
    out = farm_home / "gen.parquet"
    assert main(["generate", "crafted-geometry@candidate", "--out", str(out)]) == 2
    line = one_line(capfd)
    assert "model crafted-geometry/1: model card field 'data.geometry' names" in line
    assert "outside the store and the allowed locations" in line
    assert "TOP-SECRET" not in line and not out.exists()


def test_a_card_data_file_outside_the_store_is_never_copied(farm_home, outside, capfd):
    private = str(outside / "private.h5")
    data = {"source": "calochallenge", "url": private, "geometry": "ds1-photons"}
    register_with_card(
        "crafted-data",
        {"data": {"kind": "showers", "geometry": "ds1-photons"}, "job": {"data": data}},
    )
    gen, ref = farm_home / "gen.h5", farm_home / "ref.h5"
    argv = ["generate", "crafted-data@candidate", "--out", str(gen), "--reference-out", str(ref)]
    assert main(argv) == 2
    line = one_line(capfd)
    assert f"model card field 'job.data.url' names '{private}', outside the store" in line
    assert not gen.exists() and not ref.exists()


def test_allowed_locations_let_a_card_name_files_outside_the_store(farm_home, outside, monkeypatch):
    data = {
        "source": "calochallenge",
        "url": str(outside / "private.h5"),
        "geometry": "ds1-photons",
    }
    register_with_card(
        "allowed-data",
        {"data": {"kind": "showers", "geometry": "ds1-photons"}, "job": {"data": data}},
    )
    monkeypatch.setenv("FARM_ALLOWED_LOCATIONS", f"s3://elsewhere,{outside}")
    loaded = registry.load("allowed-data@candidate")
    assert loaded.card.data_spec(loaded.key).url == data["url"]


@pytest.mark.parametrize(
    "path", ["{home}/../outside/private.h5", "{outside}/../outside/private.h5"]
)
def test_dot_dot_and_symlinks_do_not_escape_the_store(farm_home, outside, path):
    from farm.cards import check_card_location

    farm_home.mkdir(parents=True, exist_ok=True)
    (farm_home / "link").symlink_to(outside)
    for value in (
        path.format(home=farm_home, outside=outside),
        str(farm_home / "link" / "private.h5"),
    ):
        with pytest.raises(FarmError, match="outside the store"):
            check_card_location(value, "m/1", "job.data.url")
    check_card_location(str(farm_home / "datasets" / "x.h5"), "m/1", "job.data.url")


def test_a_malformed_card_is_one_line_naming_version_and_field(farm_home, capfd):
    def break_dim(doc):
        return {**doc, "dim": "three hundred"}

    register_with_card("malformed", {"data": {"geometry": "ds1-photons"}}, edit=break_dim)
    assert main(["generate", "malformed@candidate", "--out", str(farm_home / "g.parquet")]) == 2
    line = one_line(capfd)
    assert line.startswith("farm: error: model malformed/1: malformed model card, field 'dim'")


def test_geometry_errors_quote_only_a_short_excerpt(tmp_path):
    path = tmp_path / "long.xml"
    path.write_text(
        f'<Bins><Bin name="photon"><Layer id="x" r_edges="{SECRET}" n_bin_alpha="1"/></Bin></Bins>'
    )
    with pytest.raises(FarmError) as err:
        load_geometry(str(path))
    message = str(err.value)
    assert message.count("TOP-SECRET") <= 1 and len(message) < 300
