"""Editing on the sampling level: the chain started from a given mel instead of pure noise.

- `strength_start`: where SDEdit (Meng et al. 2022) enters the chain for a strength in [0, 1].
- `inpaint`: resample a masked region with the known region re-imposed at every step, at the
  current noise level, with RePaint's (Lugmayr et al. 2022) back-and-forth resampling as an option.
- `ddim_invert`: the deterministic DDIM map run backwards, clean mel -> x_T (Song et al. 2021, sec. 4.3).
- `slerp`: spherical interpolation between two noise tensors.
- `circular`: a Model that also sees the signal rolled by half its width and blends the two
  predictions away from the edges, so that the end of a sample continues into its start (loops).
- `soft_keep`: a keep mask with linear ramps at its edges, for crossfading edited and kept regions.
- `outpaint`: extend a signal window by window, each window inpainted from the end of the last.
- `splice`: put a clip's own samples back outside the edited span, crossfaded.
- `loop_audio`: decode one period of a loop so that its end runs into its start without a seam.

Tensors are what the model sees (representation.py; normalized log-mels float [B, 1, F, N] in [-1, 1]); masks are float [1 or B, 1, F, N],
1 where the input is kept and 0 where it is regenerated.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .sampling import Model, NoiseFn, _pairs, ddim_step, denoise, step_pairs
from .schedule import GaussianSchedule


def strength_start(schedule: GaussianSchedule, strength: float, steps: int) -> tuple[int | None, int]:
    """(timestep to start at, number of steps) for SDEdit at `strength`: the chain from s * T with
    round(s * steps) steps (at least 1). start None means strength 0: nothing to do."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    start = round(strength * schedule.num_steps) - 1
    if start < 0:
        return None, 0
    return start, min(start + 1, max(1, round(strength * steps)))


def noised(schedule: GaussianSchedule, x0: Tensor, t: int, noise: Tensor) -> Tensor:
    """x_t ~ q(x_t | x_0) at one integer timestep t for the whole batch; t = -1 returns x0."""
    tt = torch.full((x0.shape[0],), t, device=x0.device, dtype=torch.long)
    return schedule.q_sample(x0, tt, noise)


def inpaint(model: Model, schedule: GaussianSchedule, x: Tensor, steps: int, noise: NoiseFn, *,
            known: Tensor, keep: Tensor, resample: int = 1, eta: float = 1.0, clip_x0: bool = True,
            fade: int = 0, progress: bool = False) -> Tensor:
    """Inpainting by replacement (RePaint, Lugmayr et al. 2022) on DDIM steps: after each step t -> s the
    kept region is set to a fresh sample of q(x_s | known). resample r > 1 goes back s -> t with the
    forward chain and redoes the step r times, so the new region can adapt to the kept one.

    x: starting noise float [B, 1, F, N]; known: float [1 or B, 1, F, N]; keep: float like known, 1 = kept.
    eta = 1 (default) takes DDPM-like ancestral steps, as RePaint does. Returns float [B, 1, F, N]; the
    kept region equals `known` exactly, except `fade` frames from each edge where the last step crossfades
    `known` into the network's own clean estimate (`soft_keep`).
    """
    keep = keep.to(x.dtype)
    final_keep = soft_keep(keep, fade)
    x = keep * noised(schedule, known.expand_as(x), schedule.num_steps - 1, noise()) + (1 - keep) * x
    for t, s in _pairs(schedule, steps, progress, "inpaint"):
        rounds = resample if s >= 0 else 1  # the last step lands on clean data: nothing to go back up from
        for r in range(rounds):
            x0, eps = denoise(model, schedule, x, t, clip_x0)
            x = ddim_step(schedule, x0, eps, t, s, eta, noise)
            k = final_keep if s < 0 else keep
            x = k * noised(schedule, known.expand_as(x), s, noise()) + (1 - k) * x
            if r < rounds - 1:
                x = _forward_jump(schedule, x, s, t, noise())
    return x


def _forward_jump(schedule: GaussianSchedule, x_s: Tensor, s: int, t: int, noise: Tensor) -> Tensor:
    """x_t ~ q(x_t | x_s) = N(sqrt(alpha_bar_t / alpha_bar_s) x_s, 1 - alpha_bar_t / alpha_bar_s) for s < t."""
    ratio = float(schedule.alphas_cumprod[t] / schedule.alphas_cumprod[s])
    return ratio**0.5 * x_s + (1 - ratio) ** 0.5 * noise


def ddim_invert(model: Model, schedule: GaussianSchedule, x0: Tensor, steps: int, *, refine: int = 2,
                progress: bool = False) -> Tensor:
    """Clean mel x0 float [B, ...] -> x_{T-1}: deterministic DDIM (eta 0, unclipped) run backwards on the
    sampler's timesteps, so that `ddim(..., clip_x0=False)` with the same steps maps it back.

    A step s -> t (s < t) must find x_t with DDIM(x_t) = x_s, i.e. x_t = sqrt(a_t / a_s) (x_s - sqrt(1 - a_s)
    eps) + sqrt(1 - a_t) eps with eps = eps_hat(x_t, t), which depends on the unknown x_t. The first guess
    takes eps at the lower level s (plain DDIM inversion; eps = 0 from clean data); `refine` fixed-point
    rounds re-evaluate eps at the new x_t, one network call each. On Gaussian data with a known model,
    invert-then-decode errs up to 0.10 at 50 steps with refine 0 and 0.0007 with 2 (tests).
    """
    x = x0
    pairs = step_pairs(schedule, steps)[::-1]  # s < t, from the clean end up
    for t, s in tqdm(pairs, desc="invert", disable=not progress, leave=False, unit="step"):
        a_t = float(schedule.alphas_cumprod[t])
        a_s = float(schedule.alphas_cumprod[s]) if s >= 0 else 1.0
        eps = torch.zeros_like(x) if s < 0 else denoise(model, schedule, x, s, clip_x0=False)[1]
        x_t = (a_t / a_s) ** 0.5 * (x - (1 - a_s) ** 0.5 * eps) + (1 - a_t) ** 0.5 * eps
        for _ in range(refine):
            eps = denoise(model, schedule, x_t, t, clip_x0=False)[1]
            x_t = (a_t / a_s) ** 0.5 * (x - (1 - a_s) ** 0.5 * eps) + (1 - a_t) ** 0.5 * eps
        x = x_t
    return x


def slerp(a: Tensor, b: Tensor, w: float) -> Tensor:
    """Spherical interpolation between a and b (same shape) at w in [0, 1], per batch item; linear when parallel."""
    fa, fb = a.flatten(1), b.flatten(1)
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    so = torch.sin(omega)
    lin = so < 1e-6
    ca = torch.where(lin, torch.full_like(so, 1 - w), torch.sin((1 - w) * omega) / so.clamp_min(1e-12))
    cb = torch.where(lin, torch.full_like(so, w), torch.sin(w * omega) / so.clamp_min(1e-12))
    shape = (-1, *[1] * (a.ndim - 1))
    return ca.view(shape).to(a.dtype) * a + cb.view(shape).to(a.dtype) * b


def circular(model: Model) -> Model:
    """A Model for loops: each call evaluates the network on x and on x rolled by half its width and blends
    the two outputs frame by frame, weighting each by the frame's distance from that evaluation's edges. Every
    frame is then predicted away from the network's edges, and the last frame continues into the first. The
    width must need no padding by the UNet. The two evaluations are two calls of B items each, not one of 2B: a
    Model may carry one condition per item (a class-conditional run's labels)."""

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        n = x.shape[-1]
        h = n // 2
        plain, rolled = model(x, t), model(x.roll(h, -1), t).roll(-h, -1)
        i = torch.arange(n, device=x.device)
        j = (i + h) % n  # the frame's position in the rolled evaluation
        w_plain = torch.minimum(i, n - 1 - i) + 0.5
        w_rolled = torch.minimum(j, n - 1 - j) + 0.5
        w = (w_plain / (w_plain + w_rolled)).to(plain.dtype)
        return w * plain + (1 - w) * rolled

    return model_fn


def soft_keep(keep: Tensor, fade: int) -> Tensor:
    """0/1 keep mask float [..., N] -> the same mask with linear ramps over `fade` frames on the kept side of
    each edge along the last axis (time): k / (fade + 1) at k frames from the nearest edited frame."""
    if fade <= 0:
        return keep
    n = keep.shape[-1]
    idx = torch.arange(n, device=keep.device).expand_as(keep)
    edited = keep < 0.5
    big = 2 * n + fade + 1
    left = torch.where(edited, idx, torch.full_like(idx, -big)).cummax(-1).values  # nearest edited at or before
    right = n - 1 - torch.where(edited.flip(-1), idx, torch.full_like(idx, -big)).cummax(-1).values.flip(-1)
    dist = torch.minimum(idx - left, right - idx).to(keep.dtype)
    return torch.where(edited, torch.zeros_like(keep), (dist / (fade + 1)).clamp(max=1.0) * keep)


def time_keep(shape: tuple[int, ...], start: int, end: int, bins: tuple[int, int] | None = None) -> Tensor:
    """Keep mask float `shape` [1, 1, F, N]: 0 on frames start..end-1 (and only mel bins lo..hi-1 when
    `bins` is given), 1 elsewhere."""
    keep = torch.ones(shape)
    lo, hi = bins if bins is not None else (0, shape[-2])
    keep[..., lo:hi, start:end] = 0.0
    return keep


def outpaint(model: Model, schedule: GaussianSchedule, x: Tensor, frames: int, window: int, noise: NoiseFn, steps: int,
             overlap: float = 0.5, fade: int = 3, resample: int = 1, silence: float = -1.0,
             progress: bool = False) -> Tensor:
    """x [B, C, F, N] -> [B, C, F, frames]: windows of `window` frames, each inpainted (`inpaint`, DDIM steps) with
    its first overlap * window frames taken from the end of what exists. The last window // 8 frames of a
    window are dropped and redone by the next one: the network's right edge is where training crops of short
    files were padded with silence, and kept edge frames showed as dark seams. `noise()` gives [B, C, F, window]."""
    for start, k, last in outpaint_windows(x.shape[-1], frames, window, overlap):
        known = torch.nn.functional.pad(x[..., start : start + k], (0, window - k), value=silence)
        keep = time_keep((1, *x.shape[1:-1], window), k, window).to(x.device)
        new = inpaint(model, schedule, noise(), steps, noise, known=known, keep=keep, resample=resample, fade=fade,
                      progress=progress)
        x = torch.cat([x[..., :start], new if last else new[..., : window - window // 8]], dim=-1)
    return x[..., :frames]


def outpaint_windows(have: int, frames: int, window: int, overlap: float = 0.5) -> list[tuple[int, int, bool]]:
    """`outpaint`'s windows for a signal of `have` frames grown to `frames`: (the window's first frame in the
    output, frames of context it keeps, whether it is the last). Its new frames begin at first + context: the
    joins where a seam could be heard."""
    keep_frames, margin = round(overlap * window), window // 8
    if not 0 < keep_frames < window - margin:
        raise ValueError(f"overlap must leave between 1 and {window - margin - 1} frames of context, got {overlap}")
    plan = []
    while have < frames:
        k = min(keep_frames, have)
        last = have - k + window >= frames
        plan.append((have - k, k, last))
        have = have - k + (window if last else window - margin)
    return plan


def splice(original: np.ndarray, generated: Tensor, kept: Tensor, fade: int) -> Tensor:
    """Put the original samples back where kept = 1: audio float [B, (C,) T] <- original [(C,) T] on kept samples
    (float [T], 0/1), with linear crossfades `fade` samples long on the kept side of each edge."""
    weight = soft_keep(kept[None], fade)[0] if fade > 0 else kept
    orig = torch.from_numpy(np.ascontiguousarray(original, dtype=np.float32))
    return weight * orig + (1 - weight) * generated


def loop_audio(decode: Callable[[Tensor, list[int]], Tensor], x: Tensor, seeds: list[int], period: int,
               crossfade: int) -> Tensor:
    """x [B, C, F, N], one period of a loop -> wav [B, (2,) period] that repeats without a seam.

    Decodes three periods in a row and keeps the middle one, whose first `crossfade` samples are crossfaded
    with the samples that follow it in the third period: played in a loop, the last sample is then followed
    by the one the decoder put after it.
    """
    wav = decode(torch.cat([x] * 3, dim=-1), seeds)
    out, after = wav[..., period : 2 * period].clone(), wav[..., 2 * period :]
    n = min(crossfade, period, after.shape[-1])
    ramp = torch.linspace(0.0, 1.0, n, device=wav.device)
    out[..., :n] = ramp * out[..., :n] + (1 - ramp) * after[..., :n]
    return out
