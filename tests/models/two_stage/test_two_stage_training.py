"""Two-stage training through `fit` and distillation through `distill`: both stages learn the toy
showers, checkpoints load as one model, resume and distillation-resume are bit for bit."""

from __future__ import annotations

import shutil

import pytest
import torch
from two_stage_toys import THRESHOLD, tiny_config, toy_showers

from models.checkpoint import read_card
from models.config import OptimConfig
from models.distill import DistillConfig, distill
from models.loading import load_model
from models.training import fit
from models.two_stage.model import TwoStageModel

MLP = {"kind": "mlp", "width": 64, "depth": 2, "embed_dim": 16, "fourier_scale": 1.0}
FLOW = {"process": {"kind": "flow_matching"}, "sampler": {"name": "midpoint", "nfe": 8}}


class Checkpoints:
    """A report(metrics, checkpoint_dir) that keeps every checkpoint by epoch."""

    def __init__(self, root):
        self.root, self.metrics, self.dirs = root, [], {}

    def __call__(self, metrics, checkpoint_dir=None):
        self.metrics.append(metrics)
        if checkpoint_dir is not None:
            dest = self.root / f"epoch-{metrics['epoch']}"
            shutil.copytree(checkpoint_dir, dest)
            self.dirs[metrics["epoch"]] = dest


def _fractions(layer_e: torch.Tensor) -> torch.Tensor:
    return (layer_e / layer_e.sum(1, keepdim=True)).mean(0)


def _core_share(voxels: torch.Tensor) -> torch.Tensor:
    """Mean share of the innermost radial bin in layer 1 (4 angular x 3 radial)."""
    layer = voxels[:, 6:18].double().reshape(-1, 4, 3).sum(1)
    return (layer[:, 0] / layer.sum(1).clamp_min(1e-9)).mean()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    config = tiny_config({**FLOW, "network": MLP}, {**FLOW, "network": MLP}, transformer=False)
    optim = OptimConfig(epochs=10, batch_size=128, lr=3e-3, warmup_steps=20, ema_decay=0.99)
    report = Checkpoints(tmp_path_factory.mktemp("fit"))
    model = fit(config, optim, toy_showers(4000, 0), toy_showers(500, 1), report)
    return model, report


def test_both_stages_learn_the_toy_showers(trained):
    model, report = trained
    first, last = report.metrics[0], report.metrics[-1]
    for key in ("train_loss_energy", "train_loss_shape", "val_loss_energy", "val_loss_shape"):
        assert last[key] < first[key], key
    assert last["train_loss"] == pytest.approx(last["train_loss_energy"] + last["train_loss_shape"])
    reference = toy_showers(2000, 5)
    parts = model.generate_parts(reference.cond, generator=torch.Generator().manual_seed(0))
    ref_layers = model.layer_energies(reference.x)
    assert torch.allclose(_fractions(parts.layer_energies), _fractions(ref_layers), atol=0.01)
    ratio_ref = ref_layers.sum(1) / reference.cond[:, 0]
    ratio_gen = parts.e_tot / reference.cond[:, 0]
    assert float(ratio_gen.mean()) == pytest.approx(float(ratio_ref.mean()), abs=0.01)
    assert float(ratio_gen.std()) == pytest.approx(float(ratio_ref.std()), rel=0.2)
    assert float(_core_share(parts.voxels)) == pytest.approx(
        float(_core_share(reference.x)), abs=0.02
    )
    hits_ref = float((reference.x > 0).double().mean())
    assert float((parts.voxels > 0).double().mean()) == pytest.approx(hits_ref, abs=0.05)


def test_checkpoint_is_one_two_stage_model(trained):
    model, report = trained
    ckpt = report.dirs[10]
    card = read_card(ckpt)
    assert card["config"]["kind"] == "two_stage" and card["epoch"] == 10
    assert card["metrics"]["val_loss_shape"] == report.metrics[-1]["val_loss_shape"]
    loaded = load_model(ckpt)
    assert isinstance(loaded, TwoStageModel)
    for key, value in model.state_dict().items():  # the checkpoint holds the EMA weights
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_two_stage_resume_is_bit_for_bit(tmp_path):
    config = tiny_config({"process": {"kind": "edm"}}, {"process": {"kind": "vp_sde"}})
    optim = OptimConfig(epochs=3, batch_size=64, warmup_steps=3)
    train, val = toy_showers(256, 2), toy_showers(64, 3)
    report = Checkpoints(tmp_path)
    full = fit(config, optim, train, val, report)
    resumed = fit(config, optim, train, val, lambda m, c=None: None, resume_from=report.dirs[1])
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize("stages", [["shape"], ["energy", "shape"]])
def test_distilled_two_stage_student(trained, tmp_path, stages):
    teacher, _ = trained
    report = Checkpoints(tmp_path)
    optim = OptimConfig(epochs=2, batch_size=128, lr=1e-3, warmup_steps=0, ema_decay=0.99)
    student = distill(
        teacher,
        DistillConfig(n_steps=8, stages=stages, sampler_nfe=2),
        optim,
        toy_showers(1000, 6),
        report,
        val=toy_showers(200, 7),
    )
    assert isinstance(student, TwoStageModel)
    for name in ("energy", "shape"):
        process = getattr(student.config, name).process.kind
        assert process == ("consistency" if name in stages else "flow_matching"), name
    if "energy" not in stages:  # an undistilled stage is the teacher's, bit for bit
        for key, value in teacher.energy.state_dict().items():
            assert torch.equal(value, student.energy.state_dict()[key]), key
    keys = {f"val_loss_{name}" for name in stages} if len(stages) > 1 else {"val_loss"}
    assert keys <= set(report.metrics[-1])
    ckpt = report.dirs[2]
    assert read_card(ckpt)["distilled_from"]["shape"]["process"]["kind"] == "flow_matching"
    loaded = load_model(ckpt)
    assert loaded.default_sampler == "consistency" and loaded.config.sampler.nfe == 2
    parts = loaded.generate_parts(
        toy_showers(100, 8).cond, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(parts.layer_energies.sum(1), parts.e_tot)
    assert bool(((parts.voxels == 0) | (parts.voxels >= THRESHOLD)).all())
    assert float(_core_share(parts.voxels)) == pytest.approx(0.75, abs=0.1)


def test_distillation_resume_is_bit_for_bit(trained, tmp_path):
    teacher, _ = trained
    config = DistillConfig(n_steps=6)
    optim = OptimConfig(epochs=3, batch_size=128, warmup_steps=0)
    data = toy_showers(512, 9)
    report = Checkpoints(tmp_path)
    full = distill(teacher, config, optim, data, report)
    resumed = distill(
        teacher, config, optim, data, lambda m, c=None: None, resume_from=report.dirs[2]
    )
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
