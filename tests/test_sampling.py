import numpy as np
import pytest
import torch

from audiodiff.diffusion.sampling import ddim, ddpm, dpmpp_2m, get_sampler, item_noise, sample, spaced_timesteps
from audiodiff.diffusion.schedule import GaussianSchedule, cosine_betas, linear_betas

diffusers = pytest.importorskip("diffusers")


def fake_model(x, t):
    """A fixed, smooth, t-dependent 'network' so both implementations see identical outputs."""
    return 0.5 * torch.tanh(x) + 1e-3 * t.float().view(-1, *[1] * (x.ndim - 1))


def test_spaced_timesteps():
    assert spaced_timesteps(1000, 1000) == list(range(999, -1, -1))
    assert spaced_timesteps(1000, 50)[:3] == [999, 979, 959] and spaced_timesteps(1000, 50)[-1] == 19
    assert spaced_timesteps(1000, 1) == [999]
    with pytest.raises(ValueError):
        spaced_timesteps(1000, 0)


def _reference_loop(scheduler, steps, x, g, **step_kw):
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x = scheduler.step(fake_model(x, t.expand(x.shape[0])), t, x, generator=g, **step_kw).prev_sample
    return x


@pytest.mark.parametrize("steps", [1000, 50])
@pytest.mark.parametrize("clip", [False, True])
def test_ddpm_matches_diffusers(steps, clip, device):
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=clip,
                                  variance_type="fixed_small", timestep_spacing="trailing")
    x = torch.randn(2, 1, 4, 6, generator=torch.Generator().manual_seed(0))
    want = _reference_loop(ref, steps, x.clone(), torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    got = ddpm(fake_model, GaussianSchedule(cosine_betas(1000)), x.clone().to(device), steps,
               lambda: torch.randn(x.shape, generator=g).to(device), clip_x0=clip).cpu()
    # unclipped, this fake model drives x to ~1e4: float64 vs float32 coefficients differ there by ~3e-4
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_matches_diffusers(eta, clip, device):
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                                  clip_sample=clip, set_alpha_to_one=True, timestep_spacing="trailing")
    x = torch.randn(2, 1, 4, 6, generator=torch.Generator().manual_seed(0))
    want = _reference_loop(ref, 20, x.clone(), torch.Generator().manual_seed(1), eta=eta, use_clipped_model_output=True)
    g = torch.Generator().manual_seed(1)
    got = ddim(fake_model, GaussianSchedule(linear_betas(1000, 1e-4, 0.02)), x.clone().to(device), 20,
               lambda: torch.randn(x.shape, generator=g).to(device), clip_x0=clip, eta=eta).cpu()
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["ddpm", "ddim"])
def test_oracle_denoiser_recovers_the_data_point(name):
    """If the data distribution is one point x*, the ideal eps-prediction leads every sampler to x*."""
    sched = GaussianSchedule(cosine_betas(1000))
    target = torch.linspace(-0.8, 0.8, 12).view(1, 1, 3, 4)

    def oracle(x, t):
        a = sched.alpha_bar(t).float().view(-1, 1, 1, 1)
        return (x - a.sqrt() * target) / (1 - a).sqrt()

    out = sample(oracle, sched, name, (1, 3, 4), seeds=[0, 1], steps=25, device=torch.device("cpu"))
    torch.testing.assert_close(out, target.expand(2, -1, -1, -1), atol=1e-4, rtol=0)


def test_seeds_make_clips_independent_of_batch(device):
    """Noise comes from per-clip CPU generators, so the same seed gives the same clip on every device."""
    sched = GaussianSchedule(cosine_betas(100))
    cpu = device
    both = sample(fake_model, sched, "ddpm", (1, 2, 3), seeds=[5, 6], steps=10, device=cpu)
    alone = sample(fake_model, sched, "ddpm", (1, 2, 3), seeds=[6], steps=10, device=cpu)
    torch.testing.assert_close(both[1:], alone)
    assert not torch.allclose(both[0], both[1])
    again = sample(fake_model, sched, "ddpm", (1, 2, 3), seeds=[5, 6], steps=10, device=cpu)
    assert torch.equal(both, again)


def test_item_noise_shape_and_unknown_sampler():
    draw = item_noise([torch.Generator().manual_seed(0)] * 3, (1, 2, 2), torch.device("cpu"))
    assert draw().shape == (3, 1, 2, 2)
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        get_sampler("euler")


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("clip", [False, True])
def test_dpmpp_2m_matches_diffusers(steps, prediction, clip, device):
    # diffusers' dynamic thresholding with sample_max_value = 1 clamps the threshold s to exactly 1, which is
    # plain clipping of x0_hat to [-1, 1]: the reference for clip_x0=True
    ref = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", algorithm_type="dpmsolver++", solver_order=2,
        prediction_type={"eps": "epsilon", "v": "v_prediction"}[prediction], timestep_spacing="trailing",
        final_sigmas_type="zero", lower_order_final=True, thresholding=clip, sample_max_value=1.0)
    x = torch.randn(2, 1, 4, 6, generator=torch.Generator().manual_seed(0))
    want = _reference_loop(ref, steps, x.clone(), None)
    got = dpmpp_2m(fake_model, GaussianSchedule(cosine_betas(1000), prediction), x.clone().to(device), steps,
                   lambda: pytest.fail("DPM-Solver++(2M) is deterministic"), clip_x0=clip).cpu()
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-3)
    if clip:  # the clipping is active for this model: without it the result differs
        unclipped = dpmpp_2m(fake_model, GaussianSchedule(cosine_betas(1000), prediction), x.clone(), steps,
                             lambda: None, clip_x0=False)
        assert (unclipped - want).abs().max() > 1e-2


def test_dpmpp_2m_oracle_and_registry():
    sched = GaussianSchedule(cosine_betas(1000), "v")
    target = torch.linspace(-0.8, 0.8, 12).view(1, 1, 3, 4)

    def oracle(x, t):  # the exact v for a one-point data distribution
        a = sched.alpha_bar(t).float().view(-1, 1, 1, 1)
        eps = (x - a.sqrt() * target) / (1 - a).sqrt()
        return a.sqrt() * eps - (1 - a).sqrt() * target

    out = sample(oracle, sched, "dpmpp-2m", (1, 3, 4), seeds=[0], steps=8, device=torch.device("cpu"))
    torch.testing.assert_close(out, target, atol=1e-4, rtol=0)
    assert get_sampler("dpmpp-2m") is dpmpp_2m


def test_classifier_free_guidance_closed_form():
    from audiodiff.config import UNetConfig
    from audiodiff.model.conditioning import guided
    from audiodiff.model.unet import UNet

    model = UNet(UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(), num_classes=3))
    torch.manual_seed(0)
    for p in model.parameters():  # wake the zero-initialized layers so labels change the output
        torch.nn.init.normal_(p, std=0.05)
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([10, 500]), torch.tensor([0, 2])
    cond, uncond = model(x, t, y), model(x, t, torch.tensor([3, 3]))
    assert not torch.allclose(cond, uncond)
    torch.testing.assert_close(guided(model, model.conditioning, y, 0.0)(x, t), cond)
    torch.testing.assert_close(guided(model, model.conditioning, y, 2.5)(x, t), 3.5 * cond - 2.5 * uncond, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model(x, t), uncond)  # no labels given = the "no label" class


def test_heun_karras():
    from audiodiff.diffusion.sampling import heun, karras_sigmas

    sched = GaussianSchedule(cosine_betas(1000), "x0")
    sig = karras_sigmas(sched, 5)
    assert len(sig) == 6 and sig[-1] == 0.0 and sig == sorted(sig, reverse=True)
    assert sig[0] == pytest.approx(80.0) and sig[-2] == pytest.approx(float(sched.sigmas()[0]))  # capped sigma_max
    assert sched.timestep_of(float(sched.sigmas()[500])) == pytest.approx(500.0)
    target = torch.linspace(-0.8, 0.8, 12).view(1, 1, 3, 4)
    exact = sample(lambda x, t: target.expand(x.shape[0], -1, -1, -1), sched, "heun", (1, 3, 4), [0, 1], 6,
                   torch.device("cpu"))
    torch.testing.assert_close(exact, target.expand(2, -1, -1, -1), atol=1e-6, rtol=0)  # one-point data: exact
    # the probability-flow ODE that DDIM also solves: Heun converges towards DDIM with 1000 steps
    smooth = lambda x, t: 0.5 * torch.tanh(x)  # noqa: E731
    cpu = torch.device("cpu")
    ref = sample(smooth, sched, "ddim", (1, 3, 4), [0], 1000, cpu)
    errors = [float((sample(smooth, sched, "heun", (1, 3, 4), [0], n, cpu) - ref).abs().max()) for n in (10, 50)]
    assert errors[1] < 0.05 and errors[1] < errors[0]
    assert get_sampler("heun") is heun


@pytest.mark.parametrize("eta", [-0.1, 1.01])
def test_ddim_refuses_eta_outside_0_1(eta):
    sched = GaussianSchedule(torch.linspace(1e-4, 0.02, 50, dtype=torch.float64), "eps")
    with pytest.raises(ValueError, match=r"eta = .* must be in \[0, 1\]"):
        sample(lambda x, t: torch.zeros_like(x), sched, "ddim", (1, 2, 2), [0], 5, torch.device("cpu"), eta=eta)


def test_heun_is_second_order_on_gaussian_data(device):
    """Data x0 ~ N(0, s^2): the ideal denoiser in the variance-exploding form is D(x; sigma) = s^2 / (s^2 + sigma^2) x,
    and the probability-flow ODE dx/dsigma = (x - D) / sigma has the exact solution
    x(0) = x(sigma_max) s / sqrt(s^2 + sigma_max^2). Unlike a constant predictor (for which Euler is exact too),
    this D makes the ODE curve, so the error must fall about 4x per doubling of steps (2nd order); Euler, 2x."""
    from audiodiff.diffusion.sampling import heun

    sched, s = GaussianSchedule(cosine_betas(1000), "x0"), 0.5
    log_sigmas = sched.sigmas().log().numpy()

    def oracle(x_t, t):  # t is the continuous timestep heun asks at; invert timestep_of's interpolation
        sigma = float(np.exp(np.interp(float(t[0]), np.arange(len(log_sigmas)), log_sigmas)))
        x_ve = x_t * (1 + sigma**2) ** 0.5
        return s**2 / (s**2 + sigma**2) * x_ve

    dtype = torch.float32 if device.type == "mps" else torch.float64
    x_T = torch.randn(4, 1, 3, 4, generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    sigma_max = 80.0
    exact = x_T * (1 + sigma_max**2) ** 0.5 * s / (s**2 + sigma_max**2) ** 0.5
    errors = [float((heun(oracle, sched, x_T.clone(), n, lambda: None, clip_x0=False) - exact).abs().max().cpu())
              for n in (16, 32, 64)]
    assert errors[2] < 5e-3  # measured: 0.074, 0.016, 0.0037
    assert errors[0] / errors[1] > 3.0 and errors[1] / errors[2] > 3.0


def test_guidance_interval_boundaries():
    """Inside [t_lo, t_hi] (both ends included) the guided output; outside, the plain conditional one."""
    from audiodiff.config import UNetConfig
    from audiodiff.model.conditioning import guided
    from audiodiff.model.unet import UNet

    model = UNet(UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(), num_classes=2))
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, y = torch.randn(2, 1, 8, 8), torch.tensor([0, 1])
    fn = guided(model, model.conditioning, y, 2.0, interval=(100, 600))
    for t, inside in ((99, False), (100, True), (350, True), (600, True), (601, False), (999, False)):
        tt = torch.full((2,), t)
        cond, uncond = model(x, tt, y), model(x, tt, torch.tensor([2, 2]))
        want = 3.0 * cond - 2.0 * uncond if inside else cond
        torch.testing.assert_close(fn(x, tt), want, atol=1e-5, rtol=1e-4, msg=f"t = {t}")
