"""The training loop: a plain function; metrics and checkpoints leave through an injected report.

AdamW, linear warm-up + cosine decay, EMA weights, gradient clipping, optional bf16 autocast and
torch.compile on GPU, deterministic seeding, DDP when torch.distributed is initialised (the caller
sets up the process group; this module never imports Ray).
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from models.checkpoint import (
    load_train_state,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_model,
    save_train_state,
)
from models.config import ModelConfig, OptimConfig
from models.generative import GenerativeModel

Report = Callable[[dict[str, float], str | None], None]
"""report(metrics, checkpoint_dir): called once per epoch on every rank (checkpoint on rank 0 only)."""


@dataclass
class TrainData:
    """Training or validation data in physical units: x [N, D], cond [N, C]."""

    x: Tensor
    cond: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to min_ratio at `total` steps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _mean_across_ranks(value: float, device: torch.device) -> float:
    if _rank_world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / _rank_world()[1]


def _generator(seed: int, *streams: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded from (seed, streams...) so every (epoch, rank) stream is reproducible."""
    mixed = seed
    for s in streams:
        mixed = (mixed * 1_000_003 + s) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(mixed)


@torch.no_grad()
def _ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    for p_ema, p in zip(ema.parameters(), net.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1 - decay)


@torch.no_grad()
def _validation_loss(
    model: GenerativeModel,
    net: nn.Module,
    x: Tensor,
    c: Tensor,
    batch: int,
    seed: int,
    device: torch.device,
    autocast: bool,
) -> float:
    """Mean loss on the validation set with a fixed noise stream (comparable across epochs)."""
    gen = _generator(seed, 999_983, device=device)
    total, count = 0.0, 0
    for start in range(0, x.shape[0], batch):
        xb, cb = x[start : start + batch].to(device), c[start : start + batch].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model.loss(xb, cb, net=net, generator=gen)
        total += loss.float().sum().item()
        count += xb.shape[0]
    return total / max(count, 1)


def fit(
    config: ModelConfig,
    optim: OptimConfig,
    train: TrainData,
    val: TrainData,
    report: Report,
    *,
    device: str | torch.device = "cpu",
    resume_from: str | None = None,
    card: dict[str, Any] | None = None,
) -> GenerativeModel:
    """Train a GenerativeModel; returns it with EMA weights (what the checkpoints hold)."""
    device = torch.device(device)
    rank, world = _rank_world()
    torch.manual_seed(optim.seed)
    model = GenerativeModel(config, train.x.shape[1], train.cond.shape[1])
    model.preprocessing.fit(train.x, train.cond, generator=_generator(optim.seed, 1))
    x_tr, c_tr = model.preprocessing.transform(train.x, train.cond, _generator(optim.seed, 2))
    x_va, c_va = model.preprocessing.transform(val.x, val.cond, _generator(optim.seed, 3))
    model.to(device)
    ema = copy.deepcopy(model.net).requires_grad_(False)
    opt = torch.optim.AdamW(
        model.net.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay
    )
    use_cuda = device.type == "cuda"
    autocast = optim.precision == "bf16" and use_cuda
    net: nn.Module = model.net
    if optim.compile and use_cuda:
        net = torch.compile(net)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if use_cuda else None
        )

    per_rank_batch = max(optim.batch_size // world, 1)
    steps_per_epoch = max(x_tr.shape[0] // (per_rank_batch * world), 1)
    total_steps = steps_per_epoch * optim.epochs
    start_epoch, step = 0, 0
    if resume_from is not None:
        start_epoch, step = _restore(resume_from, model, ema, opt, device)
    resumed_from = start_epoch

    for epoch in range(start_epoch, optim.epochs):
        t0 = time.perf_counter()
        model.net.train()
        perm = torch.randperm(x_tr.shape[0], generator=_generator(optim.seed, 4, epoch))
        mine = perm[: steps_per_epoch * per_rank_batch * world][rank::world]
        noise = _generator(optim.seed, 5, epoch, rank, device=device)
        running = 0.0
        for i in range(steps_per_epoch):
            idx = mine[i * per_rank_batch : (i + 1) * per_rank_batch]
            xb, cb = x_tr[idx].to(device), c_tr[idx].to(device)
            for group in opt.param_groups:
                group["lr"] = optim.lr * lr_factor(
                    step, optim.warmup_steps, total_steps, optim.min_lr_ratio
                )
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = model.loss(xb, cb, net=net, generator=noise).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if optim.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.net.parameters(), optim.grad_clip)
            opt.step()
            step += 1
            _ema_update(ema, model.net, min(optim.ema_decay, (1 + step) / (10 + step)))
            running += loss.item()
        if not math.isfinite(running):
            raise FloatingPointError(f"training loss became {running} at epoch {epoch + 1}")
        seconds = time.perf_counter() - t0
        metrics = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": _mean_across_ranks(running / steps_per_epoch, device),
            "val_loss": _validation_loss(
                model, ema, x_va, c_va, 4 * per_rank_batch, optim.seed, device, autocast
            ),
            "lr": opt.param_groups[0]["lr"],
            "epoch_seconds": seconds,
            "samples_per_second": steps_per_epoch * per_rank_batch * world / seconds,
            "resumed_from_epoch": resumed_from,
        }
        last = epoch + 1 == optim.epochs
        if rank == 0 and ((epoch + 1) % optim.checkpoint_every == 0 or last):
            with tempfile.TemporaryDirectory(prefix="farm-ckpt-") as ckpt:
                _save(ckpt, model, ema, opt, epoch + 1, step, {**(card or {}), "metrics": metrics})
                report(metrics, ckpt)
        else:
            report(metrics, None)
    model.net.load_state_dict(ema.state_dict())
    return model.eval()


def _ema_state_dict(model: GenerativeModel, ema: nn.Module) -> dict[str, Tensor]:
    state = model.state_dict()
    state.update({f"net.{k}": v for k, v in ema.state_dict().items()})
    return state


def _save(
    directory: str,
    model: GenerativeModel,
    ema: nn.Module,
    opt: torch.optim.Optimizer,
    epoch: int,
    step: int,
    card: dict[str, Any],
) -> None:
    save_model(
        model,
        directory,
        card={**card, "epoch": epoch, "step": step},
        state_dict=_ema_state_dict(model, ema),
    )
    opt_tensors, opt_meta = optimizer_to_tensors(opt.state_dict())
    raw = {f"raw.{k}": v for k, v in model.net.state_dict().items()}
    save_train_state(
        directory, {**raw, **opt_tensors}, {"epoch": epoch, "step": step, "optimizer": opt_meta}
    )


def _restore(
    directory: str,
    model: GenerativeModel,
    ema: nn.Module,
    opt: torch.optim.Optimizer,
    device: torch.device,
) -> tuple[int, int]:
    """Load raw weights, EMA weights and optimizer state; returns (epoch, step) to continue from."""
    from safetensors.torch import load_file

    from models.checkpoint import WEIGHTS

    weights = load_file(f"{directory}/{WEIGHTS}")
    ema.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("net.")})
    tensors, meta = load_train_state(directory)
    model.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("raw.")})
    opt.load_state_dict(
        optimizer_from_tensors(
            {k: v.to(device) for k, v in tensors.items() if k.startswith("opt.")}, meta["optimizer"]
        )
    )
    return int(meta["epoch"]), int(meta["step"])
