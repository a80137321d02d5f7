"""Samplers: plain functions with one shared signature, so a new sampler is one new function.

    sampler(model, schedule, x, steps, noise, *, clip_x0=True, progress=False, start=None) -> x_0 sample

model: the network, called as model(x_t float [B, ...], t long [B]) -> output like x_t, read
through `schedule.split_output` (eps, v or x0 prediction). x: the starting noise x_T ~ N(0, I).
steps: how many network evaluations, on timesteps spaced evenly from T-1 down ("trailing").
noise: a function returning fresh N(0, I) noise shaped like x (ancestral samplers draw from it).
start: begin the chain at timestep `start` < T-1 instead, with x ~ q(x_start | x_0) (SDEdit, editing.py).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .denoiser import ve_denoiser
from .schedule import GaussianSchedule

NoiseFn = Callable[[], Tensor]
Model = Callable[[Tensor, Tensor], Tensor] | nn.Module


def spaced_timesteps(num_train_steps: int, steps: int, start: int | None = None) -> list[int]:
    """`steps` timesteps from `start` (default T-1) down, evenly spaced, ending one interval above -1 (clean data).

    The trailing spacing of Lin et al. 2024 ("Common diffusion noise schedules and sample steps are
    flawed"): the first step always starts from t = T-1, where x_T is closest to pure noise.
    """
    start = num_train_steps - 1 if start is None else start
    if not 0 <= start < num_train_steps:
        raise ValueError(f"start must be in 0..{num_train_steps - 1}, got {start}")
    if not 1 <= steps <= start + 1:
        raise ValueError(f"steps must be in 1..{start + 1}, got {steps}")
    edges = torch.linspace(start + 1, 0, steps + 1, dtype=torch.float64).round().long() - 1
    return edges[:-1].tolist()


def item_noise(generators: list[torch.Generator], shape: tuple[int, ...], device: torch.device) -> NoiseFn:
    """A NoiseFn drawing item i of each batch from generators[i] (on CPU), so each clip depends on its seed alone."""

    def draw() -> Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)

    return draw


def denoise(model: Model, schedule: GaussianSchedule, x: Tensor, t: int, clip_x0: bool = True) -> tuple[Tensor, Tensor]:
    """One network call at timestep t: (x0_hat, eps_hat), both float like x; x0_hat clipped to [-1, 1] if asked."""
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    x0, eps = schedule.split_output(model(x, tt).float(), x, tt)
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
        eps = schedule.predict_eps(x, tt, x0)
    return x0, eps


def ddim_step(schedule: GaussianSchedule, x0: Tensor, eps: Tensor, t: int, s: int, eta: float,
              noise: NoiseFn) -> Tensor:
    """x_t -> x_s from the predictions at t (Song et al. 2021, eq. 12); eta = 0 deterministic, 1 DDPM-like; s = -1 is clean."""
    a_t = float(schedule.alphas_cumprod[t])
    a_s = float(schedule.alphas_cumprod[s]) if s >= 0 else 1.0
    sigma = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)) ** 0.5
    x = a_s**0.5 * x0 + (1 - a_s - sigma**2) ** 0.5 * eps
    return x + sigma * noise() if sigma > 0 else x


def step_pairs(schedule: GaussianSchedule, steps: int, start: int | None = None) -> list[tuple[int, int]]:
    """The (t, s) transitions of a `steps`-step chain, t > s, from `start` (default T-1) down to s = -1 (clean)."""
    ts = spaced_timesteps(schedule.num_steps, steps, start)
    return list(zip(ts, ts[1:] + [-1]))


def _pairs(schedule: GaussianSchedule, steps: int, progress: bool, name: str, start: int | None = None):
    pairs = step_pairs(schedule, steps, start)
    return tqdm(pairs, desc=name, disable=not progress, leave=False, unit="step")


def ddpm(model: Model, schedule: GaussianSchedule, x: Tensor, steps: int, noise: NoiseFn, *,
         clip_x0: bool = True, progress: bool = False, start: int | None = None) -> Tensor:
    """DDPM ancestral sampling, x_s ~ q(x_s | x_t, x0_hat) (Ho et al. 2020); steps < T respaces the chain."""
    for t, s in _pairs(schedule, steps, progress, "ddpm", start):
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        x0, _ = denoise(model, schedule, x, t, clip_x0)
        mean, var = schedule.posterior_mean_variance(x0, x, tt, tt.new_full(tt.shape, s))
        x = mean + var.sqrt().to(x.dtype).view(-1, *[1] * (x.ndim - 1)) * noise() if s >= 0 else mean
    return x


def ddim(model: Model, schedule: GaussianSchedule, x: Tensor, steps: int, noise: NoiseFn, *,
         clip_x0: bool = True, progress: bool = False, start: int | None = None, eta: float = 0.0) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12): deterministic at eta = 0, DDPM-like at eta = 1."""
    if not 0 <= eta <= 1:  # above 1 the remaining noise variance 1 - a_s - sigma^2 can go negative
        raise ValueError(f"eta = {eta!r} is out of range: must be in [0, 1]")
    for t, s in _pairs(schedule, steps, progress, "ddim", start):
        x0, eps = denoise(model, schedule, x, t, clip_x0)
        x = ddim_step(schedule, x0, eps, t, s, eta, noise)
    return x


def dpmpp_2m(model: Model, schedule: GaussianSchedule, x: Tensor, steps: int, noise: NoiseFn, *,
             clip_x0: bool = True, progress: bool = False, start: int | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2): second-order multistep ODE solver on x0 predictions.

    Notation: alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t), lambda_t = log(alpha_t / sigma_t),
    h = lambda_s - lambda_t for the step t -> s. The last step (to clean data) is first order.
    """
    x0_prev, h_prev = None, 0.0
    for t, s in _pairs(schedule, steps, progress, "dpm++2m", start):
        x0, _ = denoise(model, schedule, x, t, clip_x0)
        if s < 0:
            return x0
        (_, sigma_t, lam_t), (alpha_s, sigma_s, lam_s) = _vp(schedule, t), _vp(schedule, s)
        h = lam_s - lam_t
        # D = (1 + 1/(2r)) x0 - 1/(2r) x0_prev with r = h_prev / h: a linear extrapolation in lambda
        d = x0 if x0_prev is None else x0 + (x0 - x0_prev) * (h / (2 * h_prev))
        x = (sigma_s / sigma_t) * x - alpha_s * math.expm1(-h) * d
        x0_prev, h_prev = x0, h
    return x


def karras_sigmas(schedule: GaussianSchedule, steps: int, rho: float = 7.0, sigma_max: float = 80.0) -> list[float]:
    """`steps` noise levels from min(sigma_max, the schedule's largest) to its smallest sigma, spaced as in
    Karras et al. 2022 (eq. 5, rho = 7), then 0.

    The cap matters: the clipped cosine schedule ends at sigma ~ 2e4, and spacing from there spent
    most steps where the data is invisible (FD 7665 at 5 steps, 461 at 10 on the tiny notes run).
    At sigma = 80 the data term is already 1/80 of the noise (Karras et al. use 80 too).
    """
    sig = schedule.sigmas()
    lo, hi = float(sig[0]) ** (1 / rho), min(float(sig[-1]), sigma_max) ** (1 / rho)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    return ((hi + ramp * (lo - hi)) ** rho).tolist() + [0.0]


def heun(model: Model, schedule: GaussianSchedule, x: Tensor, steps: int, noise: NoiseFn, *,
         clip_x0: bool = True, progress: bool = False, start: int | None = None) -> Tensor:
    """Heun's 2nd-order ODE solver on Karras sigmas (Karras et al. 2022, Alg. 1, deterministic); 2 steps - 1 evaluations.

    Works in the variance-exploding form x_sigma = x_t / sqrt(alpha_bar_t) = x0 + sigma eps, with
    dx/dsigma = (x - D(x; sigma)) / sigma; D calls the network at the continuous timestep of sigma.
    """
    sigmas = karras_sigmas(schedule, steps, sigma_max=_top_sigma(schedule, start))
    net = ve_denoiser(model, schedule)

    def denoise(x_ve: Tensor, sigma: float) -> Tensor:
        x0 = net(x_ve, torch.full((x_ve.shape[0],), sigma, dtype=torch.float64))
        return x0.clamp(-1.0, 1.0) if clip_x0 else x0

    x = x * (1 + sigmas[0] ** 2) ** 0.5  # x_T ~ N(0, I) in the VP form -> the VE form
    for s, s_next in tqdm(list(zip(sigmas, sigmas[1:])), desc="heun", disable=not progress, leave=False):
        d = (x - denoise(x, s)) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d_next = (x_next - denoise(x_next, s_next)) / s_next
            x_next = x + (s_next - s) * (d + d_next) / 2
        x = x_next
    return x


def _top_sigma(schedule: GaussianSchedule, start: int | None) -> float:
    """Where a continuous-sigma sampler starts: sigma 80 (`karras_sigmas`), or the chain's sigma at `start` if lower."""
    return 80.0 if start is None else min(80.0, float(schedule.sigmas()[start]))


def consistency(model: Model, schedule: GaussianSchedule, x: Tensor, steps: int, noise: NoiseFn, *,
                clip_x0: bool = True, progress: bool = False, start: int | None = None) -> Tensor:
    """Multistep consistency sampling (Song et al. 2023, Alg. 1): one call maps noise to x0_hat, then each
    further step re-noises x0_hat to a lower level with fresh noise and maps it again; `steps` calls in all.

    For runs distilled with `audiodiff distill`, whose network is a consistency function. The levels are the
    first `steps` of `steps` + 1 Karras sigmas (rho 7) from min(80, sigma_start) to the chain's smallest.
    """
    sigmas = karras_sigmas(schedule, steps + 1, sigma_max=_top_sigma(schedule, start))[:steps]
    net = ve_denoiser(model, schedule)
    x = x * (1 + sigmas[0] ** 2) ** 0.5  # VP -> VE form, as in heun
    for i, s in enumerate(tqdm(sigmas, desc="consistency", disable=not progress, leave=False)):
        x = net(x, torch.full((x.shape[0],), s, dtype=torch.float64))
        x = x.clamp(-1.0, 1.0) if clip_x0 else x
        if i + 1 < steps:
            x = x + sigmas[i + 1] * noise()
    return x


def _vp(schedule: GaussianSchedule, t: int) -> tuple[float, float, float]:
    a = float(schedule.alphas_cumprod[t])
    return a**0.5, (1 - a) ** 0.5, 0.5 * math.log(a / (1 - a))


SAMPLERS: dict[str, Callable[..., Tensor]] = {"ddpm": ddpm, "ddim": ddim, "dpmpp-2m": dpmpp_2m, "heun": heun,
                                             "consistency": consistency}


def get_sampler(name: str) -> Callable[..., Tensor]:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r} (choose from {', '.join(SAMPLERS)})")
    return SAMPLERS[name]


def sample(model: Model, schedule: GaussianSchedule, sampler: str, shape: tuple[int, ...], seeds: list[int],
           steps: int, device: torch.device, progress: bool = False, **options: float | bool) -> Tensor:
    """Draw len(seeds) samples of `shape` [C, H, W] with the named sampler; clip i depends on seeds[i] alone.

    Returns float32 [len(seeds), C, H, W] on `device`.
    """
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    noise = item_noise(generators, shape, device)
    return get_sampler(sampler)(model, schedule, noise(), steps, noise, progress=progress, **options)
