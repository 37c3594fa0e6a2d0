"""models.stream: the training loop and distillation on streamed batches, and per-epoch
reproducible transforms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.config import ModelConfig, OptimConfig
from models.data import TrainData
from models.distill import DistillConfig, distill
from models.loop import Objective, seeded_generator, train_loop
from models.stream import StreamData, TransformedStream, prepare_stream
from models.training import fit


class PermutedStream:
    """The in-memory loop's own batches (seeded permutation of the tensors), served as a stream."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], seed: int):
        self.tensors, self.seed = tensors, seed
        self.n_events = tensors[0].shape[0]

    def batches(self, epoch: int, rank: int, batch_size: int):
        perm = torch.randperm(self.n_events, generator=seeded_generator(self.seed, 4, epoch))
        for i in range(self.n_events // batch_size):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            yield tuple(t[idx] for t in self.tensors)


class ShortStream(PermutedStream):
    """A stream that delivers one batch fewer than an epoch needs."""

    def batches(self, epoch: int, rank: int, batch_size: int):
        yield from list(super().batches(epoch, rank, batch_size))[:-1]


class NoisyStandardise(nn.Module):
    """A preprocessing with a random transform (like dequantisation noise): x + u, u ~ U(0, 1)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))

    def fit(self, x, cond, generator=None):
        self.mean.copy_(x.mean())

    def transform(self, x, cond, generator=None):
        return x - self.mean + torch.rand(x.shape, generator=generator), cond


def _regression(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(96, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(96, 1, generator=g)
    return x, y


class _Saved(nn.Module):
    """A regression network inside a savable model (config, dim, cond_dim for its card)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(3, 1)
        self.config, self.dim, self.cond_dim = ModelConfig(), 3, 0


def _fit(train, epochs: int = 3) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = _Saved()
    net = model.net
    objective = Objective(net, lambda m, b, g: (m(b[0]) - b[1]).pow(2).mean(1))
    optim = OptimConfig(epochs=epochs, batch_size=16, lr=1e-2, warmup_steps=1, checkpoint_every=99)
    seen = []
    train_loop(model, objective, train, None, optim, lambda m, c: seen.append(m["train_loss"]))
    return {"losses": torch.tensor(seen), **net.state_dict()}


def test_a_stream_of_the_same_batches_trains_bit_for_bit_like_tensors():
    x, y = _regression()
    in_memory = _fit((x, y))
    streamed = _fit(PermutedStream((x, y), seed=0))
    assert in_memory["losses"][-1] < in_memory["losses"][0]  # it learns
    for key, value in in_memory.items():
        assert torch.equal(value, streamed[key]), key


def test_a_stream_that_ends_early_fails_naming_the_epoch():
    x, y = _regression()
    with pytest.raises(RuntimeError, match=r"ended after 5 of 6 batches in epoch 1"):
        _fit(ShortStream((x, y), seed=0))


def test_transformed_stream_repeats_an_epoch_and_reseeds_the_next():
    x, y = _regression()
    data = StreamData(PermutedStream((x, y), seed=1), TrainData(x, y))
    pre = NoisyStandardise()
    stream, val = prepare_stream(pre, data, TrainData(x[:8], y[:8]), seed=3)
    assert pre.mean.item() == pytest.approx(x.mean().item())  # fitted on the subsample
    assert isinstance(stream, TransformedStream) and stream.n_events == 96
    first = [b[0] for b in stream.batches(0, 0, 16)]
    again = [b[0] for b in stream.batches(0, 0, 16)]
    other = [b[0] for b in stream.batches(1, 0, 16)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    # the noise is in [0, 1) on top of the centred events
    noise = val[0] - (x[:8] - pre.mean)
    assert noise.min() >= 0.0 and noise.max() < 1
    assert torch.is_grad_enabled()  # the transform's no_grad does not leak into the consumer


def test_a_distillation_from_a_stream_of_the_same_batches_is_bit_for_bit_the_in_memory_one():
    mlp = {"kind": "mlp", "width": 32, "depth": 2, "embed_dim": 16, "fourier_scale": 1.0}
    config = ModelConfig.model_validate(
        {"network": mlp, "process": {"kind": "edm"}, "preprocessing": {"kind": "standard"}}
    )
    g = torch.Generator().manual_seed(4)
    data = TrainData(torch.randn(256, 2, generator=g) * 2.0 + 1.0, torch.rand(256, 1, generator=g))
    val = TrainData(data.x[:32], data.cond[:32])
    optim = OptimConfig(epochs=2, batch_size=64, lr=1e-3, warmup_steps=0, seed=5)
    teacher = fit(config, optim, data, val, lambda m, c=None: None)
    students, losses = {}, {}
    stream = StreamData(PermutedStream((data.x, data.cond), seed=optim.seed), data)
    for name, train in (("memory", data), ("stream", stream)):
        seen: list[dict[str, float]] = []
        students[name] = distill(
            teacher, DistillConfig(n_steps=6), optim, train, lambda m, c=None, s=seen: s.append(m),
            val=val,
        )  # fmt: skip
        losses[name] = [m["val_loss"] for m in seen]
    assert losses["stream"] == losses["memory"] and len(losses["memory"]) == 2
    memory, streamed = students["memory"].state_dict(), students["stream"].state_dict()
    for key, value in memory.items():
        assert torch.equal(value, streamed[key]), key
    assert students["stream"].config.process.kind == "consistency"
