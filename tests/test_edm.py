"""EDM preconditioning (Karras et al. 2022): closed forms, its noise levels, the chain wrapper, a tiny run."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from audiodiff.cli import main
from audiodiff.config import Config, DiffusionConfig, TrainConfig
from audiodiff.diffusion.denoiser import EDMDenoiser, for_sampling
from audiodiff.diffusion.sampling import ddim, dpmpp_2m, heun
from audiodiff.diffusion.schedule import EDM, GaussianSchedule, cosine_betas
from audiodiff.training.diffusion import noise_levels

CHAIN = GaussianSchedule(cosine_betas(1000), "x0")


def test_coefficients_closed_form_at_sigma_equal_sigma_data():
    sd = 0.5
    c_skip, c_out, c_in, c_noise = EDM(sigma_data=sd).coefficients(torch.tensor([sd, 1.0], dtype=torch.float64))
    assert c_skip.tolist() == pytest.approx([0.5, 0.25 / 1.25])
    assert c_out.tolist() == pytest.approx([sd / 2**0.5, sd / 1.25**0.5])
    assert c_in.tolist() == pytest.approx([1 / (sd * 2**0.5), 1 / 1.25**0.5])
    assert c_noise.tolist() == pytest.approx([250 * torch.log(torch.tensor(sd)).item(), 0.0])


@pytest.mark.parametrize("sigma", [0.01, 0.3, 2.0, 50.0])
def test_input_and_target_have_unit_variance_for_data_of_std_sigma_data(sigma):
    """The point of c_in and c_out: for x0 ~ N(0, sd^2), Var[c_in x] = 1 and Var[target] = 1 at every sigma."""
    edm, g = EDM(sigma_data=0.4), torch.Generator().manual_seed(0)
    x0 = 0.4 * torch.randn(200_000, generator=g, dtype=torch.float64)
    x = x0 + sigma * torch.randn(200_000, generator=g, dtype=torch.float64)
    s = torch.full((200_000,), sigma, dtype=torch.float64)
    x_in, _ = edm.network_input(x.view(-1, 1), s)
    assert float(x_in.var()) == pytest.approx(1.0, abs=0.01)
    assert float(edm.training_target(x0.view(-1, 1), x.view(-1, 1), s).var()) == pytest.approx(1.0, abs=0.01)


def test_unit_sigma_data_is_the_chains_v_prediction():
    """With sd = 1, c_in x = x_t and F's target = -v: EDM generalizes what the v runs train."""
    sched, edm = GaussianSchedule(cosine_betas(1000), "v"), EDM(sigma_data=1.0)
    g = torch.Generator().manual_seed(1)
    x0, n = torch.randn(5, 1, 4, 6, generator=g, dtype=torch.float64), torch.randn(5, 1, 4, 6, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 3, 250, 700, 990])
    sigma = sched.sigmas()[t]
    x = x0 + sigma.view(-1, 1, 1, 1) * n
    x_in, _ = edm.network_input(x, sigma)
    torch.testing.assert_close(x_in, sched.q_sample(x0, t, n))
    torch.testing.assert_close(edm.training_target(x0, x, sigma), -sched.v_target(x0, t, n))
    torch.testing.assert_close(edm.denoise(edm.training_target(x0, x, sigma), x, sigma), x0)


def test_training_noise_levels_are_log_normal():
    config = Config(diffusion=DiffusionConfig(prediction="edm", p_mean=-0.7, p_std=1.5))
    sigma = noise_levels(config, CHAIN, 100_000, torch.Generator().manual_seed(2))
    assert sigma.dtype == torch.float32 and bool((sigma > 0).all())
    log = sigma.double().log()
    assert float(log.mean()) == pytest.approx(-0.7, abs=0.02) and float(log.std()) == pytest.approx(1.5, abs=0.02)
    # the median of a log-normal is exp(p_mean)
    assert float(sigma.median()) == pytest.approx(float(torch.tensor(-0.7).exp()), rel=0.03)
    t = noise_levels(Config(), CHAIN, 1000, torch.Generator().manual_seed(2))
    assert t.dtype == torch.long and 0 <= int(t.min()) and int(t.max()) <= 999


def test_sigma_at_interpolates_log_sigma_and_inverts_timestep_of():
    sig = CHAIN.sigmas()
    torch.testing.assert_close(CHAIN.sigma_at(torch.tensor([0, 17, 999])), sig[[0, 17, 999]])
    half = CHAIN.sigma_at(torch.tensor([400.5]))
    torch.testing.assert_close(half, (sig[400] * sig[401]).sqrt().view(1))
    for t in (3.25, 500.0, 876.5):
        assert CHAIN.timestep_of(float(CHAIN.sigma_at(torch.tensor([t]))[0])) == pytest.approx(t)


class Zero(torch.nn.Module):
    """F = 0: the ideal network for data x0 ~ N(0, sd^2) elementwise under EDM preconditioning (D = c_skip x)."""

    def forward(self, x, c_noise, y=None):
        return torch.zeros_like(x)


def test_wrapper_gives_the_posterior_mean_for_gaussian_data():
    """At chain timestep t, E[x0 | x_t] = sqrt(a) sd^2 / (a sd^2 + 1 - a) x_t for x0 ~ N(0, sd^2) (a = alpha_bar_t)."""
    sd = 0.6
    model = EDMDenoiser(Zero(), EDM(sigma_data=sd), CHAIN)
    t = torch.tensor([0, 100, 500, 900, 999])
    x_t = torch.randn(5, 1, 3, 3, dtype=torch.float64)
    a = CHAIN.alpha_bar(t).view(-1, 1, 1, 1)
    torch.testing.assert_close(model(x_t, t), a.sqrt() * sd**2 / (a * sd**2 + 1 - a) * x_t)


@pytest.mark.parametrize("sampler", [ddim, dpmpp_2m, heun])
def test_samplers_on_the_wrapper_draw_data_of_std_sigma_data(sampler):
    """The probability-flow ODE of N(0, sd^2) data, solved through the wrapper, ends at std sd."""
    sd, g = 0.6, torch.Generator().manual_seed(3)
    x = torch.randn(4000, 1, 1, 1, generator=g)
    out = sampler(EDMDenoiser(Zero(), EDM(sigma_data=sd), CHAIN), CHAIN, x, 40, lambda: None, clip_x0=False)
    assert float(out.std()) == pytest.approx(sd, rel=0.03)


def test_config_rules_and_the_plain_runs_stay_unwrapped():
    net = Zero()
    assert for_sampling(net, DiffusionConfig()) is net
    assert isinstance(for_sampling(net, DiffusionConfig(prediction="edm")), EDMDenoiser)
    assert GaussianSchedule.from_config(DiffusionConfig(prediction="edm")).prediction == "x0"
    with pytest.raises(ValueError, match="min_snr_gamma"):
        Config(diffusion=DiffusionConfig(prediction="edm"), train=TrainConfig(min_snr_gamma=5.0))
    with pytest.raises(ValueError, match="sigma_data"):
        DiffusionConfig(prediction="edm", sigma_data=0.0)
    with pytest.raises(ValueError, match="edm"):
        DiffusionConfig(prediction="flow")


def test_tiny_edm_run_trains_and_samples(tmp_path, audio_dir, tiny_config):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.to_toml())
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", str(audio_dir), "--out", str(out), "--config", str(cfg),
                                    "--no-progress", "--steps", "4", "--prediction", "edm"])
    assert res.exit_code == 0, res.output
    assert 'prediction = "edm"' in (out / "config.toml").read_text()
    losses = [float(line.split(",")[1]) for line in (out / "loss.csv").read_text().splitlines()[1:]]
    assert len(losses) == 4 and all(0 < v < 10 for v in losses)
    assert sorted(p.name for p in (out / "samples").glob("*.wav"))  # previews went through the wrapper
    for sampler in ("ddim", "heun"):
        res = CliRunner().invoke(main, ["generate", str(out), "--out", str(tmp_path / sampler), "-n", "2",
                                        "--steps", "3", "--sampler", sampler, "--no-progress"])
        assert res.exit_code == 0, res.output
        assert len(list((tmp_path / sampler).glob("*.wav"))) == 2
