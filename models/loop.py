"""The one training loop: AdamW, linear warm-up + cosine decay, EMA, gradient clipping, bf16, DDP.

What it optimises is injected as an `Objective` (the trainable networks and their per-sample
loss), so diffusion and flow training (`models.training.fit`), the two-stage shower model and
consistency distillation (`models.distill`) share one loop. Metrics and checkpoints leave through
an injected `report(metrics, checkpoint_dir)`; DDP is used when torch.distributed is initialised
(the caller sets up the process group; this module never imports Ray). Every random stream is
seeded from (seed, stream, epoch, rank), so a run resumed from a checkpoint continues bit for bit.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from models.checkpoint import (
    WEIGHTS,
    load_train_state,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_model,
    save_train_state,
)
from models.config import OptimConfig
from models.data import BatchStream, TrainData

Report = Callable[[dict[str, float], str | None], None]
"""report(metrics, checkpoint_dir): called once per epoch on every rank (checkpoint on rank 0 only)."""

Batch = tuple[Tensor, ...]
"""Prepared (network-space) tensors indexed together, e.g. (x, cond)."""

LossFn = Callable[[nn.Module, Batch, torch.Generator | None], Tensor | dict[str, Tensor]]
"""loss(trainable, batch, generator) -> per-sample loss [B], or named per-sample losses."""


@dataclass
class Objective:
    """What the loop optimises.

    Attributes:
        trainable: The networks AdamW updates, the EMA averages and checkpoints store; they are
            submodules of the saved model. An `nn.ModuleDict` holds several networks, and each
            one's gradient norm is clipped on its own (so jointly trained networks train as if
            alone).
        loss: Per-sample loss of `trainable` (the raw module, its compiled or DDP view, or the
            EMA copy for validation) on a batch. A dict of named per-sample losses is summed, and
            each name is reported as `train_loss_<name>` / `val_loss_<name>`.
        after_step: Called after every optimiser step (e.g. distillation's target-network EMA).
        aux: Further modules whose weights belong to the resume state (e.g. target networks).
    """

    trainable: nn.Module
    loss: LossFn
    after_step: Callable[[], None] | None = None
    aux: dict[str, nn.Module] = field(default_factory=dict)


def joint_objective(parts: dict[str, Objective]) -> Objective:
    """Several objectives trained as one: part i sees batch[2i:2i + 2], its own (x, cond) pair."""

    def loss(nets: nn.Module, batch: Batch, generator: torch.Generator | None) -> dict[str, Tensor]:
        out = {}
        for i, (name, part) in enumerate(parts.items()):
            value = part.loss(nets[name], batch[2 * i : 2 * i + 2], generator)
            if isinstance(value, dict):
                raise TypeError(f"part {name!r}: joint objectives take per-sample losses")
            out[name] = value
        return out

    def after_step() -> None:
        for part in parts.values():
            if part.after_step is not None:
                part.after_step()

    aux = {f"{name}.{key}": m for name, part in parts.items() for key, m in part.aux.items()}
    trainable = nn.ModuleDict({name: part.trainable for name, part in parts.items()})
    return Objective(trainable, loss, after_step, aux)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to min_ratio at `total` steps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def seeded_generator(
    seed: int, *streams: int, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A generator seeded from (seed, streams...) so every (epoch, rank) stream is reproducible."""
    mixed = seed
    for s in streams:
        mixed = (mixed * 1_000_003 + s) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(mixed)


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """Exponential moving average: ema <- decay ema + (1 - decay) net, per parameter."""
    for p_ema, p in zip(ema.parameters(), net.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1 - decay)


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _mean_across_ranks(value: float, device: torch.device) -> float:
    world = rank_world()[1]
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / world


class _LossModule(nn.Module):
    """The whole loss as one forward, so DDP synchronises every trainable parameter once a step."""

    def __init__(self, net: nn.Module, loss: LossFn):
        super().__init__()
        self.net, self.loss = net, loss

    def forward(self, batch: Batch, generator: torch.Generator | None) -> Any:
        return self.loss(self.net, batch, generator)


def _compiled(trainable: nn.Module) -> nn.Module:
    if isinstance(trainable, nn.ModuleDict):
        return nn.ModuleDict({k: torch.compile(v) for k, v in trainable.items()})
    return torch.compile(trainable)


def _clip_groups(trainable: nn.Module) -> list[list[nn.Parameter]]:
    if isinstance(trainable, nn.ModuleDict):
        return [list(m.parameters()) for m in trainable.values()]
    return [list(trainable.parameters())]


def _named(losses: Tensor | dict[str, Tensor]) -> dict[str, Tensor]:
    return losses if isinstance(losses, dict) else {"": losses}


def _total(named: dict[str, Tensor]) -> Tensor:
    means = [v.mean() for v in named.values()]
    return means[0] if len(means) == 1 else torch.stack(means).sum()


def _keys_in_model(model: nn.Module, module: nn.Module) -> dict[str, str]:
    """Map a submodule's state-dict keys to the model's keys of the same tensors."""
    names = {id(v): k for k, v in model.state_dict(keep_vars=True).items()}
    return {k: names[id(v)] for k, v in module.state_dict(keep_vars=True).items()}


@torch.no_grad()
def _validation_losses(
    loss: LossFn,
    ema: nn.Module,
    val: Batch,
    batch: int,
    seed: int,
    device: torch.device,
    autocast: bool,
) -> dict[str, float]:
    """Mean loss on the validation set with a fixed noise stream (comparable across epochs)."""
    gen = seeded_generator(seed, 999_983, device=device)
    totals: dict[str, float] = {}
    count = 0
    for start in range(0, val[0].shape[0], batch):
        part = tuple(t[start : start + batch].to(device) for t in val)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            named = _named(loss(ema, part, gen))
        for name, value in named.items():
            totals[name] = totals.get(name, 0.0) + value.float().sum().item()
        count += part[0].shape[0]
    return {name: total / max(count, 1) for name, total in totals.items()}


def _loss_metrics(prefix: str, values: dict[str, float]) -> dict[str, float]:
    out = {prefix: sum(values.values())}
    if len(values) > 1:
        out.update({f"{prefix}_{name}": v for name, v in values.items()})
    return out


def train_loop(
    model: nn.Module,
    objective: Objective,
    train: Batch | BatchStream,
    val: Batch | None,
    optim: OptimConfig,
    report: Report,
    *,
    device: str | torch.device = "cpu",
    resume_from: str | None = None,
    card: dict[str, Any] | None = None,
) -> None:
    """Optimise `objective`; leaves the EMA weights (what the checkpoints hold) in the model.

    Args:
        model: What a checkpoint saves (`save_model`): a `GenerativeModel` or `TwoStageModel`
            whose submodules include `objective.trainable`, already on `device`.
        objective: The trainable networks and their loss.
        train: Prepared training tensors, indexed together, or a stream of prepared batches
            (`models.stream.TransformedStream`) for data that does not fit in memory.
        val: Prepared validation tensors, or None for no `val_loss`.
        optim: Optimiser, schedule, EMA, precision and checkpoint settings.
        report: Receives the metrics every epoch and a checkpoint directory when one is written.
        device: Where the batches go.
        resume_from: A checkpoint directory this loop wrote; training continues after its epoch.
        card: Extra model-card entries for every checkpoint.
    """
    device = torch.device(device)
    rank, world = rank_world()
    trainable = objective.trainable
    ema = copy.deepcopy(trainable).requires_grad_(False).eval()
    opt = torch.optim.AdamW(
        trainable.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay
    )
    use_cuda = device.type == "cuda"
    autocast = optim.precision == "bf16" and use_cuda
    net = _compiled(trainable) if optim.compile and use_cuda else trainable
    if world > 1:
        step_loss: Callable[[Batch, torch.Generator], Any] = nn.parallel.DistributedDataParallel(
            _LossModule(net, objective.loss), device_ids=[device.index] if use_cuda else None
        )
    else:

        def step_loss(batch: Batch, generator: torch.Generator) -> Any:
            return objective.loss(net, batch, generator)

    n_train = train[0].shape[0] if isinstance(train, tuple) else train.n_events
    per_rank_batch = max(optim.batch_size // world, 1)
    steps_per_epoch = max(n_train // (per_rank_batch * world), 1)
    total_steps = steps_per_epoch * optim.epochs
    start_epoch, step = 0, 0
    if resume_from is not None:
        start_epoch, step = _restore(resume_from, model, objective, ema, opt, device)
    resumed_from = start_epoch
    clip_groups = _clip_groups(trainable)

    for epoch in range(start_epoch, optim.epochs):
        t0 = time.perf_counter()
        trainable.train()
        noise = seeded_generator(optim.seed, 5, epoch, rank, device=device)
        running: dict[str, float] = {}
        batches = _epoch_batches(train, optim.seed, epoch, steps_per_epoch, per_rank_batch)
        for batch in batches:
            batch = tuple(t.to(device) for t in batch)
            for group in opt.param_groups:
                group["lr"] = optim.lr * lr_factor(
                    step, optim.warmup_steps, total_steps, optim.min_lr_ratio
                )
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                named = _named(step_loss(batch, noise))
                loss = _total(named)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if optim.grad_clip is not None:
                for params in clip_groups:
                    nn.utils.clip_grad_norm_(params, optim.grad_clip)
            opt.step()
            step += 1
            if objective.after_step is not None:
                objective.after_step()
            ema_update(ema, trainable, min(optim.ema_decay, (1 + step) / (10 + step)))
            for name, value in named.items():
                running[name] = running.get(name, 0.0) + value.mean().item()
        if not all(math.isfinite(v) for v in running.values()):
            raise FloatingPointError(f"training loss became {running} at epoch {epoch + 1}")
        seconds = time.perf_counter() - t0
        train_means = {
            k: _mean_across_ranks(v / steps_per_epoch, device) for k, v in running.items()
        }
        metrics: dict[str, float] = {"epoch": epoch + 1, "step": step}
        metrics.update(_loss_metrics("train_loss", train_means))
        if val is not None:
            val_means = _validation_losses(
                objective.loss, ema, val, 4 * per_rank_batch, optim.seed, device, autocast
            )
            metrics.update(_loss_metrics("val_loss", val_means))
        metrics.update(
            {
                "lr": opt.param_groups[0]["lr"],
                "epoch_seconds": seconds,
                "samples_per_second": steps_per_epoch * per_rank_batch * world / seconds,
                "resumed_from_epoch": resumed_from,
            }
        )
        last = epoch + 1 == optim.epochs
        if rank == 0 and ((epoch + 1) % optim.checkpoint_every == 0 or last):
            with tempfile.TemporaryDirectory(prefix="farm-ckpt-") as ckpt:
                _save(ckpt, model, objective, ema, opt, epoch + 1, step, card, metrics)
                report(metrics, ckpt)
        else:
            report(metrics, None)
    trainable.load_state_dict(ema.state_dict())


def _epoch_batches(
    train: Batch | BatchStream, seed: int, epoch: int, steps: int, per_rank_batch: int
) -> Iterator[Batch]:
    """This rank's `steps` batches of an epoch, from tensors (seeded permutation) or a stream.

    A stream (`models.stream.BatchStream`) must deliver all `steps` batches of (epoch, rank).
    """
    rank, world = rank_world()
    if isinstance(train, tuple):
        perm = torch.randperm(train[0].shape[0], generator=seeded_generator(seed, 4, epoch))
        mine = perm[: steps * per_rank_batch * world][rank::world]
        for i in range(steps):
            idx = mine[i * per_rank_batch : (i + 1) * per_rank_batch]
            yield tuple(t[idx] for t in train)
        return
    stream = iter(train.batches(epoch, rank, per_rank_batch))
    for i in range(steps):
        batch = next(stream, None)
        if batch is None:
            raise RuntimeError(
                f"the training stream of rank {rank} ended after {i} of {steps} batches in epoch "
                f"{epoch + 1} ({train.n_events} events, batch {per_rank_batch} x {world} ranks)"
            )
        yield batch


ModelT = TypeVar("ModelT", bound=nn.Module)


def prepare_batches(
    preprocessing: nn.Module,
    train: TrainData,
    val: TrainData | None,
    seed: int | None,
    *,
    fit: bool = True,
) -> tuple[Batch, Batch | None]:
    """Fit `preprocessing` on train (generator stream 1), then transform train (2) and val (3).

    seed None: no generators are passed (a deterministic preprocessing, e.g. the set model's);
    fit False: the preprocessing is already fitted (distillation). val None gives None.
    """

    def stream(s: int) -> tuple[torch.Generator, ...]:
        return () if seed is None else (seeded_generator(seed, s),)

    if fit:
        preprocessing.fit(train.x, train.cond, *stream(1))
    prepared = preprocessing.transform(train.x, train.cond, *stream(2))
    prepared_val = None if val is None else preprocessing.transform(val.x, val.cond, *stream(3))
    return prepared, prepared_val


def train_model(
    model: ModelT,
    objective: Callable[[], Objective],
    train: Batch | BatchStream,
    val: Batch | None,
    optim: OptimConfig,
    report: Report,
    *,
    device: torch.device,
    resume_from: str | None = None,
    card: dict[str, Any] | None = None,
) -> ModelT:
    """Move `model` to `device`, run train_loop on objective() (built there), return it in eval mode."""
    model.to(device)
    train_loop(
        model,
        objective(),
        train,
        val,
        optim,
        report,
        device=device,
        resume_from=resume_from,
        card=card,
    )
    return model.eval()


def _save(
    directory: str,
    model: nn.Module,
    objective: Objective,
    ema: nn.Module,
    opt: torch.optim.Optimizer,
    epoch: int,
    step: int,
    card: dict[str, Any] | None,
    metrics: dict[str, float],
) -> None:
    """The model with EMA weights (what generation loads) + raw weights and optimiser state."""
    state = model.state_dict()
    ema_state = ema.state_dict()
    for key, model_key in _keys_in_model(model, objective.trainable).items():
        state[model_key] = ema_state[key]
    save_model(
        model,
        directory,
        card={**(card or {}), "metrics": metrics, "epoch": epoch, "step": step},
        state_dict=state,
    )
    opt_tensors, opt_meta = optimizer_to_tensors(opt.state_dict())
    raw = {f"raw.{k}": v for k, v in objective.trainable.state_dict().items()}
    aux = {
        f"aux.{name}.{k}": v for name, m in objective.aux.items() for k, v in m.state_dict().items()
    }
    save_train_state(
        directory,
        {**raw, **aux, **opt_tensors},
        {"epoch": epoch, "step": step, "optimizer": opt_meta},
    )


def _restore(
    directory: str,
    model: nn.Module,
    objective: Objective,
    ema: nn.Module,
    opt: torch.optim.Optimizer,
    device: torch.device,
) -> tuple[int, int]:
    """Load raw, EMA and aux weights and optimiser state; returns (epoch, step) to continue from."""
    from safetensors.torch import load_file

    weights = load_file(f"{directory}/{WEIGHTS}")
    keys = _keys_in_model(model, objective.trainable)
    ema.load_state_dict({k: weights[model_key] for k, model_key in keys.items()})
    tensors, meta = load_train_state(directory)
    objective.trainable.load_state_dict(
        {k[4:]: v for k, v in tensors.items() if k.startswith("raw.")}
    )
    for name, module in objective.aux.items():
        prefix = f"aux.{name}."
        module.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
    opt.load_state_dict(
        optimizer_from_tensors(
            {k: v.to(device) for k, v in tensors.items() if k.startswith("opt.")}, meta["optimizer"]
        )
    )
    return int(meta["epoch"]), int(meta["step"])


__all__ = [
    "Batch",
    "LossFn",
    "Objective",
    "Report",
    "ema_update",
    "joint_objective",
    "lr_factor",
    "prepare_batches",
    "rank_world",
    "seeded_generator",
    "train_loop",
    "train_model",
]
