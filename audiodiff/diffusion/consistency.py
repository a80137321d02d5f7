"""Consistency training objectives for distilling a run into a few-step sampler (`audiodiff distill`).

Notation (Song et al. 2023, "Consistency Models"; Geng et al. 2024, "Consistency models made easy" (ECT)),
in the variance-exploding form of schedule.EDM, x_sigma = x_0 + sigma n:
    D(x; sigma)            the run's denoiser on the chain (`denoiser.ve_denoiser`), x0_hat
    f(x; sigma)            the consistency function: every x_sigma on one ODE trajectory maps to its x_0.
                           Here f = D of the student, whose v, eps or edm parameterization gives f(x; 0) = x
                           (the boundary condition) for free, so the student can start as the teacher.
    sigma > r >= 0         a training pair of levels; r = 0 makes the target x_0 itself (plain denoising)
    x_r                    ct: x_0 + r n with the same n (ECT);
                           cd: x_sigma + (r - sigma) (x_sigma - D_teacher(x_sigma; sigma)) / sigma, the
                           teacher's Euler step along its probability-flow ODE dx/dsigma = (x - D) / sigma
    loss                   w d(f_theta(x_sigma; sigma), sg f_theta(x_r; r)), w = 1 / (sigma - r) (ECT),
                           d(a, b) = sqrt(mean (a - b)^2 + c^2) - c (pseudo-Huber, iCT), per clip
    r(sigma, k)            sigma (1 - n(sigma) / 2^floor(k / halve_every)), n(sigma) = 1 + 8 sigmoid(-sigma)
                           (ECT's mapping): at first r < 0 -> 0 everywhere, then the gap halves step by step
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..config import DistillConfig
from .denoiser import ve_denoiser
from .schedule import GaussianSchedule, broadcast

Model = Callable[[Tensor, Tensor], Tensor]  # a chain model (x_t, t) -> output, as the samplers take it
SIGMA_MAX = 80.0  # as in sampling.karras_sigmas: where the consistency sampler starts


def sigma_range(schedule: GaussianSchedule) -> tuple[float, float]:
    """(smallest, largest) training level: the chain's first sigma and min(80, its last)."""
    sig = schedule.sigmas()
    return float(sig[0]), min(SIGMA_MAX, float(sig[-1]))


def sample_sigma(config: DistillConfig, schedule: GaussianSchedule, n: int, generator: torch.Generator) -> Tensor:
    """n training levels, ln sigma ~ N(p_mean, p_std^2) clamped to `sigma_range`: float64 [n] on the CPU."""
    lo, hi = sigma_range(schedule)
    ln = config.p_mean + config.p_std * torch.randn(n, generator=generator, dtype=torch.float64)
    return ln.exp().clamp(lo, hi)


def paired_level(config: DistillConfig, schedule: GaussianSchedule, sigma: Tensor, step: int) -> Tensor:
    """The smaller level r of each pair at optimizer step `step` (ECT's mapping): float64 like sigma, in
    [0, sigma); levels below the chain's smallest sigma become 0 (the target is then x_0)."""
    shrink = 2.0 ** -(step // config.halve_every)
    r = sigma * (1 - shrink * (1 + 8 * torch.sigmoid(-sigma)))
    return torch.where(r < sigma_range(schedule)[0], torch.zeros_like(r), r)


def pseudo_huber(a: Tensor, b: Tensor, c: float) -> Tensor:
    """sqrt(mean over each item of (a - b)^2 + c^2) - c: float [B] for a, b [B, ...]."""
    return ((a - b).square().flatten(1).mean(1) + c * c).sqrt() - c


def teacher_step(teacher: Model, schedule: GaussianSchedule, x: Tensor, sigma: Tensor, r: Tensor) -> Tensor:
    """One Euler step of the teacher's probability-flow ODE from level sigma to r (both [B]), like x."""
    d = (x - ve_denoiser(teacher, schedule)(x, sigma)) / broadcast(sigma, x)
    return x + broadcast(r - sigma, x) * d


def loss(student: Model, schedule: GaussianSchedule, config: DistillConfig, x0: Tensor, sigma: Tensor, r: Tensor,
         noise: Tensor, teacher: Model | None = None) -> Tensor:
    """The consistency loss (module docstring) of clean log-mels x0 [B, 1, F, N] at levels sigma > r [B].

    student, teacher: chain models (x_t, t) -> output, as the samplers take them (a condition bound in);
    teacher None: consistency tuning (ct). The target is computed without gradients."""
    x = x0 + broadcast(sigma, x0) * noise
    f = ve_denoiser(student, schedule)
    with torch.no_grad():
        x_r = x0 + broadcast(r, x0) * noise if teacher is None else teacher_step(teacher, schedule, x, sigma, r)
        at_zero = broadcast(r == 0, x0)
        target = torch.where(at_zero, x_r, f(x_r, r.clamp(min=sigma_range(schedule)[0])))
    weight = (1 / (sigma - r)).to(x0.device, torch.float32)
    return (weight * pseudo_huber(f(x, sigma), target, config.huber_c)).mean()
