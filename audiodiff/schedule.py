"""The Gaussian Markov chain of DDPM: q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I).

Notation (Ho et al. 2020; Nichol & Dhariwal 2021), t in 0..T-1:
    beta_t                   betas[t]
    alpha_bar_t              alphas_cumprod[t] = prod_{s<=t} (1 - beta_s), float64
    q(x_t | x_0)             N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)          -> q_sample
    v                        sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0       (Salimans & Ho 2022)
    q(x_s | x_t, x_0), s<t   the posterior, for any earlier step s (s = t - 1 in DDPM) -> posterior_mean_variance
The index t = -1 stands for clean data: alpha_bar_{-1} = 1. The schedule owns this math and no network.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .config import DiffusionConfig


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Betas whose alpha_bar follows cos^2(((t/T + s) / (1 + s)) pi / 2), clipped at max_beta."""
    f = lambda t: math.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - f(t + 1) / f(t), max_beta) for t in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


def linear_betas(num_steps: int, beta_start: float, beta_end: float) -> Tensor:
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


class GaussianSchedule:
    """Coefficients of the chain as float64 tensors; methods take x as float [B, ...] and t as long [B]."""

    def __init__(self, betas: Tensor, prediction: str = "eps") -> None:
        if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must be a 1-D tensor with values in (0, 1)")
        self.betas = betas.double()
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        # alpha_bar with alpha_bar_{-1} = 1 in front, so index t + 1 serves t = -1 .. T-1.
        self._alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])
        self.prediction = prediction

    @classmethod
    def from_config(cls, config: DiffusionConfig) -> GaussianSchedule:
        if config.schedule == "cosine":
            betas = cosine_betas(config.num_steps)
        else:
            betas = linear_betas(config.num_steps, config.beta_start, config.beta_end)
        return cls(betas, config.prediction)

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    def alpha_bar(self, t: Tensor) -> Tensor:
        """alpha_bar_t as float64 [B] on t's device for long t [B] in -1..T-1 (float32 on MPS, which has no float64)."""
        return self._alpha_bar.to(t.device, torch.float32 if t.device.type == "mps" else torch.float64)[t + 1]

    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t), float64 [B]."""
        a = self.alpha_bar(t)
        return a / (1.0 - a)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Sample x_t ~ q(x_t | x_0) = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
        a = self.alpha_bar(t)
        return _bc(a.sqrt(), x0) * x0 + _bc((1 - a).sqrt(), x0) * noise

    def predict_x0(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
        a = self.alpha_bar(t)
        return _bc(1 / a.sqrt(), x_t) * x_t - _bc(((1 - a) / a).sqrt(), x_t) * eps

    def predict_eps(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
        a = self.alpha_bar(t)
        return _bc(1 / (1 - a).sqrt(), x_t) * x_t - _bc((a / (1 - a)).sqrt(), x_t) * x0

    def v_target(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0."""
        a = self.alpha_bar(t)
        return _bc(a.sqrt(), x0) * eps - _bc((1 - a).sqrt(), x0) * x0

    def x0_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v."""
        a = self.alpha_bar(t)
        return _bc(a.sqrt(), x_t) * x_t - _bc((1 - a).sqrt(), x_t) * v

    def training_target(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """What the network learns to output for this schedule's `prediction`."""
        if self.prediction == "eps":
            return eps
        if self.prediction == "v":
            return self.v_target(x0, t, eps)
        return x0

    def loss_weight(self, t: Tensor, min_snr_gamma: float) -> Tensor:
        """Per-sample weight of the MSE on this schedule's target for min-SNR-gamma weighting (Hang et al.
        2023): the x0-space weight min(SNR, gamma), expressed for the eps (/ SNR) or v (/ (SNR + 1))
        target. float32 [B]; all ones when gamma <= 0 (plain MSE)."""
        if min_snr_gamma <= 0:
            return torch.ones(t.shape, device=t.device)
        snr = self.snr(t)
        w = snr.clamp(max=min_snr_gamma)
        if self.prediction == "eps":
            w = w / snr
        elif self.prediction == "v":
            w = w / (snr + 1)
        return w.float()

    def split_output(self, output: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Network output -> (x0_hat, eps_hat), whatever the prediction target."""
        if self.prediction == "eps":
            return self.predict_x0(x_t, t, output), output
        x0 = output if self.prediction == "x0" else self.x0_from_v(x_t, t, output)
        return x0, self.predict_eps(x_t, t, x0)

    def x0_at(self, output: Tensor, x_t: Tensor, alpha_bar: float) -> Tensor:
        """x0_hat from the network output at a noise level given by alpha_bar itself (continuous-time samplers)."""
        a, b = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
        if self.prediction == "eps":
            return (x_t - b * output) / a
        return output if self.prediction == "x0" else a * x_t - b * output

    def sigmas(self) -> Tensor:
        """The equivalent variance-exploding noise levels sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t), float64 [T]."""
        return ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()

    def timestep_of(self, sigma: float) -> float:
        """The continuous timestep whose sigma is `sigma`, interpolating log sigma linearly between steps."""
        log_sigmas = self.sigmas().log()
        return float(np.interp(np.log(sigma), log_sigmas.numpy(), np.arange(self.num_steps)))

    def posterior_mean_variance(
        self, x0: Tensor, x_t: Tensor, t: Tensor, s: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_s | x_t, x_0) for s < t (default s = t - 1).

        With beta' = 1 - alpha_bar_t / alpha_bar_s (the one-step beta of the chain restricted to s, t):
            mean = sqrt(alpha_bar_s) beta' / (1 - alpha_bar_t) x_0 + sqrt(1 - beta') (1 - alpha_bar_s) / (1 - alpha_bar_t) x_t
            var  = beta' (1 - alpha_bar_s) / (1 - alpha_bar_t)          (Ho et al. 2020, eq. 7)
        Returns (mean like x_t, variance float64 [B]).
        """
        s = t - 1 if s is None else s
        a_t, a_s = self.alpha_bar(t), self.alpha_bar(s)
        beta = 1 - a_t / a_s
        c0 = a_s.sqrt() * beta / (1 - a_t)
        ct = (1 - beta).sqrt() * (1 - a_s) / (1 - a_t)
        var = beta * (1 - a_s) / (1 - a_t)
        return _bc(c0, x0) * x0 + _bc(ct, x_t) * x_t, var


def _bc(coef: Tensor, x: Tensor) -> Tensor:
    """float64 [B] -> x.dtype [B, 1, ..., 1] broadcastable against x."""
    return coef.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
