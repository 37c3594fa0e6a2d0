"""Two-stage training from a stream (`StageStream`): the same stage split and transforms as in
memory, reproducible epochs, CPU transforms, and a fit that learns like the in-memory one."""

from __future__ import annotations

import pytest
import torch
from two_stage_toys import THRESHOLD, tiny_config, toy_showers

from models.config import OptimConfig
from models.data import TrainData
from models.distill import DistillConfig, distill
from models.loop import seeded_generator
from models.stream import StreamData
from models.training import fit
from models.two_stage.model import TwoStageModel
from models.two_stage.training import StageStream, fit_stage_preprocessing, prepared_stage_data

MLP = {"kind": "mlp", "width": 64, "depth": 2, "embed_dim": 16, "fourier_scale": 1.0}
FLOW = {"process": {"kind": "flow_matching"}, "sampler": {"name": "midpoint", "nfe": 8}}


class ShuffledShowers:
    """Physical (showers, E_inc) batches in the in-memory loop's permutation (a BatchStream)."""

    def __init__(self, data: TrainData, shuffle: bool = True):
        self.data, self.shuffle = data, shuffle
        self.n_events = data.x.shape[0]

    def batches(self, epoch: int, rank: int, batch_size: int):
        n = self.n_events
        gen = seeded_generator(0, 4, epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        for i in range(n // batch_size):
            idx = order[i * batch_size : (i + 1) * batch_size]
            yield self.data.x[idx], self.data.cond[idx]


def _model(data: TrainData) -> TwoStageModel:
    model = TwoStageModel(tiny_config(transformer=False), data.x.shape[1], 1)
    fit_stage_preprocessing(model, model.stage_data(data), seed=3)
    return model


def test_stream_batches_are_the_in_memory_stage_split_up_to_the_dequantisation_noise():
    data = toy_showers(256, 0)
    model = _model(data)
    stream = StageStream(ShuffledShowers(data, shuffle=False), model, seed=3)
    first = next(stream.batches(0, 0, 64))
    head = TrainData(data.x[:64], data.cond[:64])
    memory, _ = prepared_stage_data(model, head, None, seed=3, fit=False)
    assert len(first) == len(memory) == 4
    x_e, c_e, x_s, c_s = first
    assert torch.equal(c_e, memory[1]) and torch.equal(c_s, memory[3])  # conditions: exact
    # voxels and layers above threshold carry no noise; those below are dequantised
    hit = head.x >= THRESHOLD
    assert torch.allclose(x_s[hit], memory[2][hit], atol=1e-5)
    rows = (model.layer_energies(head.x) >= THRESHOLD).all(1)
    assert rows.sum() > 32
    assert torch.allclose(x_e[rows], memory[0][rows], atol=1e-5)
    assert not torch.equal(x_s[~hit], memory[2][~hit])  # different noise streams


def test_an_epoch_repeats_the_next_reseeds_and_transforms_stay_on_the_cpu():
    data = toy_showers(256, 1)
    model = _model(data)
    stream = StageStream(ShuffledShowers(data), model, seed=3)
    model.to(torch.float64)  # the model may move or change after the stream is built
    first = list(stream.batches(0, 0, 64))
    again = list(stream.batches(0, 0, 64))
    other = list(stream.batches(1, 0, 64))
    assert len(first) == 4
    for a, b in zip(first, again, strict=True):
        assert all(torch.equal(s, t) for s, t in zip(a, b, strict=True))
    assert not torch.equal(first[0][2], other[0][2])
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in first[0])
    assert torch.is_grad_enabled()


def test_a_streamed_fit_learns_like_the_in_memory_fit():
    config = tiny_config({**FLOW, "network": MLP}, {**FLOW, "network": MLP}, transformer=False)
    optim = OptimConfig(epochs=4, batch_size=128, lr=3e-3, warmup_steps=20, ema_decay=0.99)
    train, val = toy_showers(2048, 0), toy_showers(400, 1)
    runs = {}
    for name, data in (("memory", train), ("stream", StreamData(ShuffledShowers(train), train))):
        seen: list[dict[str, float]] = []
        model = fit(config, optim, data, val, lambda m, c=None, s=seen: s.append(m))
        runs[name] = (model, seen)
    memory, stream = runs["memory"][1], runs["stream"][1]
    # same preprocessing (the subsample is the whole training set) ...
    a = runs["memory"][0].state_dict()
    b = runs["stream"][0].state_dict()
    for key in a:
        if "preprocessing" in key:
            assert torch.equal(a[key], b[key]), key
    # ... the loop's own batches (the stream serves its permutation), other dequantisation
    # noise: both stages learn to the same validation loss within 0.5 %
    for key in ("val_loss_energy", "val_loss_shape"):
        assert stream[-1][key] < 0.95 * stream[0][key], key
        assert stream[-1][key] == pytest.approx(memory[-1][key], rel=0.005), key


def test_a_two_stage_student_distils_from_a_stream_like_from_memory():
    config = tiny_config({**FLOW, "network": MLP}, {**FLOW, "network": MLP}, transformer=False)
    optim = OptimConfig(epochs=2, batch_size=128, lr=3e-3, warmup_steps=10, ema_decay=0.99)
    train, val = toy_showers(1024, 0), toy_showers(256, 1)
    teacher = fit(config, optim, train, val, lambda m, c=None: None)
    runs = {}
    for name, data in (("memory", train), ("stream", StreamData(ShuffledShowers(train), train))):
        seen: list[dict[str, float]] = []
        student = distill(
            teacher, DistillConfig(n_steps=6, stages=["shape"], sampler_nfe=1), optim, data,
            lambda m, c=None, s=seen: s.append(m), val=val,
        )  # fmt: skip
        runs[name] = (student, seen)
    student, seen = runs["stream"]
    assert student.config.shape.process.kind == "consistency"
    for key, value in teacher.energy.state_dict().items():  # the undistilled stage: the teacher's
        assert torch.equal(value, student.energy.state_dict()[key]), key
    # the loop's own permutation, other dequantisation noise: the same val loss within 2 %
    assert seen[-1]["val_loss"] == pytest.approx(runs["memory"][1][-1]["val_loss"], rel=0.02)
