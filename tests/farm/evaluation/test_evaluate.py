"""Orchestrators and `farm evaluate`: metrics with floors, JSON, plots and report written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_samples import make_jets, make_showers

from farm.cli import main
from farm.errors import FarmError
from farm.evaluation.evaluate import evaluate_jets, evaluate_showers
from farm.formats.calochallenge import write_calochallenge

pytestmark = pytest.mark.filterwarnings("ignore::farm.evaluation.checks.SmallSampleWarning")
SMALL = dict(epochs=3, hidden=32)
FAST = {"fpd": {"num_batches": 5, "num_points": 5}, "kpd": {"num_batches": 5, "batch_size": 500}}


def test_evaluate_showers_writes_report_and_sees_a_scale_error(geometry, tmp_path):
    ref = make_showers(geometry, 2000, seed=0)
    gen = make_showers(geometry, 1000, seed=1, scale=1.05)
    out = str(tmp_path / "eval")
    result = evaluate_showers(ref, gen, geometry, out, classifier_kwargs=SMALL, metric_kwargs=FAST)
    m = result.metrics
    assert m["sep/e_ratio"]["value"] > 10 * m["sep/e_ratio"]["floor"]
    assert m["fpd"]["value"] > m["fpd"]["floor"] + 5 * m["fpd"]["error"]
    assert m["auc_low"]["value"] > m["auc_low"]["floor"] + 0.1
    assert result.details["n_compared"] == 1000 and result.details["threshold_mev"] == 1.0
    assert any("recommended" in note for note in result.notes)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["metrics"]["sep/e_ratio"] == m["sep/e_ratio"]
    html = (tmp_path / "eval" / "report.html").read_text()
    assert "auc_low" in html and "average_shower.png" in html
    for name in result.plots:
        assert (tmp_path / "eval" / name).read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "eval").glob(".*tmp*"))  # atomic writes left nothing behind
    rows = result.table()
    assert rows[0][0] == "auc_low" and "±" in rows[0][1]


def test_evaluate_showers_rejects_bad_inputs(geometry):
    ref = make_showers(geometry, 50, seed=0)
    with pytest.raises(FarmError, match="generated: 367 voxels per shower"):
        evaluate_showers(ref, (ref[0][:, :-1], ref[1]), geometry, classifier=False)
    bad = ref[0].copy()
    bad[3, 3] = np.inf
    with pytest.raises(FarmError, match="generated: 1 NaN/Inf values in showers"):
        evaluate_showers(ref, (bad, ref[1]), geometry, classifier=False)


def test_evaluate_jets_floors_and_mass_smearing():
    ref, _ = make_jets(2000, seed=0)
    gen, _ = make_jets(1000, seed=1, angle_smear=0.1)
    result = evaluate_jets(ref, gen, classifier_kwargs=SMALL, plots=False, metric_kwargs=FAST)
    m = result.metrics
    assert m["w1m"]["value"] > m["w1m"]["floor"] + 5 * (m["w1m"]["error"] + m["w1m"]["floor_error"])
    assert m["fpd"]["value"] > 10 * max(m["fpd"]["floor"], m["fpd"]["error"])
    assert abs(m["auc_high"]["floor"] - 0.5) < 0.06
    assert result.details["mass_units"].startswith("relative")
    with pytest.raises(FarmError, match="30 constituent slots, generated 20"):
        evaluate_jets(ref, gen[:, :20], classifier=False)


def test_cli_evaluate_prints_table_and_json(geometry, tmp_path, capsys):
    ref, gen = tmp_path / "ref.h5", tmp_path / "gen.h5"
    write_calochallenge(str(ref), *make_showers(geometry, 600, seed=0), geometry)
    write_calochallenge(str(gen), *make_showers(geometry, 300, seed=1, scale=1.05), geometry)
    out = tmp_path / "report"
    argv = [
        "evaluate",
        str(gen),
        str(ref),
        "--geometry",
        "ds1-photons",
        "--no-classifier",
        "--json",
    ]
    assert main([*argv, "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"]["sep/e_ratio"]["value"] > printed["metrics"]["sep/e_ratio"]["floor"]
    assert (out / "report.html").exists()
    assert (
        main(["evaluate", str(gen), str(ref), "--geometry", "ds1-photons", "--no-classifier"]) == 0
    )
    assert "sep/e_ratio" in capsys.readouterr().out
    assert main(["evaluate", str(gen), str(ref), "--geometry", "ds2", "--no-classifier"]) == 2
    assert "368 voxels per shower" in capsys.readouterr().err
