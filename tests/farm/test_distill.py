"""Jets through `farm train` (Pythia reference, EPiC flow matching), `farm generate`, and a distill
job on top of the jet model."""

import numpy as np
import pytest
import torch
from tiny_kinds import tiny_distill_job

from farm import registry
from farm.campaign.run import execute, submit
from farm.cli import main
from farm.errors import FarmError
from farm.formats.jets import read_jets_file
from farm.formats.reader import read_jets
from farm.generation import jet_sample
from farm.samples import JetTruth
from farm.specs import parse_job
from farm.train import run_training


def jets_job() -> object:
    return parse_job(
        {
            "name": "tiny-jets",
            "data": {
                "source": "simulated_jets",
                "process": "top",
                "events": 300,
                "shard_size": 150,
            },
            "model": {
                "network": {"kind": "epic", "n_features": 3, "width": 32, "depth": 2},
                "preprocessing": {"kind": "pointcloud", "n_features": 3},
                "sampler": {"name": "euler", "nfe": 4},
            },
            "optim": {"epochs": 2, "batch_size": 64, "warmup_steps": 2},
            "resources": {"workers": 2, "use_gpu": False},
            "validation_events": 60,
        },
        "test",
        kind="train",
    )


def distill_job(teacher: str):
    """A 2-epoch consistency distillation of a tiny jet teacher."""
    return tiny_distill_job(teacher, "tiny-jets-cd", epochs=2, validation_events=60)


@pytest.mark.slow  # ~55 s; farm distil runs in the default suite through test_train_points
def test_jet_teacher_trains_and_distils_to_a_one_step_student(ray_session, farm_home):
    teacher = run_training(jets_job())
    info = registry.show("tiny-jets@candidate")
    assert info["card"]["data"]["kind"] == "jets" and info["card"]["data"]["n_particles"] == 30
    assert info["card"]["data"]["split"]["n_train"] == 210
    assert info["tags"]["farm.data"] == "jets"
    client = registry.client()
    run = client.get_run(teacher.mlflow_run_id)
    assert {"val_w1m", "val_fpd", "val_median_mass_reference"} <= set(run.data.metrics)
    # the reference the model saw is physical: fully merged top jets, 30 hardest constituents
    assert 100.0 < run.data.metrics["val_median_mass_reference"] < 190.0
    artifacts = {a.path for a in client.list_artifacts(teacher.mlflow_run_id, "validation")}
    assert "validation/jet_mass.png" in artifacts and "validation/metrics.json" in artifacts

    # `farm generate`: the teacher's held-out test split, conditions and reference side by side
    gen_url, ref_url = str(farm_home / "gen.parquet"), str(farm_home / "ref.h5")
    argv = ["generate", "tiny-jets@candidate", "--out", gen_url, "--reference-out", ref_url]
    assert main(argv) == 0
    generated, reference = read_jets_file(gen_url)[0], read_jets_file(ref_url)[0]
    assert len(generated["jet_features"]) == len(reference["jet_features"]) == 60
    np.testing.assert_array_equal(
        generated["constituents"][:, :, 3], reference["constituents"][:, :, 3]
    )  # each generated jet has its reference jet's constituent count
    assert main(["generate", "tiny-jets@candidate", "--out", str(farm_home / "x.csv")]) == 2
    # a campaign of jets conditioned row by row on the reference file's truth (pT, eta, count)
    doc = {"kind": "campaign", "name": "jets", "model": "tiny-jets@candidate", "events": 130}
    doc.update(shard_size=50, formats=["parquet", "h5"], resources={"actors": 2})
    with pytest.raises(FarmError, match="generates jets and takes jet-truth"):
        submit(parse_job({**doc, "conditions": {"distribution": "discrete", "values": [1.0]}}, "t"))
    campaign = submit(
        parse_job({**doc, "conditions": {"distribution": "jet-truth", "url": ref_url}}, "t")
    )
    summary = execute(campaign.id)
    assert summary.events == 130 and summary.shards == 3
    jets = read_jets(campaign.id).as_dict()
    truth_counts = reference["constituents"][:, :, 3].sum(1)
    assert (jets["constituents"][:, :, 3].sum(1) == truth_counts[np.arange(130) % 60]).all()
    np.testing.assert_allclose(
        jets["jet_features"][:, 0], reference["jet_features"][np.arange(130) % 60, 0]
    )
    h5 = read_jets(campaign.path("h5")).as_dict()
    np.testing.assert_array_equal(h5["constituents"], jets["constituents"])
    assert np.isfinite(jets["jet_features"]).all()

    student = run_training(distill_job("tiny-jets@candidate"))
    mv = registry.resolve("tiny-jets-cd@candidate")
    assert mv.tags["farm.teacher"] == f"tiny-jets/{teacher.version}"
    loaded = registry.load("tiny-jets-cd@candidate")
    model, card = loaded.model, loaded.card
    assert card.config["process"]["kind"] == "consistency"
    assert card.config["sampler"] == {"name": "consistency", "nfe": 1, "options": {}}
    assert card.data.split == info["card"]["data"]["split"]  # the teacher's data and split
    truth = JetTruth(np.full(5, 1000.0), np.full(5, 0.5), np.full(5, 12))
    jets = jet_sample(model, truth, generator=torch.Generator())
    assert (jets.constituents[:, :, 3].sum(1) == 12).all()
    assert np.isfinite(jets.jet_features).all()
    assert student.metrics["epoch"] == 2

    with pytest.raises(FarmError, match="already a consistency model"):
        run_training(distill_job("tiny-jets-cd@candidate"))
    with pytest.raises(FarmError, match=r"model 'nope' not found.*known: tiny-jets"):
        run_training(distill_job("nope@candidate"))
