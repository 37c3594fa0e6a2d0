"""Consistency distillation (Song et al. 2023, arXiv:2303.01469, Alg. 2) into a 1- or 2-step student.

The teacher is a diffusion or flow model; the student trains in the one loop of `models.loop`.
Any teacher exposing `process.denoiser(net)` in the EDM space x = x_0 + sigma n (EDM, VE/VP/sub-VP
SDEs, rectified flow via x = x_t / t) works. Per step: n ~ U{1..N-1}, x_{n+1} = x + sigma_{n+1} z,
one Heun step of the teacher's PF ODE to sigma_n, loss d(f_theta(x_{n+1}, sigma_{n+1}),
f_theta-(x_hat_n, sigma_n)) with theta- an EMA (rate mu) of theta. A single-stage student is a
normal GenerativeModel with process kind "consistency". A two-stage teacher keeps the stages not
named in `stages` as they are and distils the others (by default the shape stage, where the
sampling time goes), each against its own stage of the teacher, jointly in one loop. Students
are saved by `save_model` and loaded by `load_model`; the target networks are part of the resume
state, so `resume_from` continues a distillation bit for bit.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from models.config import ModelConfig, NetworkConfig, OptimConfig, SamplerConfig, StageConfig
from models.data import TrainData
from models.generative import GenerativeModel
from models.loop import (
    Objective,
    Report,
    ema_update,
    joint_objective,
    train_model,
)
from models.noise import rand, randn
from models.points import PointShowerModel
from models.processes.consistency import ConsistencyConfig, ConsistencyModel, pseudo_huber
from models.stream import StreamData, prepared_inputs
from models.two_stage.model import TwoStageModel
from models.two_stage.training import stage_inputs


class DistillConfig(BaseModel):
    """Consistency distillation settings; the optimiser comes from OptimConfig as for fit."""

    model_config = ConfigDict(extra="forbid")
    consistency: ConsistencyConfig = Field(default_factory=ConsistencyConfig)
    n_steps: int = Field(18, ge=2, description="PF-ODE discretisation N (Karras grid)")
    target_ema: float = Field(0.95, ge=0.0, lt=1.0, description="mu of the target network")
    distance: Literal["l2", "pseudo_huber"] = "l2"
    network: NetworkConfig | None = Field(
        None, description="student network of every distilled stage; None = the teacher's"
    )
    init_from_teacher: bool = Field(True, description="copy teacher weights if architectures match")
    sampler_nfe: int = Field(1, ge=1, description="default NFE of the saved student")
    stages: list[Literal["energy", "shape"]] = Field(
        default_factory=lambda: ["shape"],
        min_length=1,
        description="stages of a two-stage teacher to distil (single-stage teachers: unused)",
    )


def _view(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def teacher_heun_step(
    denoiser: Callable[..., Tensor],
    x: Tensor,
    sigma: Tensor,
    sigma_next: Tensor,
    cond: Tensor | None,
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
    teacher_denoiser: Callable[..., Tensor],
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


def _init_student(
    student: GenerativeModel, teacher: GenerativeModel, config: DistillConfig
) -> None:
    student.preprocessing.load_state_dict(teacher.preprocessing.state_dict())
    if config.init_from_teacher and student.config.network == teacher.config.network:
        student.net.load_state_dict(teacher.net.state_dict())


def consistency_objective(
    teacher: GenerativeModel,
    student: GenerativeModel,
    config: DistillConfig,
    device: torch.device,
) -> Objective:
    """Distil `teacher` into `student` (on `device`): loss, target-network EMA, resume state."""
    process: ConsistencyModel = student.process
    target = copy.deepcopy(student.net).requires_grad_(False).eval()
    sigmas = process.sigmas_ascending(config.n_steps, device=device)
    teacher_d = teacher.process.denoiser(teacher.net)

    def loss(net: nn.Module, batch: tuple[Tensor, ...], generator: torch.Generator | None):
        return distillation_loss(
            process, net, target, teacher_d, batch[0], batch[1], sigmas, generator, config.distance
        )

    def after_step() -> None:
        ema_update(target, student.net, config.target_ema)

    return Objective(student.net, loss, after_step, aux={"target": target})


def distill(
    teacher: GenerativeModel | TwoStageModel | PointShowerModel,
    config: DistillConfig,
    optim: OptimConfig,
    train: TrainData | StreamData,
    report: Report,
    *,
    val: TrainData | None = None,
    device: str | torch.device = "cpu",
    card: dict[str, Any] | None = None,
    resume_from: str | None = None,
) -> GenerativeModel | TwoStageModel | PointShowerModel:
    """Distil `teacher` into a consistency student; report(metrics, checkpoint_dir) per epoch.

    Args:
        teacher: A trained model of either kind (not itself a consistency model).
        config: Distillation settings.
        optim: Optimiser, schedule, EMA and checkpoint settings.
        train: The teacher's kind of training data in physical units, in memory or streamed
            (`models.stream.StreamData`, shower models only).
        report: Receives the metrics every epoch and a checkpoint directory when one is written.
        val: Validation data for `val_loss`, or None.
        device: Training device.
        card: Extra model-card entries; `distilled_from` (the teacher's config) is added.
        resume_from: A checkpoint directory of this distillation to continue from.

    Returns:
        The student with EMA weights, in eval mode.
    """
    device = torch.device(device)
    torch.manual_seed(optim.seed)
    teacher = teacher.to(device).eval().requires_grad_(False)
    card = {**(card or {}), "distilled_from": teacher.config.model_dump(mode="json")}
    if isinstance(teacher, TwoStageModel):
        return _distill_two_stage(
            teacher, config, optim, train, report, val, device, card, resume_from
        )
    if isinstance(teacher, PointShowerModel):
        if isinstance(train, StreamData):
            raise ValueError("streamed training data distils shower models, not point-cloud ones")
        # the hits model is distilled; the count model is copied
        hits = student_config(teacher.hits, config)
        model = PointShowerModel(
            teacher.config.model_copy(update={"hits": hits}), teacher.dim, teacher.cond_dim
        )
        model.cardinality.load_state_dict(teacher.cardinality.state_dict())
        student, teacher = model.hits, teacher.hits
    else:
        model = GenerativeModel(student_config(teacher, config), teacher.dim, teacher.cond_dim)
        student = model
    _init_student(student, teacher, config)
    batches = prepared_inputs(student.preprocessing, train, val, optim.seed, fit=False)
    return train_model(
        model,
        lambda: consistency_objective(teacher, student, config, device),
        *batches,
        optim,
        report,
        device=device,
        resume_from=resume_from,
        card=card,
    )


def _distill_two_stage(
    teacher: TwoStageModel,
    config: DistillConfig,
    optim: OptimConfig,
    train: TrainData | StreamData,
    report: Report,
    val: TrainData | None,
    device: torch.device,
    card: dict[str, Any],
    resume_from: str | None,
) -> TwoStageModel:
    stages = tuple(dict.fromkeys(config.stages))
    updates = {}
    for name in stages:
        stage = getattr(teacher.config, name)
        if stage.process.kind == "consistency":
            raise ValueError(f"the {name} stage of the teacher is already a consistency model")
        updates[name] = StageConfig(
            network=config.network or stage.network,
            process=config.consistency,
            sampler=SamplerConfig(name="consistency", nfe=config.sampler_nfe),
        )
    model = TwoStageModel(teacher.config.model_copy(update=updates), teacher.dim, teacher.cond_dim)
    for name in ("energy", "shape"):
        if name in stages:
            _init_student(getattr(model, name), getattr(teacher, name), config)
        else:
            getattr(model, name).load_state_dict(getattr(teacher, name).state_dict())
    train_batch, val_batch = stage_inputs(model, train, val, optim.seed, stages=stages, fit=False)
    return train_model(
        model,
        lambda: joint_objective(
            {
                name: consistency_objective(
                    getattr(teacher, name), getattr(model, name), config, device
                )
                for name in stages
            }
        ),
        train_batch,
        val_batch,
        optim,
        report,
        device=device,
        resume_from=resume_from,
        card=card,
    )


__all__ = [
    "DistillConfig",
    "consistency_objective",
    "distill",
    "distillation_loss",
    "student_config",
    "teacher_heun_step",
]
