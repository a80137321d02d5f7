"""Few-step generation: consistency distillation and tuning (`audiodiff distill`), the consistency sampler."""

from __future__ import annotations

import pytest
import torch

from audiodiff import checkpoint
from audiodiff.config import Config, DistillConfig
from audiodiff.diffusion.consistency import loss, paired_level, pseudo_huber, sample_sigma, sigma_range, teacher_step
from audiodiff.diffusion.sampling import consistency, ve_denoiser
from audiodiff.diffusion.schedule import GaussianSchedule, cosine_betas
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.run import Session
from audiodiff.run.tune import distill
from audiodiff.runfolder import checkpoints

QUIET = Session(progress=False, log=lambda m: None)

from .test_cli import invoke, run  # noqa: F401  (the tiny trained run fixture)

CHAIN = GaussianSchedule(cosine_betas(1000), "v")
SD = 0.6  # the Gaussian data's standard deviation in the closed forms


def gaussian_denoiser(x, sigma):
    """E[x0 | x] for x0 ~ N(0, SD^2) elementwise and x = x0 + sigma n."""
    return SD**2 / (SD**2 + sigma.view(-1, 1, 1, 1) ** 2) * x


def exact_consistency(x, sigma):
    """Where the probability-flow ODE of that data takes x at level sigma: x SD / sqrt(SD^2 + sigma^2) at sigma = 0."""
    return SD / (SD**2 + sigma.view(-1, 1, 1, 1) ** 2).sqrt() * x


class OnChain(torch.nn.Module):
    """A VE-form x0 function (x, sigma) as a v-prediction network on the chain (x_t, t, y=None)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn, self.calls = fn, 0

    def forward(self, x_t, t, y=None):
        self.calls += 1
        sigma = CHAIN.sigma_at(t)
        a = (1 / (1 + sigma**2)).view(-1, 1, 1, 1)
        x0 = self.fn(x_t.double() / a.sqrt(), sigma)
        return ((a.sqrt() * x_t - x0) / (1 - a).sqrt()).to(x_t.dtype)  # v = (sqrt(a) x_t - x0) / sqrt(1 - a)


def test_ve_denoiser_reads_a_chain_network_at_continuous_levels():
    sigma = torch.tensor([0.05, 0.7, 3.0, 40.0], dtype=torch.float64)
    x = torch.randn(4, 1, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(ve_denoiser(OnChain(gaussian_denoiser), CHAIN)(x, sigma), gaussian_denoiser(x, sigma),
                               atol=1e-4, rtol=1e-4)


def test_teacher_steps_follow_the_exact_ode_of_gaussian_data():
    """Many small Euler steps of the teacher's ODE from sigma = 2 to 0.1 land on x sqrt((SD^2 + r^2) / (SD^2 + sigma^2))."""
    teacher = OnChain(gaussian_denoiser)
    x = torch.randn(8, 1, 2, 2, dtype=torch.float64)
    levels = torch.logspace(torch.log10(torch.tensor(2.0)), torch.log10(torch.tensor(0.1)), 400, dtype=torch.float64)
    y = x
    for s, r in zip(levels[:-1], levels[1:]):
        y = teacher_step(teacher, CHAIN, y, s.expand(8), r.expand(8))
    exact = x * ((SD**2 + 0.1**2) / (SD**2 + 2.0**2)) ** 0.5
    torch.testing.assert_close(y, exact, atol=2e-3, rtol=2e-3)


def test_the_exact_consistency_function_has_no_distillation_loss():
    """With the exact consistency function as student and small teacher steps, the loss is (almost) nothing;
    the plain denoiser as student is far from consistent."""
    config = DistillConfig(method="cd")
    x0 = SD * torch.randn(16, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    sigma = torch.logspace(-1, 1, 16, dtype=torch.float64)
    r = sigma * 0.98
    teacher = OnChain(gaussian_denoiser)
    exact = loss(OnChain(exact_consistency), CHAIN, config, x0, sigma, r, noise, teacher)
    wrong = loss(OnChain(gaussian_denoiser), CHAIN, config, x0, sigma, r, noise, teacher)
    assert float(exact) < 0.02 * float(wrong)


def test_the_target_at_level_zero_is_the_clean_data():
    config = DistillConfig(method="ct")
    x0 = torch.randn(4, 1, 4, 4)
    sigma = torch.full((4,), 0.5, dtype=torch.float64)
    perfect = OnChain(lambda x, s: torch.zeros_like(x) + x0.double())  # always answers x0 itself
    assert float(loss(perfect, CHAIN, config, x0, sigma, torch.zeros(4, dtype=torch.float64), torch.randn(4, 1, 4, 4))) < 1e-6
    lazy = OnChain(lambda x, s: torch.zeros_like(x))
    assert float(loss(lazy, CHAIN, config, x0, sigma, torch.zeros(4, dtype=torch.float64), torch.randn(4, 1, 4, 4))) > 0.5


def test_one_consistency_call_on_the_exact_function_draws_the_data_distribution():
    x = torch.randn(4000, 1, 1, 1, generator=torch.Generator().manual_seed(3))
    for steps in (1, 2, 4):
        model = OnChain(exact_consistency)
        g = torch.Generator().manual_seed(4)
        out = consistency(model, CHAIN, x, steps, lambda: torch.randn(x.shape, generator=g), clip_x0=False)
        assert model.calls == steps
        assert float(out.std()) == pytest.approx(SD, rel=0.05)


def test_pairs_of_levels_tighten_by_halves():
    config = DistillConfig(halve_every=10)
    lo, hi = sigma_range(CHAIN)
    sigma = sample_sigma(config, CHAIN, 2000, torch.Generator().manual_seed(0))
    assert float(sigma.min()) >= lo and float(sigma.max()) <= hi == 80.0
    assert (paired_level(config, CHAIN, sigma, 0) == 0).all()  # the first stage: every target is x0
    for step in (10, 25, 40):
        r = paired_level(config, CHAIN, sigma, step)
        assert ((r >= 0) & (r < sigma)).all()
    big = torch.tensor([60.0], dtype=torch.float64)  # n(sigma) ~ 1 here: the gap is sigma / 2^k
    for k in (1, 2, 3):
        gap = big - paired_level(config, CHAIN, big, 10 * k)
        assert float(gap) == pytest.approx(60.0 / 2**k, rel=1e-6)
    assert float(pseudo_huber(torch.zeros(1, 4), torch.full((1, 4), 3.0), 0.0)) == pytest.approx(3.0)


def test_distil_generate_and_resume_exactly(tmp_path, run, audio_dir):  # noqa: F811
    overrides = {"train": {"steps": 4, "checkpoint_every": 2}, "distill": {"halve_every": 1}}
    out = tmp_path / "cd"
    state = distill(run, audio_dir, out, method="cd", overrides=overrides, session=QUIET)
    assert state.step == 4 and (out / "loss.csv").exists() and len(list((out / "samples").glob("*.wav"))) >= 1
    config = Config.from_toml(out / "config.toml")
    teacher_file = checkpoints(run)[-1]
    assert config.distill.method == "cd" and config.distill.teacher == str(teacher_file)
    assert config.distill.teacher_sha256 == checkpoint.read(teacher_file)[1]["sha256"]
    # resume: 2 steps, then on to 4 in a second call, bit-identical to the 4 steps in one go
    half = tmp_path / "half"
    distill(run, audio_dir, half, method="cd", session=QUIET,
            overrides={"train": {**overrides["train"], "steps": 2}, "distill": {"halve_every": 1}})
    distill(run, audio_dir, half, overrides=overrides, session=QUIET)  # the stored method: cd
    a, b = checkpoint.read(checkpoints(out)[-1])[0], checkpoint.read(checkpoints(half)[-1])[0]
    for k in a:
        if k.startswith(("model.", "ema.")):
            assert torch.equal(a[k], b[k]), k
    pipe = SpectrogramDiffusion.load(out)
    assert pipe.options().sampler == "consistency" and pipe.options().steps == 2
    one = pipe.generate(2, steps=1, seed=3)
    assert one.logmel.shape == (2, 1, 16, 16) and torch.isfinite(one.audio).all()
    torch.testing.assert_close(pipe.generate(2, steps=1, seed=3).logmel, one.logmel, atol=0, rtol=0)
    two = pipe.generate(2, steps=2, seed=3)
    assert not torch.allclose(two.logmel, one.logmel)
    with pytest.raises(ValueError, match="interpolate inverts"):
        pipe.interpolate(one.audio[0].numpy(), one.audio[1].numpy())


def test_the_student_starts_as_the_teacher_and_ct_calls_no_teacher(tmp_path, run, audio_dir):  # noqa: F811
    out = tmp_path / "ct"
    state = distill(run, audio_dir, out, method="ct", overrides={"train": {"steps": 1, "lr": 1e-12}},
                    session=QUIET)
    teacher = SpectrogramDiffusion.load(run).model
    for (name, p), q in zip(teacher.named_parameters(), state.model.parameters()):
        torch.testing.assert_close(q.detach(), p.detach(), atol=1e-6, rtol=0, msg=name)


def test_refusals(tmp_path, run, audio_dir, tiny_config):  # noqa: F811
    with pytest.raises(ValueError, match="method ct calls no teacher"):
        DistillConfig(method="ct", guidance=1.0)
    with pytest.raises(ValueError, match="unknown method"):
        DistillConfig(method="pd")
    with pytest.raises(ValueError, match="boundary condition"):
        tiny_config.replace("diffusion", prediction="x0").replace("distill", method="cd")
    with pytest.raises(ValueError, match="needs a class-conditional run"):
        tiny_config.replace("distill", method="cd", guidance=1.5)
    out = tmp_path / "d"
    distill(run, audio_dir, out, overrides={"train": {"steps": 1}}, session=QUIET)
    assert Config.from_toml(out / "config.toml").distill.method == "ct"  # the default for an unconditional run
    with pytest.raises(checkpoint.CheckpointError, match="distill.method: 'ct' in the run, 'cd' asked for"):
        distill(run, audio_dir, out, method="cd", session=QUIET)
    with pytest.raises(ValueError, match="already a distilled run"):
        distill(out, audio_dir, tmp_path / "d2", session=QUIET)
    other = tmp_path / "other.toml"
    other.write_text(tiny_config.replace("mel", n_mels=24).replace("train", steps=1).to_toml())
    assert invoke("train", str(audio_dir), "--out", str(tmp_path / "other"), "--config", str(other),
                  "--no-progress").exit_code == 0
    with pytest.raises(ValueError, match="was distilled from .* not from"):  # another teacher for the same student
        distill(tmp_path / "other", audio_dir, out, session=QUIET)
    res = invoke("train", str(audio_dir), "--out", str(out), "--no-progress")
    assert res.exit_code == 1 and "continues with `audiodiff distill`" in res.output


def test_cli_distils_a_conditional_run_with_guidance_folded_in(tmp_path, audio_dir, tiny_config):
    for label in ("low", "high"):
        (audio_dir / label).mkdir()
    for f in audio_dir.rglob("*.wav"):
        f.rename(audio_dir / ("low" if "one" in f.name or "four" in f.name else "high") / f.name)
    for f in [*audio_dir.rglob("*.flac"), *audio_dir.rglob("*.ogg")]:
        f.unlink()
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.to_toml())
    assert invoke("train", str(audio_dir), "--out", str(tmp_path / "run"), "--config", str(cfg), "--no-progress").exit_code == 0
    res = invoke("distill", str(tmp_path / "run"), str(audio_dir), "--out", str(tmp_path / "cd"), "--steps", "2",
                 "--no-progress")
    assert res.exit_code == 0 and "guidance 1.5 folded in" in res.output, res.output
    pipe = SpectrogramDiffusion.load(tmp_path / "cd")
    counter = OnChain(lambda x, s: x)
    real = pipe.model
    pipe.model = lambda x, t, y=None: (counter(x, t), real(x, t, y))[1]  # count the network's batched calls
    pipe.generate(3, steps=2, label="low", batch_size=3)
    assert counter.calls == 2  # one call per step: no second, unconditional pass
    res = invoke("generate", str(tmp_path / "cd"), "--out", str(tmp_path / "g"), "-n", "2", "--label", "high",
                 "--steps", "1", "--no-progress")
    assert res.exit_code == 0 and (tmp_path / "g" / "sample_001.wav").exists()
