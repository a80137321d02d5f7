"""The Gaussian Markov chain of DDPM: q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I).

Notation (Ho et al. 2020; Nichol & Dhariwal 2021), t in 0..T-1:
    beta_t                   betas[t]
    alpha_bar_t              alphas_cumprod[t] = prod_{s<=t} (1 - beta_s), float64
    q(x_t | x_0)             N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)          -> q_sample
    v                        sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0       (Salimans & Ho 2022)
    q(x_s | x_t, x_0), s<t   the posterior, for any earlier step s (s = t - 1 in DDPM) -> posterior_mean_variance
The index t = -1 stands for clean data: alpha_bar_{-1} = 1. The schedule owns this math and no network.

`EDM` holds the preconditioning of Karras et al. 2022 in their variance-exploding notation x = x_0 + sigma n,
which maps onto the chain by sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) and x = x_t / sqrt(alpha_bar_t).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..config import DiffusionConfig


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
        """The chain the samplers walk. An "edm" run's network is read through `EDM.denoise`, which outputs
        x0 itself, so its chain reads model outputs as x0 predictions."""
        if config.schedule == "cosine":
            betas = cosine_betas(config.num_steps)
        else:
            betas = linear_betas(config.num_steps, config.beta_start, config.beta_end)
        return cls(betas, "x0" if config.prediction == "edm" else config.prediction)

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
        return broadcast(a.sqrt(), x0) * x0 + broadcast((1 - a).sqrt(), x0) * noise

    def predict_x0(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
        a = self.alpha_bar(t)
        return broadcast(1 / a.sqrt(), x_t) * x_t - broadcast(((1 - a) / a).sqrt(), x_t) * eps

    def predict_eps(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
        a = self.alpha_bar(t)
        return broadcast(1 / (1 - a).sqrt(), x_t) * x_t - broadcast((a / (1 - a)).sqrt(), x_t) * x0

    def v_target(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0."""
        a = self.alpha_bar(t)
        return broadcast(a.sqrt(), x0) * eps - broadcast((1 - a).sqrt(), x0) * x0

    def x0_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v."""
        a = self.alpha_bar(t)
        return broadcast(a.sqrt(), x_t) * x_t - broadcast((1 - a).sqrt(), x_t) * v

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

    def x0_at(self, output: Tensor, x_t: Tensor, alpha_bar: float | Tensor) -> Tensor:
        """x0_hat from the network output at a noise level given by alpha_bar itself (continuous-time samplers):
        one float for the batch, or float64 [B] per item."""
        if isinstance(alpha_bar, Tensor):
            a, b = broadcast(alpha_bar.sqrt(), x_t), broadcast((1 - alpha_bar).sqrt(), x_t)
        else:
            a, b = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
        if self.prediction == "eps":
            return (x_t - b * output) / a
        return output if self.prediction == "x0" else a * x_t - b * output

    def sigmas(self) -> Tensor:
        """The equivalent variance-exploding noise levels sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t), float64 [T]."""
        return ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()

    def sigma_at(self, t: Tensor) -> Tensor:
        """sigma_t for timesteps t [B], long or float in [0, T-1]; between steps log sigma is linear in t
        (the inverse of `timestep_of`). float64 [B] on t's device (float32 on MPS)."""
        log_sigmas = self.sigmas().log()
        tf = t.detach().double().cpu().clamp(0, self.num_steps - 1)
        lo = tf.floor().long().clamp(max=self.num_steps - 2)
        log_sigma = torch.lerp(log_sigmas[lo], log_sigmas[lo + 1], tf - lo)
        return log_sigma.exp().to(t.device, torch.float32 if t.device.type == "mps" else torch.float64)

    def timestep_of(self, sigma: float) -> float:
        """The continuous timestep whose sigma is `sigma`, interpolating log sigma linearly between steps."""
        log_sigmas = self.sigmas().log()
        return float(np.interp(np.log(sigma), log_sigmas.numpy(), np.arange(self.num_steps)))

    def timesteps_of(self, sigma: Tensor) -> Tensor:
        """`timestep_of` for sigmas [B] > 0: float32 [B] on sigma's device, clamped to 0..T-1."""
        log_sigmas = self.sigmas().log().numpy()
        t = np.interp(sigma.detach().double().cpu().log().numpy(), log_sigmas, np.arange(self.num_steps))
        return torch.from_numpy(t).float().to(sigma.device)

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
        return broadcast(c0, x0) * x0 + broadcast(ct, x_t) * x_t, var


class EDM:
    """Preconditioning and training noise levels of Karras et al. 2022 ("EDM", Table 1), for x = x_0 + sigma n:

        D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)          the denoiser, F the network
        c_skip = sd^2 / (sigma^2 + sd^2)     c_out = sigma sd / sqrt(sigma^2 + sd^2)     c_in = 1 / sqrt(sigma^2 + sd^2)
        c_noise = 250 ln sigma     (EDM's ln(sigma) / 4, times 1000: the spread that our timestep embedding,
                                    built for t = 0..999, was made for)
        ln sigma ~ N(p_mean, p_std^2) in training, with loss weight lambda = 1 / c_out^2 on |D - x_0|^2,
        which is the plain MSE between F and its target (x_0 - c_skip x) / c_out.

    sd = sigma_data, the standard deviation of the data. c_in keeps the network's input at unit variance and
    c_out its target too; with sd = 1, c_in x is exactly the chain's x_t and F = -v (`GaussianSchedule.v_target`).
    Sigmas are float [B] (float64 in sampling, float32 in training); x float [B, ...].
    """

    # Above this sigma the data is invisible (x is 1/80 data) and training has never seen the level
    # (p(sigma > 80) ~ 2e-6 with the default p_mean, p_std); the network is told 80 there.
    SIGMA_NOISE_CAP = 80.0

    def __init__(self, sigma_data: float = 0.5, p_mean: float = -1.2, p_std: float = 1.2) -> None:
        self.sigma_data, self.p_mean, self.p_std = sigma_data, p_mean, p_std

    @classmethod
    def from_config(cls, config: DiffusionConfig) -> EDM:
        return cls(config.sigma_data, config.p_mean, config.p_std)

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise), each like sigma [B] > 0."""
        sd2, s2 = self.sigma_data**2, sigma.square()
        root = (s2 + sd2).sqrt()
        c_noise = 250 * sigma.clamp(max=self.SIGMA_NOISE_CAP).log()
        return sd2 / (s2 + sd2), sigma * self.sigma_data / root, 1 / root, c_noise

    def sample_sigma(self, n: int, generator: torch.Generator) -> Tensor:
        """n training noise levels, ln sigma ~ N(p_mean, p_std^2): float64 [n] on the CPU."""
        return (self.p_mean + self.p_std * torch.randn(n, generator=generator, dtype=torch.float64)).exp()

    def noised(self, x0: Tensor, sigma: Tensor, noise: Tensor) -> Tensor:
        """x = x_0 + sigma n, like x0."""
        return x0 + broadcast(sigma, x0) * noise

    def from_chain(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        """The chain's x_t at the step of noise level sigma, in this form: x = x_t / sqrt(alpha_bar_t)
        = x_t sqrt(1 + sigma^2)."""
        return broadcast((1 + sigma.square()).sqrt(), x_t) * x_t

    def network_input(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(c_in x, c_noise): what F is called with, for noisy x = x_0 + sigma n."""
        _, _, c_in, c_noise = self.coefficients(sigma)
        return broadcast(c_in, x) * x, c_noise.to(x.dtype)

    def training_target(self, x0: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        """F's target (x_0 - c_skip x) / c_out, like x."""
        c_skip, c_out, _, _ = self.coefficients(sigma)
        return (x0 - broadcast(c_skip, x) * x) / broadcast(c_out, x)

    def denoise(self, network_output: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        """D = c_skip x + c_out F, the x_0 estimate, from F's output at (c_in x, c_noise)."""
        c_skip, c_out, _, _ = self.coefficients(sigma)
        return broadcast(c_skip, x) * x + broadcast(c_out, x) * network_output.to(x.dtype)


def broadcast(coef: Tensor, x: Tensor) -> Tensor:
    """float64 [B] -> x.dtype [B, 1, ..., 1] on x's device, broadcastable against x (a bool [B] stays bool)."""
    dtype = torch.bool if coef.dtype == torch.bool else x.dtype
    return coef.to(x.device, dtype).reshape(-1, *([1] * (x.ndim - 1)))
