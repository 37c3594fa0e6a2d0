"""farm evaluate for events: reference against reference sits at the floor (AUC near 0.5)."""

from __future__ import annotations

import json

import pytest

from farm.data.events import EventGenConfig, generate_events
from farm.formats.events import write_events_parquet


@pytest.fixture(scope="module")
def two_dis_files(tmp_path_factory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("events-eval")
    return tuple(
        write_events_parquet(
            str(d / f"dis-{s}.parquet"), generate_events(EventGenConfig("dis", 1000), seed=s)
        )
        for s in (11, 12)
    )


def test_reference_against_reference_is_at_the_floor(two_dis_files, tmp_path, capsys):
    from farm.cli import main

    out = tmp_path / "ev"
    gen, ref = two_dis_files
    assert main(["evaluate", gen, ref, "--out", str(out)]) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    auc = metrics["auc_event"]
    assert abs(auc["value"] - 0.5) < 0.1 and abs(auc["floor"] - 0.5) < 0.1
    for key in ("sep/n_reco", "sep/n_photon", "sep/met", "sep/ht", "sep_particle_log_pt"):
        assert metrics[key]["value"] < 0.1, key
    assert metrics["sep_jet_pt"]["value"] < 0.2 and metrics["sep_jet_response"]["value"] < 0.2
    details = json.loads((out / "metrics.json").read_text())["details"]["jet_response"]
    for part in ("a", "b", "g"):  # the synthetic detector's jet response is near 1 for both
        assert details[part]["jets"] > 20 and abs(details[part]["median"] - 1.0) < 0.15
    for key in ("sep_jet_c2", "sep_jet_d2", "sep_jet_c2_residual", "sep_jet_d2_residual"):
        assert metrics[key]["value"] < 0.3 and metrics[key]["floor"] < 0.3, key
    every = json.loads((out / "metrics.json").read_text())["details"]
    for key in ("jet_c2_residual", "jet_d2_residual"):  # reco substructure tracks the truth's
        for part in ("a", "b", "g"):  # (3 in 4 DIS jets have < 3 constituents: C2 = D2 = 0)
            assert every[key][part]["jets"] == details[part]["jets"]
            assert abs(every[key][part]["median"]) < 0.02, key
    for name in ("n_reco", "met", "ht", "log_pt", "jet_response", "jet_c2", "jet_d2_residual"):
        assert (out / f"{name}.png").stat().st_size > 5000, name
