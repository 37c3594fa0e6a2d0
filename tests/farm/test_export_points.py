"""`farm export` of point-cloud shower models: ONNX Runtime and TorchScript reproduce farm's sampler
(count model, hits unrolled over n_max masked slots, calibration) on the same noise."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from tiny_kinds import POINT_ENERGIES, register_model, tiny_jet_model, tiny_point_model

from farm.cli import main
from farm.export.check import run_points
from farm.export.graph import FILES, TOLERANCE
from farm.generation import SamplerSettings
from models.noise import randn

TRANSFORMER = {
    "kind": "point_showers",
    "hits": {
        "network": {
            "kind": "pointcloud_transformer",
            "n_features": 4,
            "attention": "mean_field",
            "width": 16,
            "depth": 1,
            "heads": 2,
            "embed_dim": 8,
        },
        # no log E: some hits come back with E <= 0 and must be masked
        "preprocessing": {"kind": "pointcloud", "n_features": 4},
        "sampler": {"name": "midpoint", "nfe": 2},
    },
}


# untrained EDM over 3 Heun steps: x explodes, exp(log E) overflows, farm's sampler gives NaN
BLOWS_UP = {
    "kind": "point_showers",
    "hits": {
        "network": {"kind": "epic", "n_features": 4, "width": 16, "global_dim": 4, "depth": 1},
        "process": {"kind": "edm"},
        "preprocessing": {"kind": "pointcloud", "n_features": 4, "log_features": [3]},
        "sampler": {"name": "heun", "nfe": 3},
    },
}


@pytest.mark.parametrize("net", ["epic", "transformer"])
def test_exported_points_graph_matches_farm_sampler(net, farm_home, tmp_path, capsys):
    model = tiny_point_model(0, TRANSFORMER if net == "transformer" else None)
    register_model("pts", model, "points", tmp_path)
    # fresh noise, a batch size the export never saw: farm's own sampler with the same seed
    e_inc = np.array([[1.0e4], [1.2e4], [1.5e4], [1.8e4], [2.0e4]], np.float32)
    cond = torch.from_numpy(e_inc)
    want = SamplerSettings().generate(model, cond, torch.Generator().manual_seed(9))
    want = want.reshape(5, model.n_max, 4)
    counts = model.cardinality.sample(cond, torch.Generator().manual_seed(9)).numpy()
    gen = torch.Generator().manual_seed(9)
    z_count = randn((2, 5), gen, like=model.cardinality.mu_coef).T.contiguous().numpy()
    z = randn((5, model.n_max * 4), gen).numpy()
    for fmt in ("onnx", "torchscript"):
        out = tmp_path / f"export-{fmt}"
        assert main(["export", "pts@candidate", "--format", fmt, "--out", str(out)]) == 0
        assert "max |exported - farm|" in capsys.readouterr().out
        assert sorted(p.name for p in out.iterdir()) == sorted(
            [FILES[fmt], "card.json", "check.py", "reference.npz"]
        )
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries
        card = json.loads((out / "card.json").read_text())["export"]
        assert card["kind"] == "points" and card["nfe"] == model.hits.config.sampler.nfe
        assert list(card["inputs"]) == ["noise", "count_noise", "conditions"]
        assert card["inputs"]["count_noise"]["dtype"] == "float64"
        assert card["outputs"]["hits"]["shape"] == ["batch", model.n_max, 4]
        assert card["outputs"]["hits"]["units"]["e"] == "MeV"
        if fmt == "onnx":
            onnx.checker.check_model(onnx.load(str(out / "model.onnx")), full_check=True)
        hits, mask, got_counts = run_points(fmt, out / FILES[fmt])(z, z_count, e_inc)
        np.testing.assert_array_equal(got_counts, counts)
        np.testing.assert_allclose(hits, want, **TOLERANCE)
        np.testing.assert_array_equal(mask, want[..., 3] > 0)
        slots = np.arange(model.n_max)
        assert not (mask & (slots >= counts[:, None])).any()  # no hit beyond its count
        assert (hits[~mask] == 0).all() and (hits[mask][:, 3] > 0).all()
        if net == "transformer":  # hits of E <= 0 after the inverse: masked, inside the count
            assert (mask.sum(1) < counts).any()
        else:  # log E: every slot below the count is a hit
            np.testing.assert_array_equal(mask.sum(1), counts)
        check = subprocess.run(
            [sys.executable, str(out / "check.py")], capture_output=True, text=True
        )
        assert check.returncode == 0 and check.stdout.startswith("OK: 8 showers"), check.stdout


def test_points_export_refusals_are_one_line_and_write_nothing(farm_home, tmp_path, capsys):
    register_model("pts", tiny_point_model(), "points", tmp_path)
    register_model("jets", tiny_jet_model(), "jets", tmp_path)
    register_model("nan", tiny_point_model(0, BLOWS_UP), "points", tmp_path)
    out = tmp_path / "export"
    cases = [
        ("pts", ["--sampler", "rk45"], "sampler 'rk45' of process 'flow_matching' cannot be"),
        ("jets", [], "model jets/1 generates jets; export takes showers and points models"),
        ("nan", [], "non-finite hit values on the reference energies; nothing to export"),
    ]
    for name, extra, message in cases:
        argv = ["export", f"{name}@candidate", "--format", "onnx", "--out", str(out), *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_check_script_fails_on_a_tampered_reference(farm_home, tmp_path):
    register_model("pts", tiny_point_model(), "points", tmp_path)
    out = tmp_path / "export"
    assert main(["export", "pts@candidate", "--format", "onnx", "--out", str(out)]) == 0
    ref = dict(np.load(out / "reference.npz"))
    ref["counts"] = ref["counts"] + 1
    np.savez(out / "reference.npz", **ref)
    check = subprocess.run([sys.executable, str(out / "check.py")], capture_output=True, text=True)
    assert check.returncode == 1 and "counts differ" in check.stdout, check.stdout
    assert min(POINT_ENERGIES) <= float(ref["conditions"].min())
