"""Editing: SDEdit variations, inpainting, continuation, interpolation and loops (issue 7)."""

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.diffusion.editing import circular, ddim_invert, inpaint, slerp, soft_keep, strength_start, time_keep
from audiodiff.diffusion.sampling import ddim, item_noise
from audiodiff.diffusion.schedule import GaussianSchedule, cosine_betas
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.model.unet import UNet

from .conftest import SR, tolerance, tone
from .test_cli import invoke, run  # noqa: F401  (the `run` fixture: a trained 4-step run)


def gaussian_model(schedule: GaussianSchedule, mu: float, s: float):
    """The exact eps-prediction of data x0 ~ N(mu, s^2) elementwise: x_t ~ N(sqrt(a) mu, a s^2 + 1 - a) and
    E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) mu) / (a s^2 + 1 - a)."""

    def model(x, t):
        a = schedule.alpha_bar(t.long()).to(x.dtype).view(-1, *[1] * (x.ndim - 1))
        return (1 - a).sqrt() * (x - a.sqrt() * mu) / (a * s**2 + 1 - a)

    return model


@pytest.fixture
def schedule():
    return GaussianSchedule(cosine_betas(1000), "eps")


def random_output_pipe(tiny_config, device="cpu") -> SpectrogramDiffusion:
    """An untrained pipeline whose output layer is random, so the network's output depends on its input."""
    torch.manual_seed(0)
    model = UNet(tiny_config.unet)
    torch.nn.init.normal_(model.conv_out.weight, std=0.05)
    return SpectrogramDiffusion(model, tiny_config, device=device)


@pytest.fixture
def pipe(tiny_config):
    return random_output_pipe(tiny_config)


def test_strength_start(schedule):
    assert strength_start(schedule, 0.0, 50) == (None, 0)
    assert strength_start(schedule, 1.0, 50) == (999, 50)
    assert strength_start(schedule, 0.3, 50) == (299, 15)
    assert strength_start(schedule, 0.0004, 50) == (None, 0)  # rounds to step 0 of 1000
    assert strength_start(schedule, 0.001, 50) == (0, 1)
    with pytest.raises(ValueError, match="strength"):
        strength_start(schedule, 1.5, 50)


def test_soft_keep_ramps_on_the_kept_side():
    keep = torch.ones(1, 12)
    keep[0, 5:7] = 0
    want = [1, 1, 0.75, 0.5, 0.25, 0, 0, 0.25, 0.5, 0.75, 1, 1]
    assert torch.allclose(soft_keep(keep, 3), torch.tensor([want]))
    assert torch.equal(soft_keep(torch.ones(2, 7), 3), torch.ones(2, 7))  # nothing edited
    assert torch.equal(soft_keep(keep, 0), keep)


def test_time_keep_with_band():
    keep = time_keep((1, 1, 6, 10), 2, 5, bins=(1, 3))
    assert keep.sum() == 60 - 2 * 3 and keep[0, 0, 1:3, 2:5].sum() == 0 and keep[0, 0, 0].all()


def test_slerp_ends_norm_and_parallel_case():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid, torch.tensor([[2**-0.5, 2**-0.5]]), atol=1e-6)  # stays on the unit circle
    assert torch.allclose(slerp(a, 3 * a, 0.5), 2 * a)  # parallel: linear


def test_ddim_inversion_then_sampling_reconstructs(schedule, device):
    """On Gaussian data the exact model is known; invert then decode must come back, better with more steps."""
    model = gaussian_model(schedule, mu=0.3, s=0.5)
    x0 = 0.3 + 0.5 * torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)).to(device)
    errors = []
    for refine, steps in ((0, 50), (2, 10), (2, 50)):
        z = ddim_invert(model, schedule, x0, steps, refine=refine)
        back = ddim(model, schedule, z, steps, lambda: None, clip_x0=False)
        errors.append((back - x0).abs().max().item())
    # measured 0.104, 0.028, 0.0007: plain inversion is first order, the fixed-point rounds fix that
    assert errors[2] < 0.002 and errors[2] < errors[0] / 20 and errors[2] < errors[1], errors
    assert 0.8 < z.std().item() < 1.25  # inverted to (approximately) unit noise, data scale 0.5


def test_inpaint_keeps_known_region_and_fills_the_rest(schedule, device):
    model = gaussian_model(schedule, mu=0.0, s=0.5)
    known = torch.full((1, 1, 4, 16), 0.7, device=device)
    keep = time_keep((1, 1, 4, 16), 6, 10).to(device)
    noise = item_noise([torch.Generator().manual_seed(i) for i in range(2)], (1, 4, 16), device)
    for resample in (1, 3):
        out = inpaint(model, schedule, noise(), 20, noise, known=known, keep=keep, resample=resample)
        assert torch.equal(out[..., :6], known[..., :6].expand(2, -1, -1, -1)) and torch.equal(out[..., 10:], known[..., 10:].expand(2, -1, -1, -1))
        assert (out[..., 6:10] - 0.7).abs().mean() > 0.05  # the edited span was resampled
        assert not torch.equal(out[0], out[1])  # per-item seeds
    calls = []
    counted = lambda x, t: calls.append(1) or model(x, t)  # noqa: E731
    inpaint(counted, schedule, noise(), 20, noise, known=known, keep=keep, resample=3)
    assert len(calls) == 19 * 3 + 1  # RePaint rounds on every step but the last, which lands on clean data
    soft = inpaint(model, schedule, noise(), 20, noise, known=known, keep=keep, fade=2)
    assert torch.equal(soft[..., :4], known[..., :4].expand(2, -1, -1, -1))  # beyond the crossfade: exact
    assert not torch.equal(soft[..., 4:6], known[..., 4:6].expand(2, -1, -1, -1))  # inside the crossfade: blended


def test_circular_predicts_every_frame_away_from_the_edges():
    def edges(x, t):  # a network whose output marks its own first and last frames
        out = torch.zeros_like(x)
        out[..., 0] = out[..., -1] = 1.0
        return out

    x, t = torch.zeros(2, 1, 3, 16), torch.zeros(2)
    assert edges(x, t).max() == 1.0
    blended = circular(edges)(x, t)
    assert blended.shape == x.shape and blended.max() < 0.07  # 0.5 / (0.5 + 7.5) at worst
    y = torch.randn(2, 1, 3, 16)
    assert torch.allclose(circular(lambda x, t: 2 * x)(y, t), 2 * y)  # a pointwise model is left as it is


def test_vary_strength_zero_is_identity_and_one_forgets_the_input(pipe):
    wav = tone(440, 0.3)
    same = pipe.vary(wav, 0.0, n=2)
    assert torch.equal(same.audio[0], torch.from_numpy(wav)) and torch.equal(same.logmel[1], pipe.rep.encode(wav)[0])
    other = tone(1200, 0.3, decay=0.0)
    a = pipe.vary(wav, 1.0, steps=5, seed=3)
    b = pipe.vary(other, 1.0, steps=5, seed=3)
    assert (a.logmel - b.logmel).abs().max() < 1e-3  # strength 1: the input is ~1e-4 of x_T
    half = pipe.vary(wav, 0.5, steps=10, seed=3)
    assert half.audio.shape == (1, len(wav))
    assert 0 < (half.logmel - same.logmel[:1]).abs().mean() < (a.logmel - same.logmel[:1]).abs().mean()


def test_inpaint_keeps_audio_outside_the_span(pipe, tiny_config):
    wav = tone(440, 0.5, decay=1.0)
    out = pipe.inpaint(wav, 0.2, 0.3, n=2, steps=5, fade=2)
    hop = tiny_config.mel.hop_length
    a, b = int(0.2 * SR) // hop, int(np.ceil(0.3 * SR / hop)) + 1
    safe_lo, safe_hi = (a - 2) * hop, (b - 1 + 2) * hop  # outside the span and its crossfade
    assert torch.equal(out.audio[:, :safe_lo], torch.from_numpy(wav[:safe_lo]).expand(2, -1))
    assert torch.equal(out.audio[:, safe_hi + 1 :], torch.from_numpy(wav[safe_hi + 1 :]).expand(2, -1))
    assert not torch.equal(out.audio[:, a * hop : (b - 1) * hop], torch.from_numpy(wav[a * hop : (b - 1) * hop]).expand(2, -1))
    known = pipe.rep.encode(wav)[0]
    assert torch.equal(out.logmel[:, :, :, : a - 2], known[:, :, : a - 2].expand(2, -1, -1, -1))
    assert torch.equal(out.logmel[:, :, :, b + 2 :], known[:, :, b + 2 :].expand(2, -1, -1, -1))  # up to the last frame
    band = pipe.inpaint(wav, 0.2, 0.3, band=(1000.0, 2500.0), steps=5, fade=0)
    lo, hi = pipe.mel.band_bins(1000.0, 2500.0)
    assert torch.equal(band.logmel[0, :, :lo], known[:, :lo]) and torch.equal(band.logmel[0, :, hi:], known[:, hi:])
    assert not torch.equal(band.logmel[0, :, lo:hi, a:b], known[:, lo:hi, a:b])
    with pytest.raises(ValueError, match="start < end"):
        pipe.inpaint(wav, 0.3, 0.2)


def jumps_at(wav: np.ndarray, where: list[int], width: int) -> tuple[float, float]:
    """(largest sample step near the given positions, 99.9th percentile step of the whole clip)."""
    d = np.abs(np.diff(wav))
    near = max(d[max(0, p - width) : p + width].max() for p in where)
    return near, float(np.quantile(d, 0.999))


def test_continue_keeps_the_input_and_has_no_seams(pipe, tiny_config):
    wav = tone(330, 0.25, decay=0.5)
    out = pipe.extend(wav, 0.6, n=1, steps=4, fade=2)
    total = len(wav) + round(0.6 * SR)
    assert out.audio.shape == (1, total)
    hop = tiny_config.mel.hop_length
    valid = (len(wav) - tiny_config.mel.n_fft // 2) // hop + 1
    untouched = (valid - 1 - 2) * hop
    assert torch.equal(out.audio[0, :untouched], torch.from_numpy(wav[:untouched]))
    w = pipe.window
    step = w - w // 8 - w // 2  # new frames per window
    seams = [(valid - 1) * hop] + [(valid + k * step) * hop for k in range(1, 8)]
    near, typical = jumps_at(out.audio[0].numpy(), [s for s in seams if s < total], 2 * hop)
    assert near <= 1.5 * typical, (near, typical)


def test_generate_beyond_the_crop_is_windowed_and_deterministic(pipe):
    a = pipe.generate(2, steps=3, seconds=0.6, seed=1)
    assert a.audio.shape == (2, round(0.6 * SR)) and a.logmel.shape[-1] == pipe.frames_for(0.6)
    b = pipe.generate(1, steps=3, seconds=0.6, seed=2)
    torch.testing.assert_close(a.logmel[1], b.logmel[0], atol=1e-4, rtol=0)  # batch-size rounding only


def test_loop_has_no_seam(pipe, tiny_config):
    out = pipe.generate(2, steps=4, seconds=0.2, loop=True)
    hop, f = tiny_config.mel.hop_length, tiny_config.unet.downsample_factor
    frames = -(-int(np.ceil(0.2 * SR / hop)) // f) * f
    assert out.audio.shape == (2, frames * hop)
    for wav in out.audio.numpy():
        twice = np.concatenate([wav, wav])
        near, typical = jumps_at(twice, [len(wav)], 4)
        assert near <= 1.5 * typical, (near, typical)


def test_make_loop_redraws_the_join_and_keeps_the_rest(pipe, tiny_config):
    wav = (np.linspace(-0.4, 0.4, int(0.4 * SR)) + tone(110, 0.4, amp=0.1)).astype(np.float32)  # a ramp: a click
    near, typical = jumps_at(np.concatenate([wav, wav]), [len(wav)], 4)
    assert near > 3 * typical  # the input does not loop
    out = pipe.make_loop(wav, seam=0.1, n=2, steps=4, fade=2)
    assert out.audio.shape == (2, len(wav)) and out.logmel.shape == (2, *pipe.rep.encode(wav).shape[1:])
    hop = tiny_config.mel.hop_length
    kept = slice(int(0.05 * SR) + 4 * hop, len(wav) - int(0.05 * SR) - 4 * hop)  # beyond the seam and its crossfade
    assert torch.equal(out.audio[:, kept], torch.from_numpy(wav[kept]).expand(2, -1))
    assert not torch.equal(out.audio[:, :hop], torch.from_numpy(wav[:hop]).expand(2, -1))  # the join was redrawn
    for looped in out.audio.numpy():
        near, typical = jumps_at(np.concatenate([looped, looped]), [len(looped)], 4)
        assert near <= 1.5 * typical, (near, typical)
    with pytest.raises(ValueError, match="half the clip"):
        pipe.make_loop(wav, seam=0.3)


@pytest.mark.parametrize("model", ["digits", "drums", "notes-tiny"])
def test_loop_on_a_shipped_class_conditional_model(model, tmp_path):
    """`generate --loop` on a run that carries one label per clip (it crashed: the loop's second evaluation
    doubled the batch of x but not of the labels)."""
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "samples" / "models" / model
    res = invoke("generate", str(shipped), "--out", str(tmp_path), "--loop", "--seconds", "1.5", "-n", "2",
                 "--steps", "2", "--no-progress")
    assert res.exit_code == 0, res.output
    wav, sr = sf.read(tmp_path / "sample_001.wav")
    assert len(wav) >= 1.5 * sr and np.isfinite(wav).all()


def test_loop_audio_joins_end_to_start(pipe, tiny_config):
    """A steady tone whose period does not divide the loop: a plain cut would jump by half a cycle."""
    hop, frames = tiny_config.mel.hop_length, 16
    period = frames * hop
    freq = 40.5 * SR / period
    t = np.arange(4 * period) / SR
    logmel = pipe.rep.encode((0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32))[..., 20 : 20 + frames]
    from audiodiff.diffusion.editing import loop_audio

    wav = loop_audio(pipe.rep.decode, logmel, [0], period, tiny_config.mel.n_fft)[0].numpy()
    assert len(wav) == period
    near, typical = jumps_at(np.concatenate([wav, wav]), [period], 2)
    assert near <= 1.5 * typical, (near, typical)


def test_interpolate_ends_and_determinism(pipe):
    a, b = tone(440, 0.25), tone(880, 0.25, decay=0.0)
    out = pipe.interpolate(a, b, frames=3, steps=20)
    assert out.audio.shape == (3, len(a)) and out.logmel.shape[0] == 3
    again = pipe.interpolate(a, b, frames=3, steps=20)
    assert torch.equal(out.logmel, again.logmel)
    ma, mb = pipe.rep.encode(a)[0], pipe.rep.encode(b)[0]
    assert (out.logmel[0] - ma).abs().mean() < (out.logmel[0] - mb).abs().mean()
    assert (out.logmel[2] - mb).abs().mean() < (out.logmel[2] - ma).abs().mean()
    with pytest.raises(ValueError, match="frames"):
        pipe.interpolate(a, b, frames=1)
    other = pipe.interpolate(a, b, frames=3, steps=20, seed=5)  # the seed sets the vocoder's phase only
    assert torch.equal(other.logmel, out.logmel) and not torch.equal(other.audio, out.audio)


def test_editing_commands(tmp_path, run):  # noqa: F811
    src = tmp_path / "in.wav"
    sf.write(src, tone(440, 0.4), SR)
    common = ["--steps", "3", "--no-progress", "--device", "cpu"]
    res = invoke("vary", str(run), str(src), "--out", str(tmp_path / "v"), "--strength", "0.6", "-n", "2", *common)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "v" / "vary_001.wav").exists() and (tmp_path / "v" / "vary_000.png").exists()
    res = invoke("vary", str(run), str(src), "--out", str(tmp_path / "v"), *common)
    assert res.exit_code == 1 and "exists; pass --force" in res.output
    res = invoke("inpaint", str(run), str(src), "--out", str(tmp_path / "i"), "--start", "0.1", "--end", "0.2", *common)
    assert res.exit_code == 0, res.output
    assert sf.info(tmp_path / "i" / "inpaint_000.wav").frames == len(tone(440, 0.4))
    res = invoke("inpaint", str(run), str(src), "--out", str(tmp_path / "i2"), "--start", "0.3", "--end", "0.1", *common)
    assert res.exit_code == 1 and "start < end" in res.output
    res = invoke("inpaint", str(run), str(src), "--out", str(tmp_path / "i3"), "--loop", "--seam", "0.1", *common)
    assert res.exit_code == 0 and sf.info(tmp_path / "i3" / "inpaint_000.wav").frames == len(tone(440, 0.4)), res.output
    for wrong in (["--loop", "--start", "0.1"], [], ["--start", "0.1"]):
        res = invoke("inpaint", str(run), str(src), "--out", str(tmp_path / "i4"), *wrong, *common)
        assert res.exit_code == 2 and "give --start and --end, or --loop" in res.output, res.output
    res = invoke("continue", str(run), str(src), "--out", str(tmp_path / "c"), "--seconds", "0.3", *common)
    assert res.exit_code == 0, res.output
    assert sf.info(tmp_path / "c" / "continue_000.wav").frames == round(0.7 * SR)
    res = invoke("interpolate", str(run), str(src), str(src), "--out", str(tmp_path / "m"), "--frames", "3", *common)
    assert res.exit_code == 0 and (tmp_path / "m" / "interp_002.wav").exists(), res.output
    res = invoke("generate", str(run), "--out", str(tmp_path / "l"), "-n", "1", "--loop", *common)
    assert res.exit_code == 0, res.output
    res = invoke("vary", str(run), str(src), "--out", str(tmp_path / "v3"), "--strength", "2", *common)
    assert res.exit_code == 2 and "strength" in res.output


def test_vary_and_windowed_generation_on_each_device(tiny_config, device):
    """The pipeline's editing and long-clip paths on `device`; the same seed gives the same clip as on CPU,
    up to kernel rounding (noise is drawn from per-clip CPU generators)."""
    pipe = random_output_pipe(tiny_config, device)
    wav = tone(440, 0.3)
    same = pipe.vary(wav, 0.0, n=1)
    assert torch.equal(same.audio[0], torch.from_numpy(wav))
    half = pipe.vary(wav, 0.5, steps=4, seed=3)
    long = pipe.generate(1, steps=3, seconds=0.6, seed=1)
    assert half.audio.shape == (1, len(wav)) and long.audio.shape == (1, round(0.6 * SR))
    assert half.logmel.device.type == "cpu" or half.logmel.device == device
    cpu = random_output_pipe(tiny_config)
    tol = tolerance(device, 0.0, 1e-3)
    torch.testing.assert_close(half.logmel.cpu(), cpu.vary(wav, 0.5, steps=4, seed=3).logmel, atol=tol, rtol=0)
    torch.testing.assert_close(long.logmel.cpu(), cpu.generate(1, steps=3, seconds=0.6, seed=1).logmel, atol=tol, rtol=0)


def test_one_options_object_for_every_method(pipe):
    from audiodiff.generation.options import Options

    fast = Options(steps=3, seed=2, batch_size=1)
    torch.testing.assert_close(pipe.generate(2, options=fast).logmel, pipe.generate(2, steps=3, seed=2, batch_size=1).logmel)
    wav = tone(440, 0.25)
    torch.testing.assert_close(pipe.vary(wav, 0.5, options=fast, seed=4).logmel, pipe.vary(wav, 0.5, steps=3, seed=4).logmel)
    for bad, match in [(dict(sampler="euler"), "unknown sampler"), (dict(steps=0), "at least 1"),
                       (dict(sampler="dpmpp-2m", eta=0.5), "takes none"), (dict(guidance=-1.0), ">= 0")]:
        with pytest.raises(ValueError, match=match):
            Options(**bad)
    with pytest.raises(TypeError):
        pipe.generate(1, stpes=3)  # a misspelt option is refused, not ignored
