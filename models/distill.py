"""Consistency distillation (Song et al. 2023, arXiv:2303.01469, Alg. 2) of a diffusion or flow
teacher into a 1- or 2-step student, with the same contract as `models.training.fit`.

Any teacher exposing `process.denoiser(net)` in the EDM space x = x_0 + sigma n (EDM, VE/VP/sub-VP
SDEs, rectified flow via x = x_t / t) works. Per step: n ~ U{1..N-1}, x_{n+1} = x + sigma_{n+1} z,
one Heun step of the teacher's PF ODE to sigma_n, loss d(f_theta(x_{n+1}, sigma_{n+1}),
f_theta-(x_hat_n, sigma_n)) with theta- an EMA (rate mu) of theta. The student is a normal
GenerativeModel with process kind "consistency", saved by `save_model` and loaded by `load_model`.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from models.checkpoint import save_model
from models.config import ModelConfig, NetworkConfig, OptimConfig, SamplerConfig
from models.generative import GenerativeModel
from models.processes.base import rand, randn
from models.processes.consistency import ConsistencyConfig, ConsistencyModel, pseudo_huber
from models.training import Report, TrainData, _ema_update, _generator, lr_factor


class DistillConfig(BaseModel):
    """Consistency distillation settings; the optimiser comes from OptimConfig as for fit."""

    model_config = ConfigDict(extra="forbid")
    consistency: ConsistencyConfig = Field(default_factory=ConsistencyConfig)
    n_steps: int = Field(18, ge=2, description="PF-ODE discretisation N (Karras grid)")
    target_ema: float = Field(0.95, ge=0.0, lt=1.0, description="mu of the target network")
    distance: Literal["l2", "pseudo_huber"] = "l2"
    network: NetworkConfig | None = Field(None, description="student network; None = teacher's")
    init_from_teacher: bool = Field(True, description="copy teacher weights if architectures match")
    sampler_nfe: int = Field(1, ge=1, description="default NFE of the saved student")


def _view(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def teacher_heun_step(
    denoiser, x: Tensor, sigma: Tensor, sigma_next: Tensor, cond: Tensor | None
) -> Tensor:
    """One Heun step of the PF ODE dx/dsigma = (x - D) / sigma (Karras et al. 2022, Alg. 1)."""
    h = _view(sigma_next - sigma, x)
    d = (x - denoiser(x, sigma, cond)) / _view(sigma, x)
    x_euler = x + h * d
    d_next = (x_euler - denoiser(x_euler, sigma_next, cond)) / _view(sigma_next, x)
    return x + h * (d + d_next) / 2


def distillation_loss(
    student: ConsistencyModel,
    net: nn.Module,
    target_net: nn.Module,
    teacher_denoiser,
    x: Tensor,
    cond: Tensor | None,
    sigmas: Tensor,
    generator: torch.Generator | None,
    distance: str = "l2",
) -> Tensor:
    """Per-sample consistency-distillation loss (Song et al. 2023, Alg. 2, lambda = 1)."""
    u = rand((x.shape[0],), generator, like=x).double()
    n = (u * (len(sigmas) - 1)).long().clamp_max(len(sigmas) - 2)
    s_lo, s_hi = sigmas[n], sigmas[n + 1]
    z = randn(tuple(x.shape), generator, like=x).to(x.device)
    x_hi = x + _view(s_hi, x) * z
    with torch.no_grad():
        x_lo = teacher_heun_step(teacher_denoiser, x_hi, s_hi, s_lo, cond)
        target = student.consistency_fn(target_net, cond)(x_lo, s_lo)
    pred = student.consistency_fn(net, cond)(x_hi, s_hi)
    if distance == "pseudo_huber":
        return pseudo_huber(pred, target)
    return (pred - target).pow(2).flatten(1).mean(dim=1)


def student_config(teacher: GenerativeModel, config: DistillConfig) -> ModelConfig:
    """The student's ModelConfig: teacher's preprocessing, consistency process, 1-step sampler."""
    return ModelConfig(
        network=config.network or teacher.config.network,
        process=config.consistency,
        preprocessing=teacher.config.preprocessing,
        sampler=SamplerConfig(name="consistency", nfe=config.sampler_nfe),
    )


def distill(
    teacher: GenerativeModel,
    config: DistillConfig,
    optim: OptimConfig,
    train: TrainData,
    report: Report,
    *,
    val: TrainData | None = None,
    device: str | torch.device = "cpu",
    card: dict[str, Any] | None = None,
) -> GenerativeModel:
    """Distil `teacher` into a consistency student; report(metrics, checkpoint_dir) per epoch."""
    device = torch.device(device)
    torch.manual_seed(optim.seed)
    teacher = teacher.to(device).eval().requires_grad_(False)
    model = GenerativeModel(student_config(teacher, config), teacher.dim, teacher.cond_dim)
    model.preprocessing.load_state_dict(teacher.preprocessing.state_dict())
    if config.init_from_teacher and model.config.network == teacher.config.network:
        model.net.load_state_dict(teacher.net.state_dict())
    x_tr, c_tr = model.preprocessing.transform(train.x, train.cond, _generator(optim.seed, 2))
    model.to(device)
    student: ConsistencyModel = model.process
    target = copy.deepcopy(model.net).requires_grad_(False)
    ema = copy.deepcopy(model.net).requires_grad_(False)
    opt = torch.optim.AdamW(
        model.net.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay
    )
    sigmas = student.sigmas_ascending(config.n_steps, device=device)
    teacher_d = teacher.process.denoiser(teacher.net)
    steps_per_epoch = max(x_tr.shape[0] // optim.batch_size, 1)
    total, step = steps_per_epoch * optim.epochs, 0
    autocast = optim.precision == "bf16" and device.type == "cuda"
    for epoch in range(optim.epochs):
        t0 = time.perf_counter()
        model.net.train()
        perm = torch.randperm(x_tr.shape[0], generator=_generator(optim.seed, 4, epoch))
        noise = _generator(optim.seed, 5, epoch, device=device)
        running = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * optim.batch_size : (i + 1) * optim.batch_size]
            xb, cb = x_tr[idx].to(device), c_tr[idx].to(device)
            for group in opt.param_groups:
                group["lr"] = optim.lr * lr_factor(
                    step, optim.warmup_steps, total, optim.min_lr_ratio
                )
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = distillation_loss(
                    student, model.net, target, teacher_d, xb, cb, sigmas, noise, config.distance
                ).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if optim.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.net.parameters(), optim.grad_clip)
            opt.step()
            step += 1
            _ema_update(target, model.net, config.target_ema)
            _ema_update(ema, model.net, min(optim.ema_decay, (1 + step) / (10 + step)))
            running += loss.item()
        if not math.isfinite(running):
            raise FloatingPointError(f"distillation loss became {running} at epoch {epoch + 1}")
        seconds = time.perf_counter() - t0
        metrics = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": running / steps_per_epoch,
            "lr": opt.param_groups[0]["lr"],
            "epoch_seconds": seconds,
            "samples_per_second": steps_per_epoch * optim.batch_size / seconds,
        }
        if val is not None:
            metrics["val_loss"] = _val_loss(
                model, student, ema, target, teacher_d, val, sigmas, optim, device, config.distance
            )
        if (epoch + 1) % optim.checkpoint_every == 0 or epoch + 1 == optim.epochs:
            state = model.state_dict()
            state.update({f"net.{k}": v for k, v in ema.state_dict().items()})
            with tempfile.TemporaryDirectory(prefix="farm-distill-") as ckpt:
                save_model(
                    model,
                    ckpt,
                    card={
                        **(card or {}),
                        "metrics": metrics,
                        "epoch": epoch + 1,
                        "step": step,
                        "distilled_from": teacher.config.model_dump(mode="json"),
                    },
                    state_dict=state,
                )
                report(metrics, ckpt)
        else:
            report(metrics, None)
    model.net.load_state_dict(ema.state_dict())
    return model.eval()


@torch.no_grad()
def _val_loss(
    model: GenerativeModel,
    student: ConsistencyModel,
    ema: nn.Module,
    target: nn.Module,
    teacher_d,
    val: TrainData,
    sigmas: Tensor,
    optim: OptimConfig,
    device: torch.device,
    distance: str,
) -> float:
    x, c = model.preprocessing.transform(val.x, val.cond, _generator(optim.seed, 3))
    gen = _generator(optim.seed, 999_983, device=device)
    total = 0.0
    for start in range(0, x.shape[0], 4 * optim.batch_size):
        xb, cb = (
            x[start : start + 4 * optim.batch_size].to(device),
            c[start : start + 4 * optim.batch_size].to(device),
        )
        total += (
            distillation_loss(student, ema, target, teacher_d, xb, cb, sigmas, gen, distance)
            .sum()
            .item()
        )
    return total / max(x.shape[0], 1)


__all__ = ["DistillConfig", "distill", "distillation_loss", "student_config", "teacher_heun_step"]
