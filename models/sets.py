"""Sets given sets: reconstructed particle-flow candidates given truth particles (Parnassus-style).

Conditional flow matching on the linear path (Lipman et al. 2022; `RectifiedFlow`) in two stages,
as in Parnassus (Dreyer et al. 2024):

1. `EventFlow`: the event-level vector y = (log(n_reco + u), summaries), u ~ U(0, 1)
   dequantising the count, given a permutation-invariant truth encoding (masked mean of a
   transformer over truth tokens plus the truth count); n_reco = floor(exp(y_0)) clipped to [0, n_max].
2. `ParticleFlow`: a transformer over the reco tokens: each block self-attends among the reco
   tokens (key mask: the n_reco valid slots) and cross-attends to the truth tokens (key mask: the
   valid truth particles); FiLM conditioning on time, pooled truth and y. No positional encoding,
   so the velocity is equivariant in the reco set and invariant in the truth set; one learnt
   always-valid token on each side keeps attention defined for empty sets.

The class of a candidate is a continuous embedding: class k becomes 2 e_k - 1 in R^C, generated
jointly with the kinematics and decoded by argmax (`class_embedding`, `decode_class`).
Masks are bool, True = a real particle. Features are expected standardised by the caller.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from models.networks.embeddings import GaussianFourierProjection
from models.noise import rand, randn
from models.processes.flow_matching import RectifiedFlow


class SetFlowConfig(BaseModel):
    """Sizes of a set-to-set model (truth features, reco kinematics, classes, event summaries)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    truth_dim: int = Field(ge=1)
    reco_dim: int = Field(ge=1)
    n_classes: int = Field(ge=2)
    event_dim: int = Field(0, ge=0, description="summaries after log n (MET x/y, HT, ...)")
    n_max: int = Field(ge=1, description="most reco candidates per event")
    width: int = Field(64, ge=8)
    heads: int = Field(4, ge=1)
    layers: int = Field(2, ge=1)


def class_embedding(cls: Tensor, n_classes: int) -> Tensor:
    """Class indices (...) -> continuous (..., C) embedding 2 one_hot - 1."""
    return 2.0 * nn.functional.one_hot(cls.long(), n_classes).float() - 1.0


def decode_class(z: Tensor) -> Tensor:
    """Continuous class embedding (..., C) -> class index by argmax."""
    return z.argmax(dim=-1)


def masked_mean(h: Tensor, mask: Tensor) -> Tensor:
    """Mean over the valid tokens of (B, N, W) under a (B, N) mask."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


class TruthEncoder(nn.Module):
    """Transformer encoder over truth tokens with a key mask; padded outputs are zero."""

    def __init__(self, truth_dim: int, width: int, heads: int, layers: int):
        super().__init__()
        self.embed = nn.Linear(truth_dim, width)
        self.count = nn.Linear(1, width)
        self.token = nn.Parameter(torch.zeros(1, 1, width))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True
            )
            for _ in range(layers)
        )

    def forward(self, truth: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(tokens (B, 1 + N, W), key padding mask (B, 1 + N), pooled (B, W)).

        pooled = masked mean of the tokens + a linear map of log(1 + n_truth): attention and means
        forget the set size, which the reco multiplicity depends on.
        """
        h = self.embed(truth) * mask.unsqueeze(-1)
        h = torch.cat([self.token.expand(len(h), 1, -1), h], dim=1)
        valid = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=~valid) * valid.unsqueeze(-1)
        log_n = torch.log1p(mask.sum(1, keepdim=True).to(h.dtype))
        return h, ~valid, masked_mean(h, valid) + self.count(log_n)


class _EventNet(nn.Module):
    """Velocity of the event-level vector given time and the pooled truth encoding."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        self.time = GaussianFourierProjection(width)
        self.net = nn.Sequential(
            nn.Linear(dim + 2 * width, 2 * width),
            nn.SiLU(),
            nn.Linear(2 * width, 2 * width),
            nn.SiLU(),
            nn.Linear(2 * width, dim),
        )

    def forward(self, y: Tensor, t: Tensor, pooled: Tensor) -> Tensor:
        """v(y_t, t | truth) for (B, dim)."""
        return self.net(torch.cat([y, self.time(t), pooled], dim=-1))


class EventFlow(nn.Module):
    """Event-level conditional flow: y = (log(n + u), summaries) given the truth set."""

    def __init__(self, config: SetFlowConfig):
        super().__init__()
        c = config
        self.config, self.dim, self.process = c, 1 + c.event_dim, RectifiedFlow()
        self.encoder = TruthEncoder(c.truth_dim, c.width, c.heads, c.layers)
        self.net = _EventNet(self.dim, c.width)

    def targets(self, n_reco: Tensor, event: Tensor | None, generator=None) -> Tensor:
        """Training vector y (B, 1 + event_dim): dequantised log count, then the summaries."""
        u = rand((len(n_reco),), generator, like=torch.zeros(0))
        log_n = torch.log(n_reco.float() + u).unsqueeze(1)
        return log_n if event is None else torch.cat([log_n, event.float()], dim=1)

    def loss(self, truth, truth_mask, n_reco, event=None, generator=None) -> Tensor:
        """Mean flow-matching loss of the event-level vector."""
        pooled = self.encoder(truth, truth_mask)[2]
        y = self.targets(n_reco, event, generator)
        return self.process.loss(self.net, y, pooled, generator).mean()

    @torch.no_grad()
    def sample(self, truth, truth_mask, nfe=20, sampler="midpoint", generator=None):
        """(n_reco (B,) long in [0, n_max], y (B, 1 + event_dim))."""
        pooled = self.encoder(truth, truth_mask)[2]
        y = self.process.sample(
            self.net, (len(truth), self.dim), pooled, sampler=sampler, nfe=nfe, generator=generator
        )
        n = torch.floor(torch.exp(y[:, 0].clamp(max=20.0))).long()
        return n.clamp(0, self.config.n_max), y


class _Block(nn.Module):
    """FiLM-conditioned reco self-attention, cross-attention to truth, feed-forward."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.n1, self.n2, self.n3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.film = nn.Linear(width, 2 * width)

    def forward(self, h, emb, reco_pad, memory, truth_pad) -> Tensor:
        """One block on reco tokens h (B, 1 + N, W)."""
        scale, shift = self.film(emb).unsqueeze(1).chunk(2, dim=-1)
        x = self.n1(h) * (1 + scale) + shift
        h = h + self.self_attn(x, x, x, key_padding_mask=reco_pad, need_weights=False)[0]
        x = self.n2(h)
        h = (
            h
            + self.cross_attn(x, memory, memory, key_padding_mask=truth_pad, need_weights=False)[0]
        )
        return h + self.ff(self.n3(h))


class ParticleFlow(nn.Module):
    """Reco-token velocity field: self-attention over reco, cross-attention to truth, masked."""

    def __init__(self, config: SetFlowConfig):
        super().__init__()
        c = config
        self.config, self.dim = c, c.reco_dim + c.n_classes
        self.encoder = TruthEncoder(c.truth_dim, c.width, c.heads, c.layers)
        self.time = GaussianFourierProjection(c.width)
        self.cond = nn.Sequential(
            nn.Linear(2 * c.width + 1 + c.event_dim, c.width),
            nn.SiLU(),
            nn.Linear(c.width, c.width),
        )
        self.embed = nn.Linear(self.dim, c.width)
        self.token = nn.Parameter(torch.zeros(1, 1, c.width))
        self.blocks = nn.ModuleList(_Block(c.width, c.heads) for _ in range(c.layers))
        self.out = nn.Linear(c.width, self.dim)

    def encode(self, truth: Tensor, truth_mask: Tensor, y: Tensor):
        """The truth memory, its padding mask and the per-event conditioning base."""
        memory, truth_pad, pooled = self.encoder(truth, truth_mask)
        return memory, truth_pad, torch.cat([pooled, y], dim=-1)

    def velocity(self, x: Tensor, t: Tensor, reco_mask: Tensor, encoded) -> Tensor:
        """v(x_t, t) for reco tokens x (B, N, D); zero at padded slots."""
        memory, truth_pad, base = encoded
        emb = self.cond(torch.cat([self.time(t), base], dim=-1))
        h = torch.cat([self.token.expand(len(x), 1, -1) + emb.unsqueeze(1), self.embed(x)], 1)
        pad = torch.cat([torch.zeros_like(reco_mask[:, :1]), ~reco_mask], dim=1)
        for block in self.blocks:
            h = block(h, emb, pad, memory, truth_pad)
        return self.out(h[:, 1:]) * reco_mask.unsqueeze(-1)

    def loss(self, truth, truth_mask, reco, reco_mask, y, generator=None) -> Tensor:
        """Masked flow-matching loss: mean over valid reco tokens of ||v - (x_1 - x_0)||^2."""
        x_0 = randn(tuple(reco.shape), generator, like=reco)
        t = rand((len(reco),), generator, like=reco)
        x_t = (1 - t.view(-1, 1, 1)) * x_0 + t.view(-1, 1, 1) * reco
        v = self.velocity(x_t, t, reco_mask, self.encode(truth, truth_mask, y))
        err = (v - (reco - x_0)).pow(2).mean(-1) * reco_mask
        return err.sum() / reco_mask.sum().clamp_min(1)

    @torch.no_grad()
    def sample(self, truth, truth_mask, reco_mask, y, nfe=20, sampler="midpoint", generator=None):
        """Reco tokens (B, N, D) for the valid slots of reco_mask (padded slots are zero)."""
        encoded = self.encode(truth, truth_mask, y)
        z = randn((len(truth), reco_mask.shape[1], self.dim), generator, like=truth)

        def v(x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
            return self.velocity(x, t, reco_mask, encoded)

        x = RectifiedFlow().sample_from(v, z, None, sampler=sampler, nfe=nfe)
        return x * reco_mask.unsqueeze(-1)


class SetToSetModel(nn.Module):
    """Event-level flow, then the particle flow conditioned on its output (two-stage sampling)."""

    def __init__(self, config: SetFlowConfig):
        super().__init__()
        self.config = config
        self.event = EventFlow(config)
        self.particles = ParticleFlow(config)

    def loss(self, truth, truth_mask, reco, reco_cls, reco_mask, event=None, generator=None):
        """Event loss + particle loss; reco (B, N, reco_dim), reco_cls (B, N) class indices."""
        n_reco = reco_mask.sum(1)
        y = self.event.targets(n_reco, event, generator)
        tokens = torch.cat([reco, class_embedding(reco_cls, self.config.n_classes)], dim=-1)
        tokens = tokens * reco_mask.unsqueeze(-1)
        return self.event.loss(truth, truth_mask, n_reco, event, generator) + self.particles.loss(
            truth, truth_mask, tokens, reco_mask, y, generator
        )

    @torch.no_grad()
    def generate(self, truth, truth_mask, nfe=20, sampler="midpoint", generator=None):
        """Dict: n (B,), mask (B, n_max), reco (B, n_max, reco_dim), cls (B, n_max), y (B, .)."""
        n, y = self.event.sample(truth, truth_mask, nfe, sampler, generator)
        mask = torch.arange(self.config.n_max).unsqueeze(0) < n.unsqueeze(1)
        x = self.particles.sample(truth, truth_mask, mask, y, nfe, sampler, generator)
        reco, emb = x[..., : self.config.reco_dim], x[..., self.config.reco_dim :]
        cls = torch.where(mask, decode_class(emb), torch.full_like(n[:, None].expand_as(mask), -1))
        return {"n": n, "mask": mask, "reco": reco, "cls": cls, "y": y}
