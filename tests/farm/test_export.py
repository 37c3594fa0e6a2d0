"""`farm export`: ONNX Runtime and TorchScript reproduce farm's sampler on the same noise (fp32)."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from tiny_showers import register_tiny

from farm.cli import main
from farm.export.check import run_exported
from farm.export.graph import FILES, TOLERANCE
from farm.generation import SamplerSettings
from models.noise import randn


@pytest.mark.parametrize("kind", ["flow", "student"])
def test_exported_graphs_match_farm_sampler(kind, farm_home, tmp_path, capsys):
    model, _ = register_tiny(f"tiny-{kind}", kind, tmp_path)
    # fresh noise, a batch size the export never saw: farm's own sampler on the same noise
    e_inc = np.array([[250.0], [1200.0], [7000.0], [9000.0], [19000.0]], np.float32)
    gen = torch.Generator().manual_seed(9)
    want = SamplerSettings().generate(model, torch.from_numpy(e_inc), gen)
    z = randn((5, model.preprocessing.out_dim), torch.Generator().manual_seed(9)).numpy()
    for fmt in ("onnx", "torchscript"):
        out = tmp_path / f"export-{fmt}"
        argv = ["export", f"tiny-{kind}@candidate", "--format", fmt, "--out", str(out)]
        assert main(argv) == 0
        assert "max |exported - farm|" in capsys.readouterr().out
        assert sorted(p.name for p in out.iterdir()) == sorted(
            [FILES[fmt], "card.json", "check.py", "reference.npz"]
        )
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries
        card = json.loads((out / "card.json").read_text())
        assert card["export"]["sampler"] == model.default_sampler
        assert card["export"]["outputs"]["events"]["unit"] == "MeV"
        if fmt == "onnx":
            onnx.checker.check_model(onnx.load(str(out / "model.onnx")), full_check=True)
        got = run_exported(fmt, out / FILES[fmt])(z, e_inc)
        assert got.shape == (5, 10) and float(want.sum()) > 0
        np.testing.assert_allclose(got, want, **TOLERANCE)
        check = subprocess.run(
            [sys.executable, str(out / "check.py")], capture_output=True, text=True
        )
        assert check.returncode == 0 and check.stdout.startswith("OK: 8 events"), check.stdout


REFUSALS = [
    ("flow", ["--sampler", "rk45"], "sampler 'rk45' of process 'flow_matching' cannot be unrolled"),
    ("flow", ["--sampler", "nope"], "sampler 'nope' is not available"),
    ("student", ["--nfe", "2"], "consistency sampling with nfe=2 draws fresh noise"),
]


def test_export_refusals_are_one_line_and_write_nothing(farm_home, tmp_path, capsys):
    for kind in ("flow", "student"):
        register_tiny(f"tiny-{kind}", kind, tmp_path)
    out = tmp_path / "export"
    for kind, extra, message in REFUSALS:
        argv = ["export", f"tiny-{kind}@candidate", "--format", "onnx", "--out", str(out), *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_export_refuses_an_existing_folder(farm_home, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    assert main(["export", "tiny@candidate", "--format", "onnx", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
