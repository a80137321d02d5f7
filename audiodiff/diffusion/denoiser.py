"""The network as the samplers see it: model(x_t float [B, ...], t [B], y) -> output like x_t, read through
the chain's `split_output`, whatever the run's parameterization.

A "v", "eps" or "x0" run's UNet already is that. An "edm" run's UNet is F of Karras et al. 2022, trained on
sigmas rather than timesteps; `EDMDenoiser` wraps it into D(x; sigma_t) on the chain, an x0 prediction,
so every sampler, guidance and edit works on it unchanged.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from ..config import DiffusionConfig
from .schedule import EDM, GaussianSchedule, broadcast


class EDMDenoiser(nn.Module):
    """x_t [B, ...] at chain timesteps t [B] (long, or float between steps) -> x0_hat like x_t, by
    x = x_t / sqrt(alpha_bar_t) = x_t sqrt(1 + sigma_t^2) and D(x; sigma_t) = c_skip x + c_out F(c_in x; c_noise)."""

    def __init__(self, net: nn.Module, edm: EDM, schedule: GaussianSchedule) -> None:
        super().__init__()
        self.net, self.edm, self.schedule = net, edm, schedule

    def forward(self, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        sigma = self.schedule.sigma_at(t)
        x = self.edm.from_chain(x_t, sigma)
        x_in, c_noise = self.edm.network_input(x, sigma)
        return self.edm.denoise(self.net(x_in, c_noise, y), x, sigma)


def for_sampling(net: nn.Module, config: DiffusionConfig) -> nn.Module:
    """The run's network ready for the samplers on `GaussianSchedule.from_config(config)`."""
    if config.prediction != "edm":
        return net
    return EDMDenoiser(net, EDM.from_config(config), GaussianSchedule.from_config(config))


def autoguided(model: nn.Module, weak: nn.Module, guidance: float, c: Tensor | None = None
               ) -> Callable[[Tensor, Tensor], Tensor]:
    """Autoguidance (Karras et al. 2024) as a sampler's Model: (1 + w) f(x, t, c) - w f_weak(x, t, c).

    weak: a worse model of the same data, e.g. an earlier checkpoint of the run or a smaller run, read
    through the same chain (same [diffusion] config), so that the difference of the outputs points away
    from its errors. Needs no condition: it guides unconditional runs too. c: the encoded condition or None.
    """

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        out = model(x, t, c)
        return out if guidance == 0 else out + guidance * (out - weak(x, t, c))

    return model_fn


def ve_denoiser(model: Callable[[Tensor, Tensor], Tensor], schedule: GaussianSchedule) -> Callable[[Tensor, Tensor], Tensor]:
    """A chain model (x_t, t) -> output (a sampler's Model) as D(x, sigma) in the variance-exploding form
    x = x_0 + sigma n (schedule.EDM's): x float [B, ...], sigma float [B] > 0 (per item) -> x0_hat like x,
    unclipped. The network is called at x_t = x sqrt(alpha_bar) with alpha_bar = 1 / (1 + sigma^2), at the
    continuous timestep of sigma."""

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        sigma = sigma.detach().double().cpu()
        a = 1 / (1 + sigma.square())
        x_t = x * broadcast(a.sqrt(), x)
        return schedule.x0_at(model(x_t, schedule.timesteps_of(sigma).to(x.device)).float(), x_t, a)

    return denoise
