import math

import numpy as np
import pytest
import torch

from audiodiff.config import DiffusionConfig
from audiodiff.diffusion.schedule import GaussianSchedule, cosine_betas


def test_cosine_alphas_cumprod_closed_form():
    T, s = 1000, 0.008
    sched = GaussianSchedule(cosine_betas(T))
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    want = torch.tensor([f(t + 1) / f(0) for t in range(T)], dtype=torch.float64)
    # identical wherever the 0.999 clip on beta has not acted (it acts only at the very end)
    torch.testing.assert_close(sched.alphas_cumprod[:990], want[:990], rtol=1e-9, atol=1e-12)
    assert sched.alphas_cumprod.dtype == torch.float64
    assert float(sched.betas.max()) <= 0.999


def test_linear_schedule_and_t_minus_one():
    sched = GaussianSchedule.from_config(DiffusionConfig(schedule="linear", num_steps=1000))
    assert float(sched.betas[0]) == pytest.approx(1e-4) and float(sched.betas[-1]) == pytest.approx(0.02)
    want = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(sched.alphas_cumprod.numpy(), want, rtol=1e-12)
    assert float(sched.alpha_bar(torch.tensor([-1]))) == 1.0


def test_q_sample_moments(device):
    sched = GaussianSchedule(cosine_betas(1000))
    x0 = torch.full((20000, 1), 0.7, device=device)
    t = torch.full((20000,), 400, device=device)
    xt = sched.q_sample(x0, t, torch.randn(20000, 1, generator=torch.Generator().manual_seed(0)).to(device))
    assert xt.device.type == device.type
    a = float(sched.alphas_cumprod[400])
    assert float(xt.mean()) == pytest.approx(math.sqrt(a) * 0.7, abs=0.02)
    assert float(xt.var()) == pytest.approx(1 - a, rel=0.03)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_conversions_round_trip(prediction, device):
    sched = GaussianSchedule(cosine_betas(1000), prediction)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(8, 1, 4, 4, generator=g).to(device), torch.randn(8, 1, 4, 4, generator=g).to(device)
    t = torch.randint(0, 990, (8,), generator=g).to(device)
    xt = sched.q_sample(x0, t, eps)
    x0_hat, eps_hat = sched.split_output(sched.training_target(x0, t, eps), xt, t)
    torch.testing.assert_close(x0_hat, x0, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(eps_hat, eps, atol=1e-3, rtol=1e-3)


def test_posterior_matches_ddpm_paper():
    sched = GaussianSchedule(cosine_betas(1000))
    x0, xt = torch.randn(3, 5), torch.randn(3, 5)
    t = torch.tensor([1, 500, 999])
    mean, var = sched.posterior_mean_variance(x0, xt, t)
    b, a, a_prev = sched.betas[t], sched.alphas_cumprod[t], sched.alphas_cumprod[t - 1]
    want_mean = (a_prev.sqrt() * b / (1 - a))[:, None] * x0 + ((1 - b).sqrt() * (1 - a_prev) / (1 - a))[:, None] * xt
    torch.testing.assert_close(mean, want_mean.float())
    torch.testing.assert_close(var, b * (1 - a_prev) / (1 - a))


def test_rejects_bad_betas():
    with pytest.raises(ValueError):
        GaussianSchedule(torch.tensor([0.1, 1.2]))
    with pytest.raises(ValueError, match="unknown schedule"):
        DiffusionConfig(schedule="sigmoid")


def test_min_snr_weights_closed_form():
    t = torch.tensor([10, 300, 700, 990])
    for prediction in ("eps", "v", "x0"):
        sched = GaussianSchedule(cosine_betas(1000), prediction)
        snr = sched.snr(t)
        assert torch.equal(sched.loss_weight(t, 0.0), torch.ones(4))
        w = sched.loss_weight(t, 5.0).double()
        # the weight times the target's squared scale in x0 units is min(SNR, 5) for every target
        x0_scale = {"eps": snr, "v": snr + 1, "x0": torch.ones(4, dtype=torch.float64)}[prediction]
        torch.testing.assert_close(w * x0_scale, snr.clamp(max=5.0), rtol=1e-5, atol=1e-6)
    eps_w = GaussianSchedule(cosine_betas(1000), "eps").loss_weight(t, 5.0)
    assert eps_w[0] < 1.0 and eps_w[-1] == 1.0  # low-noise steps down-weighted, high-noise ones untouched
